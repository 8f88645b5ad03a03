"""A Trainer that never materializes logits: GAMER's training and validation read only the loss.

An evaluation batch is every target item of `per_device_eval_batch_size` cases, each a long prompt scored on
its few target codes: 64 cases of a large log make hundreds of sequences (441 at 100M events), whose
[sequences, length, vocab] float logits and activations set the training run's peak memory, following how many
targets the sampled cases happen to have. Here the model scores the labelled positions only (`skip_logits`),
and a loss-only evaluation batch runs in forwards of at most `per_device_train_batch_size` sequences, so its
memory is bounded by the training batch's whatever the cases; the loss is the same sum over the batch's scored
tokens divided by their count.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

__all__ = ["LossOnlyTrainer"]


class LossOnlyTrainer(Trainer):
    """Losses from the labelled positions only; loss-only evaluation in forwards of at most a training batch."""

    def _reads_logits(self) -> bool:
        """Label smoothing and a custom loss function compute their loss from the logits."""
        return self.label_smoother is not None or self.compute_loss_func is not None

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not self._reads_logits() and "skip_logits" not in inputs:
            inputs = {**inputs, "skip_logits": True}
        return super().compute_loss(model, inputs, *args, **kwargs)

    def prediction_step(self, model: torch.nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[torch.Tensor | None, Any, Any]:
        """A loss-only batch of more than `per_device_train_batch_size` sequences: each slice's summed loss over the
        whole batch's scored-token count (the divisor the single forward would use), added up."""
        cap = self.args.per_device_train_batch_size
        rows = len(inputs["input_ids"])
        sharded = getattr(self.accelerator, "parallelism_config", None) is not None  # context / sequence parallel
        if (not prediction_loss_only or rows <= cap or self._reads_logits() or "labels" not in inputs
                or not self.model_accepts_loss_kwargs or sharded):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        scored = self._get_num_items_in_batch([inputs], self.args.device)  # of the whole batch: the sum / count
        loss = torch.zeros((), device=self.args.device)
        with torch.no_grad(), self.compute_loss_context_manager():
            for start in range(0, rows, cap):
                part = {key: value[start:start + cap] for key, value in inputs.items()}
                loss = loss + self.compute_loss(model, part, num_items_in_batch=scored).detach()
        return loss, None, None
