"""`skip_logits`: the loss from the labelled positions' hidden states only equals the loss from the full logits."""

from __future__ import annotations

import pytest
import torch

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast


def _batch(tokenizer: GamerTokenizerFast, make_histories, evaluation: bool) -> dict[str, torch.Tensor]:
    """Training rows (every code token labelled) or evaluation rows (only the target item's codes, at the end)."""
    batch = tokenizer.encode_histories(make_histories(tokenizer, 6, seed=5, max_len=7), return_tensors="pt")
    labels = batch["input_ids"].masked_fill(~tokenizer.code_token_mask(batch["input_ids"]), -100)
    if evaluation:
        labels[:, : -tokenizer.num_levels] = -100
    return {**batch, "labels": labels}


@pytest.mark.parametrize("evaluation", [False, True], ids=["training rows", "evaluation rows"])
@pytest.mark.parametrize("loss_kwargs", ["mean", "num_items_in_batch", "shift_labels"])
def test_the_loss_without_logits_equals_the_loss_from_the_logits(
    make_histories, tokenizer: GamerTokenizerFast, evaluation: bool, loss_kwargs: str
) -> None:
    torch.manual_seed(0)
    model = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer, training_temperature=0.7)).train()
    inputs = _batch(tokenizer, make_histories, evaluation)
    if loss_kwargs == "num_items_in_batch":  # the Trainer's divisor over accumulated micro-batches: not this batch's
        inputs["num_items_in_batch"] = torch.tensor(3 * int((inputs["labels"][:, 1:] != -100).sum()))
    elif loss_kwargs == "shift_labels":  # packed batches carry them already shifted
        inputs["shift_labels"] = torch.nn.functional.pad(inputs.pop("labels"), (0, 1), value=-100)[:, 1:].contiguous()
    results = {}
    for skip in (False, True):
        model.zero_grad()
        out = model(**inputs, skip_logits=skip)
        out.loss.backward()
        results[skip] = out, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    (full, full_grads), (skipped, skipped_grads) = results[False], results[True]
    assert full.logits.shape == (*inputs["input_ids"].shape, model.config.vocab_size)  # the plain call is unchanged
    assert skipped.logits is None
    torch.testing.assert_close(skipped.loss, full.loss, rtol=1e-6, atol=1e-6)
    assert full_grads.keys() == skipped_grads.keys()
    for name, grad in full_grads.items():
        torch.testing.assert_close(skipped_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_the_eval_loss_without_logits_equals_the_eval_loss(make_histories, tokenizer, model: GamerForCausalLM) -> None:
    inputs = _batch(tokenizer, make_histories, evaluation=True)
    with torch.no_grad():
        expected = model(**inputs).loss
        torch.testing.assert_close(model(**inputs, skip_logits=True).loss, expected, rtol=1e-6, atol=1e-6)


def test_skip_logits_without_labels_is_refused(make_histories, tokenizer, model: GamerForCausalLM) -> None:
    inputs = _batch(tokenizer, make_histories, evaluation=True)
    del inputs["labels"]
    with pytest.raises(ValueError, match="skip_logits=True returns only the loss"):
        model(**inputs, skip_logits=True)
