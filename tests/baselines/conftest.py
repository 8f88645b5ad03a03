"""A small synthetic prepared dataset with learnable sequences, and SASRec variants fitted on it once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gamer_hf.baselines import SASRecRecommender, TrainingSettings
from gamer_hf.data import SYNTHETIC_BEHAVIORS, PreparedData, generate_synthetic, prepare

MODEL = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_length": 20}


def _settings(**overrides) -> TrainingSettings:
    values = dict(epochs=8, patience=0, learning_rate=3e-3, batch_size=64, seed=0, progress=False)
    return TrainingSettings(**{**values, **overrides})


@pytest.fixture
def settings() -> Callable[..., TrainingSettings]:
    """Fast training settings (8 epochs, no early stopping), with overrides."""
    return _settings


@pytest.fixture
def model_options() -> dict[str, int]:
    return dict(MODEL)


@pytest.fixture(scope="module")
def prepared() -> PreparedData:
    """About 400 users over 200 items: big enough that sequence models beat popularity."""
    events, _ = generate_synthetic(num_users=400, num_items=200, seed=0, sessions_per_user=6)
    return prepare(events, behaviors=SYNTHETIC_BEHAVIORS, max_history=20, progress=False)


@pytest.fixture(scope="module", params=[False, True], ids=["sasrec", "sasrec_behavior"])
def fitted(request: pytest.FixtureRequest, prepared: PreparedData) -> SASRecRecommender:
    return SASRecRecommender.fit_prepared(prepared, use_behaviors=request.param, settings=_settings(), **MODEL)
