"""RQ-VAE (TIGER-style): an MLP autoencoder whose latent is residually quantized with K codebooks.

Unlike RQ-KMeans the latent space is learned so that the quantized code reconstructs the item
embedding; codebooks start from residual k-means and unused codes are re-seeded during training,
which keeps codebook usage high.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .rq_kmeans import RQKMeans, per_level_sizes

__all__ = ["RQVAEConfig", "RQVAE", "RQVAEQuantizer"]


@dataclass
class RQVAEConfig:
    """Hyper-parameters of the RQ-VAE; defaults train in seconds on a CPU for ~30k items."""

    latent_dim: int = 32
    hidden_dims: Sequence[int] = field(default_factory=lambda: (256, 128))
    beta: float = 0.25  # commitment weight: pulls encoder outputs towards their codes
    learning_rate: float = 2e-3
    steps: int = 300  # quantized training steps, after the warm-up
    warmup_steps: int = 50  # plain autoencoder steps before the k-means init of the codebooks
    batch_size: int = 1024
    dead_code_every: int = 50  # re-seed codes unused during the last this-many steps
    kmeans_init_samples: int = 20000
    # torch intra-op threads while training (None: leave torch's setting). The steps are small and
    # latency-bound: one thread ran them ~40x faster than two on a busy 2-core machine.
    num_threads: int | None = 1

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden_dims": list(self.hidden_dims)}


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """Encoder -> residual quantizer (K codebooks) -> decoder."""

    def __init__(self, input_dim: int, codebook_sizes: Sequence[int], config: RQVAEConfig) -> None:
        super().__init__()
        dims = [input_dim, *config.hidden_dims, config.latent_dim]
        self.encoder = _mlp(dims)
        self.decoder = _mlp(dims[::-1])
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.zeros(size, config.latent_dim)) for size in codebook_sizes
        )
        self.beta = config.beta

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Residual quantization of `z`: returns (quantized sum, codes [n, K], per-level residuals)."""
        residual = z
        quantized = torch.zeros_like(z)
        codes, residuals = [], []
        for codebook in self.codebooks:
            residuals.append(residual)
            # ||r||^2 is constant per row, so the nearest code minimizes ||c||^2 - 2 r.c (one matmul).
            idx = (codebook.pow(2).sum(1)[None, :] - 2.0 * residual @ codebook.T).argmin(1)
            chosen = codebook[idx]
            codes.append(idx)
            quantized = quantized + chosen
            residual = residual - chosen
        return quantized, torch.stack(codes, 1), residuals

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Returns (loss, codes, per-level residuals). Loss = reconstruction + codebook + beta * commitment."""
        z = self.encoder(x)
        quantized, codes, residuals = self.quantize(z)
        vq_loss = z.new_zeros(())
        for codebook, residual, idx in zip(self.codebooks, residuals, codes.unbind(1)):
            chosen = codebook[idx]
            codebook_loss = F.mse_loss(chosen, residual.detach())
            vq_loss = vq_loss + codebook_loss + self.beta * F.mse_loss(residual, chosen.detach())
        # Straight-through estimator: decoder gradients flow to the encoder as if quantization were identity.
        decoded = self.decoder(z + (quantized - z).detach())
        return F.mse_loss(decoded, x) + vq_loss, codes, residuals


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count for the block only."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _optimize(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class RQVAEQuantizer:
    """Train an RQ-VAE on item embeddings and return each item's codes.

    `losses` holds the total loss of every quantized training step (the warm-up is not included).
    """

    def __init__(
        self,
        num_levels: int = 4,
        codebook_size: int | Sequence[int] = 256,
        *,
        config: RQVAEConfig | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.codebook_sizes = per_level_sizes(codebook_size, num_levels)
        self.num_levels = num_levels
        self.config = config or RQVAEConfig()
        self.seed = seed
        self.progress = progress  # a bar over the training steps
        self.model: RQVAE | None = None
        self.losses: list[float] = []
        self.shift: np.ndarray | None = None
        self.scale = 1.0

    def _batch(self, data: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return data[torch.randint(len(data), (min(self.config.batch_size, len(data)),), generator=generator)]

    def _standardize(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((np.asarray(x, dtype=np.float32) - self.shift) / self.scale)

    def _kmeans_init(self, model: RQVAE, x: torch.Tensor, generator: torch.Generator) -> None:
        sample = x[torch.randperm(len(x), generator=generator)[: self.config.kmeans_init_samples]]
        with torch.no_grad():
            z = model.encoder(sample).numpy()
        rq = RQKMeans(self.num_levels, self.codebook_sizes, seed=self.seed)
        rq.fit_encode(z)
        with torch.no_grad():
            for codebook, centers in zip(model.codebooks, rq.codebooks):
                # Fewer distinct latents than codes: spare codes start as copies of random centers and
                # get re-seeded by the dead-code reset once training shows they are unused.
                centers_t = torch.from_numpy(centers)
                init = centers_t[torch.randint(len(centers_t), (len(codebook),), generator=generator)]
                init[: len(centers_t)] = centers_t
                codebook.copy_(init)

    @staticmethod
    def _reset_dead_codes(
        model: RQVAE, usage: torch.Tensor, residuals: list[torch.Tensor], generator: torch.Generator
    ) -> int:
        """Move codes unused since the last reset onto random residuals of the current batch."""
        reset = 0
        with torch.no_grad():
            for level, (codebook, residual) in enumerate(zip(model.codebooks, residuals)):
                dead = (usage[level, : len(codebook)] == 0).nonzero().flatten()
                if dead.numel():
                    pick = torch.randint(len(residual), (dead.numel(),), generator=generator)
                    codebook[dead] = residual[pick].detach()
                    reset += dead.numel()
        return reset

    def fit_encode(self, x: np.ndarray) -> np.ndarray:
        """Train on `x` `[n, d]` (deterministic for a given seed) and return codes `[n, K]` (int64)."""
        cfg = self.config
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"RQ-VAE needs a non-empty [n, d] array, got shape {x.shape}")
        # One global scale (not per dimension) keeps the embedding geometry while putting the
        # reconstruction loss on a fixed scale: L2-normalized inputs would otherwise give it
        # vanishing weight next to the codebook terms.
        self.shift = x.mean(0)
        self.scale = float((x - self.shift).std()) or 1.0
        data = self._standardize(x)
        # Seed locally so training is reproducible without touching the caller's global RNG state.
        with torch.random.fork_rng(devices=[]), _torch_threads(cfg.num_threads):
            torch.manual_seed(self.seed)
            generator = torch.Generator().manual_seed(self.seed)
            model = RQVAE(data.shape[1], self.codebook_sizes, cfg)
            optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
            # Codebooks fitted to a freshly initialized encoder go stale as soon as its latents grow;
            # warming the autoencoder up first gives k-means latents worth clustering.
            for _ in range(cfg.warmup_steps):
                batch = self._batch(data, generator)
                _optimize(optimizer, F.mse_loss(model.decoder(model.encoder(batch)), batch))
            self._kmeans_init(model, data, generator)
            usage = torch.zeros(self.num_levels, max(self.codebook_sizes), dtype=torch.long)
            self.losses = []
            for step in tqdm(range(1, cfg.steps + 1), desc="rq-vae", leave=False, disable=not self.progress):
                loss, codes, residuals = model(self._batch(data, generator))
                _optimize(optimizer, loss)
                self.losses.append(float(loss.detach()))
                for level in range(self.num_levels):
                    usage[level] += torch.bincount(codes[:, level], minlength=usage.shape[1])
                if cfg.dead_code_every and step % cfg.dead_code_every == 0 and step < cfg.steps:
                    self._reset_dead_codes(model, usage, residuals, generator)
                    usage.zero_()
        self.model = model.eval()
        return self.encode(x)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Codes of rows `x` with the trained model."""
        if self.model is None:
            raise RuntimeError("RQVAEQuantizer.encode called before fit_encode")
        with torch.no_grad(), _torch_threads(self.config.num_threads):
            z = self.model.encoder(self._standardize(x))
            return self.model.quantize(z)[1].numpy().astype(np.int64)
