"""The SASRec training loop: AdamW, next-item cross-entropy over the full catalogue, early stopping.

Every prefix of a training sequence is an example at once (causal attention), as in SASRec. The
validation loss is the same cross-entropy on the held-out cases only: the history, the requested
behavior, and the mean over the case's target items, which is GAMER's selection rule too. The best
epoch's weights are restored at the end. A wall-clock cap (`max_seconds`) lets a benchmark give
every model the same time budget; the loop then validates once more and stops. `device` trains and
validates on an accelerator ("cuda"); the sequences stay on the CPU and go over one batch at a time.

`select_by="ndcg"` selects the epoch by validation NDCG@10 instead. When most held-out targets are
items never seen in training (cold items), the loss keeps rising on them while the ranking of the
rest still improves, so the loss stops training early; the ranking metric does not.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..evaluation.metrics import ranking_metrics
from .sasrec import SASRec
from .vocabulary import NUM_SPECIAL, PAD, SequenceBatch

__all__ = [
    "CaseBatch", "FitResult", "TrainingSettings", "case_targets", "fit", "last_hidden", "next_behaviors", "validate",
]


@dataclass
class TrainingSettings:
    """Optimisation budget and schedule; `max_seconds` caps training wall time (None: no cap);
    `select_by` picks the restored epoch by validation "loss" (lowest) or "ndcg" (highest NDCG@10);
    `device` is where the model trains and scores (the catalogue-wide logits come back to the CPU)."""

    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 3
    max_seconds: float | None = None
    eval_batch_size: int = 256
    seed: int = 0
    progress: bool = True
    select_by: Literal["loss", "ndcg"] = "loss"
    device: str = "cpu"
    score_repeats: bool = True  # False: no loss on a next item the sequence already holds (GAMER's score_repeats)

    def __post_init__(self) -> None:
        try:
            torch.device(self.device)
        except RuntimeError as error:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {self.device!r}") from error
        if self.select_by not in ("loss", "ndcg"):
            raise ValueError(f"select_by must be 'loss' or 'ndcg', got {self.select_by!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 (0: never stop early), got {self.patience}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive or None, got {self.max_seconds}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CaseBatch:
    """Held-out cases as tensors: histories, the requested behavior ids, and target rows (-1 padded)."""

    histories: SequenceBatch
    requested: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.requested.shape[0]

    def select(self, rows: slice) -> "CaseBatch":
        h = self.histories
        return CaseBatch(SequenceBatch(h.items[rows], h.behaviors[rows], h.lengths[rows]), self.requested[rows],
                         self.targets[rows])

    def to(self, device: torch.device | str) -> "CaseBatch":
        return CaseBatch(self.histories.to(device), self.requested.to(device), self.targets.to(device))


@dataclass
class FitResult:
    """What training did: per-epoch losses, the restored epoch (its selection metric) and why the loop ended."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float | None = None
    epochs_run: int = 0
    seconds: float = 0.0
    stop_reason: str = "epochs"

    def to_dict(self) -> dict:
        return asdict(self)


def next_behaviors(behaviors: torch.Tensor, lengths: torch.Tensor, requested: torch.Tensor) -> torch.Tensor:
    """Behavior requested after each position: the next interaction's, and `requested` after the last."""
    shifted = torch.cat([behaviors[:, 1:], behaviors.new_full((behaviors.shape[0], 1), PAD)], dim=1)
    shifted[torch.arange(len(lengths), device=lengths.device), lengths - 1] = requested
    return shifted


def last_hidden(model: SASRec, histories: SequenceBatch, requested: torch.Tensor) -> torch.Tensor:
    """The hidden state after each history's last interaction, conditioned on the requested behavior."""
    queries = next_behaviors(histories.behaviors, histories.lengths, requested)
    hidden = model(histories.items, histories.behaviors, queries)
    lengths = histories.lengths
    return hidden[torch.arange(len(lengths), device=lengths.device), lengths - 1]


def _training_loss(model: SASRec, batch: SequenceBatch, score_repeats: bool = True) -> torch.Tensor:
    inputs, targets = batch.items[:, :-1], batch.items[:, 1:]
    behaviors = batch.behaviors[:, :-1]
    hidden = model(inputs, behaviors, batch.behaviors[:, 1:])
    scored = targets >= NUM_SPECIAL  # pads and items unknown to the catalogue are not targets
    if not score_repeats:  # a target equal to an item at or before its input position is a repeat
        earlier = torch.ones(targets.shape[1], targets.shape[1], dtype=torch.bool, device=targets.device).tril()
        scored &= ~((targets[:, :, None] == inputs[:, None, :]) & earlier).any(-1)
    if not scored.any():
        return hidden.sum() * 0.0  # a batch of repeats only: no gradient, and no NaN from an empty mean
    return F.cross_entropy(model.item_logits(hidden[scored]), targets[scored])


@torch.no_grad()
def validate(model: SASRec, cases: CaseBatch, batch_size: int) -> dict[str, float]:
    """eval_loss: mean over cases of the mean cross-entropy of the case's target items;
    eval_ndcg10: NDCG@10 of the full-catalogue ranking over the case's target set."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    total, rankings = 0.0, []
    try:
        for start in range(0, len(cases), batch_size):
            chunk = cases.select(slice(start, start + batch_size)).to(device)
            logits = model.item_logits(last_hidden(model, chunk.histories, chunk.requested))
            log_probs = torch.log_softmax(logits, -1)
            valid = chunk.targets >= NUM_SPECIAL
            picked = torch.where(valid, log_probs.gather(1, chunk.targets.clamp(min=0)), 0.0)
            per_case = -picked.sum(1) / valid.sum(1).clamp(min=1)
            total += float(per_case[valid.any(1)].sum())
            rankings += logits.topk(min(10, logits.shape[1] - NUM_SPECIAL), dim=-1).indices.tolist()
    finally:
        model.train(was_training)
    truths = [{t for t in row if t >= NUM_SPECIAL} for row in cases.targets.tolist()]
    scored = [i for i, truth in enumerate(truths) if truth]
    if not scored:
        return {"eval_loss": math.nan, "eval_ndcg10": math.nan}
    ndcg = ranking_metrics([rankings[i] for i in scored], [truths[i] for i in scored], (10,))["NDCG@10"]
    return {"eval_loss": total / len(scored), "eval_ndcg10": ndcg}


def fit(model: SASRec, train: SequenceBatch, validation: CaseBatch | None, settings: TrainingSettings) -> FitResult:
    """Train in place (shuffled with `settings.seed`) and restore the best validation epoch's weights."""
    usable = torch.nonzero(train.lengths >= 2).flatten()  # a sequence needs a next item to learn from
    if usable.numel() == 0:
        raise ValueError("no training sequence has two or more interactions: nothing to learn the next item from")
    generator = torch.Generator().manual_seed(settings.seed)
    device = torch.device(settings.device)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    result = FitResult()
    best_state, waited, start = None, 0, time.perf_counter()
    batches = math.ceil(usable.numel() / settings.batch_size)
    bar = tqdm(total=settings.epochs * batches, desc="SASRec+beh" if model.config.use_behaviors else "SASRec",
               unit="batch", disable=not settings.progress)
    model.train()
    for epoch in range(1, settings.epochs + 1):
        order = usable[torch.randperm(usable.numel(), generator=generator)]
        losses, capped = [], False
        for first in range(0, order.numel(), settings.batch_size):
            rows = order[first : first + settings.batch_size]
            width = int(train.lengths[rows].max())
            batch = SequenceBatch(train.items[rows, :width], train.behaviors[rows, :width], train.lengths[rows]).to(device)
            loss = _training_loss(model, batch, settings.score_repeats)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.update()
            if settings.max_seconds is not None and time.perf_counter() - start > settings.max_seconds:
                capped = True
                break
        row = {"epoch": epoch, "loss": sum(losses) / len(losses), "seconds": time.perf_counter() - start}
        if validation is not None and len(validation):
            row.update(validate(model, validation, settings.eval_batch_size))
            bar.set_postfix(loss=f"{row['loss']:.3f}", eval_loss=f"{row['eval_loss']:.3f}",
                            eval_ndcg10=f"{row['eval_ndcg10']:.4f}")
            key, sign = ("eval_loss", 1.0) if settings.select_by == "loss" else ("eval_ndcg10", -1.0)
            if result.best_metric is None or sign * row[key] < sign * result.best_metric:
                result.best_metric, result.best_epoch, waited = row[key], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
        result.history.append(row)
        result.epochs_run = epoch
        if capped:
            result.stop_reason = "max_seconds"
            break
        if settings.patience and waited >= settings.patience:
            result.stop_reason = "early_stopping"
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = result.epochs_run
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def case_targets(targets: Sequence[Sequence[int]]) -> torch.Tensor:
    """Target rows of every case, right-padded with -1."""
    width = max((len(row) for row in targets), default=1) or 1
    out = torch.full((len(targets), width), -1, dtype=torch.long)
    for i, row in enumerate(targets):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out
