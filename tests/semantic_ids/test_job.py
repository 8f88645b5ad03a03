"""`build_tokenizer_from_inputs`: the semantic-ID job on inputs already in memory (what catalog_scale.py runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gamer_hf.modeling import GamerTokenizerFast
from gamer_hf.modeling.item_index_gamer import ItemIndex
from gamer_hf.semantic_ids import SemanticIdArguments, SemanticIdInputs, build_tokenizer_from_inputs


def test_job_from_inputs_times_each_step_and_writes_what_it_built(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    item_ids = sorted(str(1000 + i) for i in range(90))
    sequences = [[item_ids[j] for j in rng.integers(0, 90, 12)] for _ in range(40)]
    inputs = SemanticIdInputs(item_ids=item_ids, sequences=sequences, behaviors={"click": 0, "buy": 1}, items=None,
                              source="memory")
    args = SemanticIdArguments(data="memory", out=str(tmp_path / "tok"), embedding="collaborative", balanced=True)
    built = build_tokenizer_from_inputs(inputs, args)
    timings = built.semantic_ids.report.timings
    levels = len(built.semantic_ids.report.collision_rate_per_level)
    assert {"embed", "quantize", "collisions"} <= set(timings)
    assert [f"quantize_level_{level}" for level in range(1, levels + 1)] == [k for k in timings if "_level_" in k]
    assert built.write_seconds > 0 and built.embeddings.vectors.shape[0] == len(item_ids)
    assert isinstance(built.semantic_ids.item_index, ItemIndex)
    loaded = GamerTokenizerFast.from_pretrained(tmp_path / "tok")
    assert loaded.item_index == built.semantic_ids.item_index and list(loaded.item_ids) == item_ids


def test_job_maps_lone_items_from_their_profile_when_asked(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    item_ids = sorted(str(1000 + i) for i in range(90))
    sequences = [[item_ids[j] for j in rng.integers(0, 80, 12)] for _ in range(40)]
    sequences += [[item_ids[80 + i]] * (1 + i % 3) for i in range(6)]  # 6 items alone in their one sequence each
    behaviors = rng.integers(0, 2, sum(map(len, sequences))).astype(np.int8)
    inputs = SemanticIdInputs(item_ids=item_ids, sequences=sequences, behaviors={"click": 0, "buy": 1}, items=None,
                              source="memory", position_behaviors=behaviors)
    args = SemanticIdArguments(data="memory", out=str(tmp_path / "tok"), embedding="collaborative", lone_items="profile")
    built = build_tokenizer_from_inputs(inputs, args)
    coverage = built.semantic_ids.report.embedding_coverage
    assert coverage["profile_items"] == coverage["seen_alone"] == 6 and coverage["fallback_seen_items"] == 0
    assert "lone training items mapped from their profile: 6" in built.semantic_ids.report.to_table()
    assert built.metadata["embedding"]["lone_items"] == "profile"


@pytest.mark.parametrize("method, bar", [("rqkmeans", "rq-kmeans levels"), ("rqvae", "rq-vae")])
@pytest.mark.parametrize("progress", [True, False])
def test_job_shows_the_quantizer_bar_only_with_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        method: str, bar: str, progress: bool) -> None:
    rng = np.random.default_rng(2)
    item_ids = sorted(str(1000 + i) for i in range(60))
    sequences = [[item_ids[j] for j in rng.integers(0, 60, 10)] for _ in range(30)]
    inputs = SemanticIdInputs(item_ids=item_ids, sequences=sequences, behaviors={"click": 0, "buy": 1}, items=None,
                              source="memory")
    args = SemanticIdArguments(data="memory", out=str(tmp_path / "tok"), embedding="collaborative", method=method,
                               rqvae_steps=5, progress=progress)
    build_tokenizer_from_inputs(inputs, args)
    assert (bar in capsys.readouterr().err) is progress
