"""Loading for the server: a folder or a repo id, options refused up front with a named error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gamer_hf.errors import CheckpointError, ConfigurationError
from gamer_hf.serve import ModelOptions, RecommendRequest, ServeSettings, load_recommender, serve


def test_folder_loads_with_its_name_and_dtype(checkpoint: Path) -> None:
    recommender = load_recommender(ModelOptions(str(checkpoint), device="cpu", dtype="bfloat16", max_history=7))
    assert recommender.name == checkpoint.name and recommender.max_history == 7
    assert next(recommender.model.parameters()).dtype == torch.bfloat16
    [answer] = recommender.run([recommender.prepare(RecommendRequest(history=[("click", "sku1")], top_k=3))])
    assert len(answer.items) == 3


@pytest.mark.parametrize(("options", "error", "match"), [
    (dict(model="/no/such/folder"), CheckpointError, "neither a checkpoint folder nor a Hub repo id"),
    (dict(dtype="float64"), ConfigurationError, "--dtype"),
    (dict(max_history=0), ConfigurationError, "--max-history"),
    (dict(num_beams=0), ConfigurationError, "--num-beams"),
    (dict(revision="v1"), ConfigurationError, "--revision"),
])
def test_bad_options_refused(checkpoint: Path, options: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_recommender(ModelOptions(**{"model": str(checkpoint), **options}))


def test_incomplete_folder_is_a_checkpoint_error(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes((checkpoint / "config.json").read_bytes())
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_recommender(ModelOptions(str(tmp_path)))



def test_unknown_log_level_refused_before_loading() -> None:
    with pytest.raises(ConfigurationError, match="--log-level 'loud' is not one of"):
        serve(ModelOptions("/no/such/folder"), ServeSettings(), log_level="loud")  # the folder is never looked at
