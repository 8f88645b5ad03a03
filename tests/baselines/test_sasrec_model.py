"""The SASRec module and its vocabulary: padding, unknown items, causality, behavior queries."""

from __future__ import annotations

import pytest
import torch

from gamer_hf.baselines import ItemVocabulary, SASRec, SASRecConfig
from gamer_hf.baselines.trainer import next_behaviors
from gamer_hf.baselines.vocabulary import NUM_SPECIAL, PAD, UNKNOWN

BEHAVIORS = {"click": 0, "cart": 1, "buy": 2}


@pytest.fixture
def vocabulary() -> ItemVocabulary:
    return ItemVocabulary(["a", "b", "c", "d"], BEHAVIORS)


def test_encode_keeps_the_tail_right_padded_and_marks_unknown_items(vocabulary) -> None:
    batch = vocabulary.encode([(["click", "cart", "buy"], ["a", "zzz", "c"]), (["click"], ["d"]), ([], [])], 2)
    a, c, d = (vocabulary.item(i) for i in "acd")
    assert batch.items.tolist() == [[UNKNOWN, c], [d, PAD], [UNKNOWN, PAD]]
    assert batch.behaviors.tolist() == [[2, 3], [1, PAD], [PAD, PAD]]
    assert batch.lengths.tolist() == [2, 1, 1]
    assert a == NUM_SPECIAL and vocabulary.decode([d, a]) == ["d", "a"]


@pytest.mark.parametrize(
    ("items", "behaviors", "message"),
    [(["a", "a"], BEHAVIORS, "more than once"), ([], BEHAVIORS, "empty"), (["a"], {}, "behavior table")],
)
def test_vocabulary_refuses_bad_catalogues(items, behaviors, message) -> None:
    with pytest.raises(ValueError, match=message):
        ItemVocabulary(items, behaviors)


def test_unknown_behavior_and_mismatched_lengths_are_named(vocabulary) -> None:
    with pytest.raises(ValueError, match="'fav'"):
        vocabulary.encode([(["fav"], ["a"])], 5)
    with pytest.raises(ValueError, match="sequence 0: 2 behaviors for 1 items"):
        vocabulary.encode([(["click", "buy"], ["a"])], 5)


def test_next_behaviors_shifts_and_puts_the_request_after_the_last_interaction() -> None:
    behaviors = torch.tensor([[1, 2, 3], [2, 1, PAD]])
    out = next_behaviors(behaviors, torch.tensor([3, 2]), requested=torch.tensor([3, 1]))
    assert out.tolist() == [[2, 3, 3], [1, 1, PAD]]


@pytest.mark.parametrize("use_behaviors", [False, True])
def test_position_t_never_sees_later_interactions(use_behaviors: bool) -> None:
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=12, num_behaviors=4, use_behaviors=use_behaviors, hidden_size=16,
                                num_layers=2, max_length=6)).eval()
    items = torch.tensor([[3, 4, 5, 6, 7]])
    behaviors = torch.tensor([[1, 2, 1, 3, 1]])
    changed_items = items.clone()
    changed_items[0, 3:] = torch.tensor([9, 10])
    changed_behaviors = behaviors.clone()
    changed_behaviors[0, 4] = 2  # changes the query at position 3 and the behavior at position 4
    length, requested = torch.tensor([5]), torch.tensor([3])
    before = model(items, behaviors, next_behaviors(behaviors, length, requested))
    after = model(changed_items, changed_behaviors, next_behaviors(changed_behaviors, length, requested))
    assert torch.allclose(before[0, :3], after[0, :3])
    assert not torch.allclose(before[0, 3:], after[0, 3:])


def test_specials_are_never_scored_and_config_is_checked() -> None:
    model = SASRec(SASRecConfig(num_items=8, num_behaviors=2, hidden_size=8, num_heads=2))
    logits = model.item_logits(torch.randn(3, 8))
    assert torch.isinf(logits[:, :NUM_SPECIAL]).all() and torch.isfinite(logits[:, NUM_SPECIAL:]).all()
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(num_items=8, num_behaviors=2, hidden_size=10, num_heads=4)
    with pytest.raises(ValueError, match="exceeds max_length"):
        model(torch.ones(1, 51, dtype=torch.long))
    with pytest.raises(ValueError, match="needs behaviors"):
        SASRec(SASRecConfig(num_items=8, num_behaviors=2, use_behaviors=True, hidden_size=8))(torch.ones(1, 2).long())


def test_the_loss_without_repeats_scores_only_next_items_the_sequence_does_not_hold() -> None:
    """TrainingSettings(score_repeats=False): the cross-entropy of every next item that is new to its sequence, none
    other; a batch of repeats only gives a zero loss, not NaN."""
    from gamer_hf.baselines.trainer import _training_loss
    from gamer_hf.baselines.vocabulary import SequenceBatch

    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=12, num_behaviors=4, hidden_size=16, num_layers=1, max_length=6)).eval()
    items = torch.tensor([[3, 4, 3, 5, 4, 6], [7, 7, 8, PAD, PAD, PAD]])
    behaviors = torch.where(items == PAD, PAD, 1)
    batch = SequenceBatch(items, behaviors, torch.tensor([6, 3]))
    logits = model.item_logits(model(items[:, :-1], behaviors[:, :-1], behaviors[:, 1:]))
    new = [(0, 0), (0, 2), (0, 4), (1, 1)]  # targets 4, 5, 6 of the first row and 8 of the second
    expected = torch.stack([torch.nn.functional.cross_entropy(logits[r, t], items[r, t + 1]) for r, t in new]).mean()
    assert torch.allclose(_training_loss(model, batch, score_repeats=False), expected)
    every = [(0, t) for t in range(5)] + [(1, 0), (1, 1)]
    assert torch.allclose(_training_loss(model, batch), torch.stack(
        [torch.nn.functional.cross_entropy(logits[r, t], items[r, t + 1]) for r, t in every]).mean())
    repeats = SequenceBatch(torch.tensor([[3, 3, 3]]), torch.tensor([[1, 1, 1]]), torch.tensor([3]))
    assert _training_loss(model, repeats, score_repeats=False).item() == 0.0
