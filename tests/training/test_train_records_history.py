"""The trained history length travels with the checkpoint, so recommend() cuts histories to it by default."""

from __future__ import annotations

from gamer_hf import GamerConfig
from gamer_hf.data.prepare import load_prepared


def test_checkpoint_records_the_trained_history_length(trained, prepared_dir) -> None:
    expected = load_prepared(prepared_dir).metadata["max_history"]
    assert expected is not None
    assert GamerConfig.from_pretrained(trained.checkpoint_dir).max_history == expected
