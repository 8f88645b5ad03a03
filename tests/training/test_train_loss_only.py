"""The Trainer without logits: the same training loss, and a loss-only evaluation in forwards of at most a
training batch that gives the same eval loss as the stock Trainer's single forward per batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainingArguments

from gamer_hf import GamerConfig, GamerForCausalLM
from gamer_hf.checkpoint import load_tokenizer
from gamer_hf.data.collator import GamerCollator
from gamer_hf.data.prepare import load_prepared
from gamer_hf.training.loss_only import LossOnlyTrainer


@pytest.fixture(scope="module")
def setup(prepared_dir: Path, tokenizer_dir: Path) -> tuple[GamerForCausalLM, GamerCollator, dict]:
    tokenizer = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    model = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer))
    return model, GamerCollator(tokenizer), load_prepared(prepared_dir).splits


def _trainer(cls: type[Trainer], setup, tmp_path: Path, train_batch: int) -> Trainer:
    model, collator, splits = setup
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=train_batch,
                             per_device_eval_batch_size=16, prediction_loss_only=True, use_cpu=True,
                             report_to="none", remove_unused_columns=False, label_names=["labels"])
    return cls(model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["validation"],
               data_collator=collator)


@pytest.mark.parametrize("train_batch", [3, 64], ids=["sliced evaluation", "one forward per batch"])
def test_the_eval_loss_equals_the_stock_trainers(setup, tmp_path: Path, train_batch: int) -> None:
    model = setup[0]
    rows: list[int] = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: rows.append(len(kwargs["input_ids"])),
                                           with_kwargs=True)
    try:
        ours = _trainer(LossOnlyTrainer, setup, tmp_path, train_batch).evaluate()["eval_loss"]
    finally:
        hook.remove()
    stock = _trainer(Trainer, setup, tmp_path, train_batch).evaluate()["eval_loss"]
    assert ours == pytest.approx(stock, rel=1e-5)
    batches = [len(batch["input_ids"]) for batch in _trainer(Trainer, setup, tmp_path, 1).get_eval_dataloader()]
    assert max(batches) > 3  # an evaluation batch of more sequences than the smaller training batch
    assert max(rows) == min(train_batch, max(batches))


def test_the_training_loss_and_gradients_equal_the_stock_trainers(setup, tmp_path: Path) -> None:
    model, collator, splits = setup
    batch = collator([splits["train"][i] for i in range(8)])
    results = []
    for cls in (Trainer, LossOnlyTrainer):
        model.zero_grad()
        trainer = _trainer(cls, setup, tmp_path, 8)
        loss = trainer.compute_loss(model.train(), batch, num_items_in_batch=(batch["labels"][:, 1:] != -100).sum())
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (stock, stock_grads), (ours, our_grads) = results
    torch.testing.assert_close(ours, stock, rtol=1e-6, atol=1e-6)
    assert len(our_grads) == len(stock_grads)
    for mine, theirs in zip(our_grads, stock_grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
