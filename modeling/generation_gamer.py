"""Constrained decoding over the item index: `recommend()`, `score_items()` and their beam search.

The trie and the logits processor for stock `generate()` live in `trie_gamer.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch
from transformers import GenerationMixin

from transformers.utils import logging

from .cache_gamer import GamerBeamCache
from .configuration_gamer import GamerConfig
from .trie_gamer import GamerConstrainedLogitsProcessor, ItemTrie

logger = logging.get_logger(__name__)


def check_positive_int(name: str, value: Any) -> int:
    """Refuse what would silently slice or reshape wrongly downstream (a negative top_k keeps num_beams - k items)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def check_beam_arguments(top_k: Any, num_beams: Any) -> None:
    check_positive_int("top_k", top_k)
    check_positive_int("num_beams", num_beams)
    if top_k > num_beams:
        raise ValueError(f"top_k={top_k} needs at least as many beams, got num_beams={num_beams}")


def resolve_max_history(config: GamerConfig, histories: Sequence[Sequence[Any]], max_history: int | None) -> int:
    """Interactions kept per prompt: the caller's value, else the trained length, never past the positions.

    A history longer than the model was trained on gives lists unrelated to its recent part, and one past
    `max_position_embeddings` reads positions the model has never seen; both are cut (the latter with a note).
    """
    limit = config.max_prompt_interactions
    if max_history is None:
        max_history = config.max_history if config.max_history is not None else limit
    check_positive_int("max_history", max_history)
    if max_history > limit and any(len(history) > limit for history in histories):
        logger.warning(
            "histories are cut to their last %d interactions: with %d tokens each, longer prompts pass "
            "max_position_embeddings=%d (max_history=%d asked for)", limit, config.num_code_levels + 1,
            config.max_position_embeddings, max_history,
        )
    return min(max_history, limit)

__all__ = [
    "GamerGenerationMixin",
    "ItemTrie",
    "check_beam_arguments",
    "check_positive_int",
    "resolve_max_history",
    "GamerConstrainedLogitsProcessor",
    "beam_search_items",
    "score_candidate_items",
    "make_prefix_allowed_tokens_fn",
]


@torch.no_grad()
def beam_search_items(
    model: Any,
    tokenizer: Any,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    top_k: int,
    num_beams: int,
    exclude: Sequence[set[str]] | None = None,
) -> list[list[tuple[str, float]]]:
    """Prefill once, then K constrained beam steps on the shared cache; same ranking as stock beam search."""
    check_beam_arguments(top_k, num_beams)
    trie = ItemTrie.for_tokenizer(tokenizer).to(input_ids.device)
    offsets = tokenizer.code_token_offsets
    batch, device = input_ids.shape[0], input_ids.device
    cache = GamerBeamCache(model.config, attention_mask, num_beams, trie.num_levels - 1)
    log_probs, position = _prefill(model, input_ids, attention_mask, cache)
    excluded_leaves = _excluded_leaves(tokenizer, trie, exclude, device) if exclude else None

    nodes = torch.zeros(batch, 1, dtype=torch.long, device=device)
    scores = torch.zeros(batch, 1, device=device)
    for depth in range(trie.num_levels):
        size, previous = trie.codebook_sizes[depth], nodes.shape[1]
        # each beam's score plus its real continuations' log-probs, -inf for every other code: summed for the
        # trie's children only, not for the whole [beams, codebook] block before masking it
        rows, child_codes, child = trie.children(nodes, depth)
        if excluded_leaves is not None and depth == trie.num_levels - 1:
            kept = ~torch.isin(rows // previous * trie.leaf_to_item.numel() + child, excluded_leaves)
            rows, child_codes = rows[kept], child_codes[kept]
        sums = scores.view(-1)[rows] + log_probs.view(batch * previous, -1)[rows, child_codes + offsets[depth]]
        candidates = scores.new_full((batch * previous, size), float("-inf")).index_put_((rows, child_codes), sums)
        candidates = candidates.view(batch, -1)
        scores, flat = candidates.topk(min(num_beams, candidates.shape[1]), dim=-1)
        parent, codes = flat // size, flat % size
        nodes = trie.step(nodes.gather(1, parent), depth, codes)
        if depth == trie.num_levels - 1:
            break
        # Beams follow their parent: the first time this expands each prompt to its beams.
        cache.reorder_cache((parent + torch.arange(batch, device=device)[:, None] * previous).view(-1))
        log_probs = _decode_step(model, cache, codes + offsets[depth], position + 1 + depth)
    names = tokenizer.item_ids.take(trie.leaf_to_item[nodes.clamp(min=0)].cpu().numpy())
    width = nodes.shape[1]
    results = []
    for row, (row_scores, row_nodes) in enumerate(zip(scores.tolist(), nodes.tolist())):
        row_names = names[row * width : (row + 1) * width]
        ranked = [(name, s) for name, s, n in zip(row_names, row_scores, row_nodes) if n >= 0 and s > float("-inf")]
        results.append(ranked[:top_k])
    return results


def score_candidate_items(
    model: Any,
    tokenizer: Any,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    codes: torch.LongTensor,
) -> torch.Tensor:
    """Summed log-probabilities [batch, n] of given items' codes ([batch, n, K]) after each prompt.

    The same quantity `beam_search_items` ranks by, so a scored item and a found item compare directly;
    the candidates of a prompt share its prefill like beams do.
    """
    offsets = tokenizer.code_token_offsets
    batch, width, levels = codes.shape
    cache = GamerBeamCache(model.config, attention_mask, width, levels - 1)
    log_probs, position = _prefill(model, input_ids, attention_mask, cache)
    scores = torch.zeros(batch, width, device=input_ids.device)
    for depth in range(levels):
        tokens = codes[..., depth] + offsets[depth]
        scores += log_probs.expand(batch, width, -1).gather(-1, tokens[..., None])[..., 0]
        if depth == levels - 1:
            break
        if depth == 0:  # each prompt becomes one beam per candidate
            cache.reorder_cache(torch.arange(batch, device=input_ids.device).repeat_interleave(width))
        log_probs = _decode_step(model, cache, tokens, position + 1 + depth)
    return scores


def _prefill(model: Any, input_ids: torch.LongTensor, attention_mask: torch.LongTensor, cache: GamerBeamCache):
    """Encode the prompts once into `cache`: next-token log-probs [batch, 1, vocab] and each prompt's last position."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, cache=cache, use_cache=True, logits_to_keep=1)
    position = (attention_mask.long().sum(-1) - 1)[:, None]
    return torch.log_softmax(out.logits.float(), dim=-1), position


def _decode_step(model: Any, cache: GamerBeamCache, tokens: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Feed one code token per live beam ([batch, width]) on the shared prompts; log-probs [batch, width, vocab].

    Every beam sits at the same position after its prompt; its roles follow from the token ids and the cache.
    """
    mask = cache.beam_mask(model.dtype)  # additive: the form every backend takes, flex included
    step = model(input_ids=tokens, attention_mask=mask, position_ids=position.expand_as(tokens), cache=cache,
                 use_cache=True)
    return torch.log_softmax(step.logits.float(), dim=-1)


def _excluded_leaves(tokenizer: Any, trie: ItemTrie, exclude: Sequence[set[str]], device: torch.device) -> torch.Tensor:
    """Sorted keys user * num_leaves + leaf for every (user, history item) pair to keep out of the results."""
    pairs = [(user, item) for user, items in enumerate(exclude) for item in items]
    found = tokenizer.item_index.rows([item for _, item in pairs]).tolist()  # one vectorized lookup
    rows = [(user, row) for (user, _), row in zip(pairs, found) if row >= 0]
    if not rows:
        return torch.empty(0, dtype=torch.long, device=device)
    users, item_rows = torch.tensor(rows, device=device).T
    return torch.sort(users * trie.leaf_to_item.numel() + trie.item_to_leaf[item_rows]).values


def make_prefix_allowed_tokens_fn(tokenizer: Any) -> Callable[[int, torch.Tensor], list[int]]:
    """A plain dict trie for `generate(prefix_allowed_tokens_fn=...)`: the stock baseline the benchmarks compare to."""
    layout = tokenizer.layout
    children: dict[tuple[int, ...], set[int]] = {}
    for codes in tokenizer.item_index.values():
        tokens = layout.code_token_ids(codes)
        for depth in range(len(tokens)):
            children.setdefault(tuple(tokens[:depth]), set()).add(tokens[depth])
    allowed = {prefix: sorted(tokens) for prefix, tokens in children.items()}
    first_behavior = layout.behavior_token_offset
    last_behavior = first_behavior + layout.num_behaviors
    eos = [tokenizer.eos_token_id]

    def prefix_allowed_tokens_fn(batch_id: int, sent: torch.Tensor) -> list[int]:
        tokens = sent.tolist()
        start = max(i for i, t in enumerate(tokens) if first_behavior <= t < last_behavior) + 1
        return allowed.get(tuple(tokens[start:]), eos)

    return prefix_allowed_tokens_fn


class GamerGenerationMixin(GenerationMixin):
    """`recommend()` and `score_items()` on top of stock generation; uses the model only through its forward."""

    @torch.no_grad()
    def recommend(
        self,
        tokenizer: Any,
        histories: Sequence[Sequence[tuple[str, str]]],
        behavior: str | Sequence[str] | None = None,
        top_k: int = 10,
        num_beams: int = 20,
        max_history: int | None = None,
        exclude_history: bool = False,
        batch_size: int = 64,
        on_unknown: str = "raise",
        exclude_items: Sequence[Collection[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top-K items per history under the requested behavior (default: the target behavior).

        Each history is encoded once (prefill); the cache is shared by the beams, and only the K
        code steps are decoded, constrained to real items. Scores are summed log-probabilities.
        `max_history` defaults to the history length the checkpoint was trained with (`config.max_history`).
        `exclude_items` gives per history items never to return (with the history's own items when
        `exclude_history`); the beams search around them, so lists stay top_k long.
        """
        check_beam_arguments(top_k, num_beams)
        if exclude_items is not None and len(exclude_items) != len(histories):
            raise ValueError(f"got {len(exclude_items)} exclude_items lists for {len(histories)} histories")

        def decode(batch: dict[str, torch.Tensor], start: int) -> list[list[tuple[str, float]]]:
            chunk = histories[start : start + batch_size]
            exclude = None
            if exclude_history or exclude_items is not None:
                given = exclude_items[start : start + batch_size] if exclude_items is not None else [()] * len(chunk)
                exclude = [{str(item) for item in items} | ({str(item) for _, item in history} if exclude_history else set())
                           for history, items in zip(chunk, given)]
            return beam_search_items(self, tokenizer, batch["input_ids"], batch["attention_mask"], top_k, num_beams, exclude)

        return self._per_batch(tokenizer, histories, behavior, max_history, batch_size, on_unknown, decode)

    @torch.no_grad()
    def score_items(
        self,
        tokenizer: Any,
        histories: Sequence[Sequence[tuple[str, str]]],
        candidates: Sequence[Sequence[str]],
        behavior: str | Sequence[str] | None = None,
        max_history: int | None = None,
        batch_size: int = 64,
        on_unknown: str = "raise",
    ) -> list[list[float]]:
        """Log-probability of each candidate item per history, the score `recommend()` ranks by.

        For re-ranking given candidates (the user's own items, another retriever's list). Items not in
        the tokenizer's index raise, or score -inf with on_unknown="skip".
        """
        if len(candidates) != len(histories):
            raise ValueError(f"got {len(candidates)} candidate lists for {len(histories)} histories")
        known = tokenizer.item_index

        def score(batch: dict[str, torch.Tensor], start: int) -> list[list[float]]:
            chunk = [[str(item) for item in items] for items in candidates[start : start + batch_size]]
            lengths = [len(items) for items in chunk]
            width = max(lengths, default=0)
            if width == 0:
                return [[] for _ in chunk]
            flat = [item for items in chunk for item in items]
            rows = torch.from_numpy(known.rows(flat))  # one vectorized lookup; -1 where unknown
            if on_unknown == "raise" and bool((rows < 0).any()):
                raise ValueError(f"candidate item {flat[int((rows < 0).nonzero()[0])]!r} is not in the tokenizer's "
                                 f"item index (pass on_unknown='skip' to score unknown items -inf)")
            # [batch, width] rows, padded and unknown candidates on row 0's codes (their scores are dropped)
            padded = torch.full((len(chunk), width), -1, dtype=torch.long)
            padded[torch.arange(width) < torch.tensor(lengths)[:, None]] = rows
            codes = torch.from_numpy(known.codes).long()[padded.clamp(min=0)].to(self.device)
            scores = score_candidate_items(self, tokenizer, batch["input_ids"], batch["attention_mask"], codes)
            scores = scores.cpu().masked_fill(padded < 0, float("-inf")).tolist()
            return [row[:length] for row, length in zip(scores, lengths)]

        return self._per_batch(tokenizer, histories, behavior, max_history, batch_size, on_unknown, score)

    def _per_batch(self, tokenizer: Any, histories: Sequence[Sequence[tuple[str, str]]],
                   behavior: str | Sequence[str] | None, max_history: int | None, batch_size: int, on_unknown: str,
                   run: Callable[[dict[str, torch.Tensor], int], list[Any]]) -> list[Any]:
        """Encode histories batch by batch with the requested behavior token and run `run(batch, start)` in eval mode."""
        check_positive_int("batch_size", batch_size)
        max_history = resolve_max_history(self.config, histories, max_history)
        behavior = tokenizer.target_behavior if behavior is None else behavior
        requested = [behavior] * len(histories) if isinstance(behavior, str) else list(behavior)
        if len(requested) != len(histories):
            raise ValueError(f"got {len(requested)} behaviors for {len(histories)} histories")
        # eval mode for the calls, then each module's own mode back (modules a user froze in eval stay so); only the
        # modules in training mode are touched, so a model in eval throughout costs one walk
        training = [module for module in self.modules() if module.training]
        for module in training:
            module.training = False
        results: list[Any] = []
        try:
            for start in range(0, len(histories), batch_size):
                batch = tokenizer.encode_histories(
                    histories[start : start + batch_size], behavior=requested[start : start + batch_size],
                    max_history=max_history, return_tensors="pt", on_unknown=on_unknown,
                ).to(self.device)
                results.extend(run(batch, start))
        finally:
            for module in training:
                module.training = True
        return results
