"""A checkpoint saved by the release before the model-room rework keeps loading and answering the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gamer_hf import GamerForCausalLM, GamerTokenizerFast

FIXTURE = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def legacy():
    tok = GamerTokenizerFast.from_pretrained(FIXTURE / "legacy_tiny")
    model = GamerForCausalLM.from_pretrained(FIXTURE / "legacy_tiny", use_safetensors=True).eval()
    expected = json.loads((FIXTURE / "legacy_tiny_expected.json").read_text())
    histories = [[tuple(pair) for pair in history] for history in expected["histories"]]
    return tok, model, histories, expected


def test_legacy_logits_unchanged(legacy) -> None:
    tok, model, histories, expected = legacy
    batch = tok.encode_histories(histories, behavior="buy", return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits[:, -1]
    assert torch.allclose(logits, torch.tensor(expected["last_logits"]), atol=1e-5)


@pytest.mark.parametrize("behavior", ["buy", "cart", "click"])
def test_legacy_recommendations_identical(legacy, behavior: str) -> None:
    tok, model, histories, expected = legacy
    recs = model.recommend(tok, histories, behavior=behavior, top_k=10, num_beams=12)
    want = expected["recommend"][behavior]
    assert [[item for item, _ in row] for row in recs] == [[item for item, _ in row] for row in want]
    assert [s for row in recs for _, s in row] == pytest.approx([s for row in want for _, s in row], abs=1e-5)


def test_legacy_scores_identical(legacy) -> None:
    tok, model, histories, expected = legacy
    scores = model.score_items(tok, histories, expected["candidates"], behavior="buy")
    assert [s for row in scores for s in row] == pytest.approx([s for row in expected["scores"] for s in row], abs=1e-5)
