from __future__ import annotations

import numpy as np
import pytest
import torch

from gamer_hf.semantic_ids.rq_vae import RQVAE, RQVAEConfig, RQVAEQuantizer

SMALL = RQVAEConfig(latent_dim=8, hidden_dims=(32,), warmup_steps=50, steps=50, batch_size=256, dead_code_every=15)
TINY = RQVAEConfig(latent_dim=4, hidden_dims=(16,), warmup_steps=5, steps=10, batch_size=128, dead_code_every=5)


@pytest.fixture(scope="module")
def trained(blobs: np.ndarray) -> tuple[RQVAEQuantizer, np.ndarray]:
    quantizer = RQVAEQuantizer(3, [8, 8, 8], config=SMALL, seed=0)
    return quantizer, quantizer.fit_encode(blobs)


def test_codes_shape_and_ranges(trained: tuple[RQVAEQuantizer, np.ndarray], blobs: np.ndarray) -> None:
    _, codes = trained
    assert codes.shape == (len(blobs), 3) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 8


def test_training_reduces_loss(trained: tuple[RQVAEQuantizer, np.ndarray]) -> None:
    quantizer, _ = trained
    assert len(quantizer.losses) == SMALL.steps
    assert np.mean(quantizer.losses[-10:]) < np.mean(quantizer.losses[:10])


def test_same_seed_same_codes_and_global_torch_state_untouched(blobs: np.ndarray) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    first = RQVAEQuantizer(2, 8, config=TINY, seed=0).fit_encode(blobs)
    assert torch.equal(torch.rand(1), expected_next)
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(RQVAEQuantizer(2, 8, config=TINY, seed=0).fit_encode(blobs), first)
    assert not np.array_equal(RQVAEQuantizer(2, 8, config=TINY, seed=1).fit_encode(blobs), first)


def test_first_level_separates_blobs(trained: tuple[RQVAEQuantizer, np.ndarray]) -> None:
    # 8 separated blobs (sizes 200..20, in order) and 8 first-level codes: most blobs get their own code.
    _, codes = trained
    bounds = np.cumsum([0, 200, 120, 80, 60, 50, 40, 30, 20])
    majority = [np.bincount(codes[a:b, 0]).argmax() for a, b in zip(bounds[:-1], bounds[1:])]
    assert len(set(majority)) >= 6


def test_dead_codes_are_moved_onto_batch_residuals() -> None:
    model = RQVAE(4, [4], RQVAEConfig(latent_dim=2, hidden_dims=(8,)))
    usage = torch.tensor([[5, 0, 3, 0]])
    residual = torch.full((6, 2), 7.0)
    before = model.codebooks[0].detach().clone()
    reset = RQVAEQuantizer._reset_dead_codes(model, usage, [residual], torch.Generator().manual_seed(0))
    after = model.codebooks[0].detach()
    assert reset == 2
    assert torch.equal(after[[1, 3]], torch.full((2, 2), 7.0))
    assert torch.equal(after[[0, 2]], before[[0, 2]])


def test_more_codes_than_points_still_trains() -> None:
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    config = RQVAEConfig(latent_dim=4, hidden_dims=(8,), warmup_steps=2, steps=5)
    codes = RQVAEQuantizer(2, 16, config=config, seed=0).fit_encode(x)
    assert codes.shape == (10, 2) and codes.max() < 16


def test_encode_before_fit_raises() -> None:
    with pytest.raises(RuntimeError, match="before fit"):
        RQVAEQuantizer(2, 4).encode(np.zeros((3, 2), dtype=np.float32))
