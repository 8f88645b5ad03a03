"""recommend() against its baselines, on one model and one set of histories per section.

Sections (`--sections`, default all):
- `stock`: recommend() (prefill once, beams sharing the prompt in `GamerBeamCache`, vectorized trie)
  vs stock `generate(num_beams, prefix_allowed_tokens_fn)`; speed ratio and identical top-N lists;
- `prefill`: recommend() against one forward of the same prompts (the prefill it cannot avoid): `--rounds`
  recommend() calls, each between two prefills (each divided by the mean of the two), CPU time of this process
  (one torch thread, so other jobs on a shared machine count far less than in wall time) and wall time, the
  median with a distribution-free 95% interval; recommend() split into encoding, prefill forward, decode
  steps and the rest of the search (the forwards are timed by hooks); with `--ab`, the same sandwiched rounds of
  `--baseline-commit`'s model code (same weights) interleaved with them, per-round ratios of the two, same lists;
- `attention`: the `prefill` ratios with the model's masked CPU attention on the grouped K/V heads in place
  (`sdpa_grouped_attention_forward`, the default) against Transformers' own sdpa path (which copies the K/V
  heads per query head whenever a mask is given), the two interleaved round by round in this process; with
  the fixed cost of one decode forward (1 prompt, 1 beam);
- `hotpath`: today's recommend() and prefill against the model code of `--baseline-commit` (same weights,
  same histories), the four calls interleaved round by round in this process (order rotating); ratios against
  both prefills, the old/new speed-up, then recommend() split into encoding, prefill, decode forwards and the
  search on each side (alternating), identical lists, and the fixed cost of one decode forward (1 prompt,
  1 beam: CPU ms and Python calls counted by cProfile) on each side;
- `profile`: where recommend()'s CPU goes, at `--batch` histories and at one: encoding, the prefill forward, the
  decode forwards split by module (self-attention and cross-level attention with the sdpa kernel inside them,
  experts, norms, the head, the rest of the forward: roles, masks, rotary, embedding), and after the forwards
  the step mask and log-softmax, the trie, the cache reorder and the top-k; CPU ms per call, per decode step
  and per decode row (`batch x beams` rows a step) against the prefill's ms per prompt token;
- `two_part`: the decode steps' self-attention as it runs (one masked sdpa call over the prompt and every step
  block, the other beams' slots masked) against a two-part attention (the prompt read by all of a prompt's beams
  in one grouped call, each beam's own ancestor slots as a second small call, combined by log-sum-exp), on the
  query, keys, values and masks captured from a real recommend() call, interleaved over `--rounds`;
- `compiled`: recommend() with its decode-step forwards through `torch.compile(model.forward, dynamic=True)`
  (Inductor; the prefill stays eager) against eager: the compile's wall time, then both interleaved over
  `--rounds`, lists and scores compared;
- `flex_mask`: CPU ms per recommend() call spent building flex `BlockMask`s (`create_block_mask`) under
  `attn_implementation="flex_attention"`, today's code against `--baseline-commit`'s (flex in eager stance);
- `lookup`: a served request's item lookup (issue 13): CPU us of `Recommender.prepare` (the event loop's check of
  one request, 10 and 50 history ids) and of `encode_histories` (what recommend() encodes: one request, and
  `--batch` histories), through the item index's id -> row cache warm (ids seen before), cold (the cache emptied
  before each call) and by the padded vectorized search alone (as before the cache and the Python-int keys of short
  calls), interleaved over `--rounds`;
  with `--lookup-work` (serve_load.py's work folder), also its checkpoint's real requests in arrival order from an
  emptied cache: the event loop's check and the decode thread's encoding per request, cached against direct;
- `constraint`: the trie constraint's share of decode time (`ItemTrie.children`/`step` of the
  tokenizer's trie, timed on that instance, over everything recommend() does after its prefill) at
  `--items` and at `--constraint-items` (synthetic codes).

The `prefill` and `constraint` sections read CPU clocks: they are meant for CPU runs.

    OMP_NUM_THREADS=1 python recipes/bench/recommend_speed.py --sections prefill constraint --batch 32
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import pstats
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast, ItemTrie, make_prefix_allowed_tokens_fn
from gamer_hf.modeling import modeling_gamer

SECTIONS = ("stock", "prefill", "attention", "hotpath", "profile", "two_part", "compiled", "flex_mask", "lookup",
            "constraint")


def catalogue(num_items: int, levels: int, codebook: int, seed: int) -> dict[str, tuple[int, ...]]:
    """`num_items` distinct random code tuples: the shape of a real semantic-ID index."""
    rng = random.Random(seed)
    index: dict[str, tuple[int, ...]] = {}
    used: set[tuple[int, ...]] = set()
    while len(index) < num_items:
        codes = tuple(rng.randrange(codebook) for _ in range(levels))
        if codes not in used:
            used.add(codes)
            index[f"item{len(index)}"] = codes
    return index


def build(num_items: int, levels: int, codebook: int, preset: str, seed: int):
    tok = GamerTokenizerFast.from_items(
        catalogue(num_items, levels, codebook, seed), behaviors={"click": 0, "cart": 1, "buy": 2}, codebook_size=codebook
    )
    torch.manual_seed(seed)
    model = GamerForCausalLM(GamerConfig.from_preset(preset, tokenizer=tok)).eval()
    return tok, model


def histories_for(tok, batch: int, length: int, seed: int):
    rng = random.Random(seed)
    items, behaviors = tok.item_ids, list(tok.behaviors)
    return [[(rng.choice(behaviors), rng.choice(items)) for _ in range(length)] for _ in range(batch)]


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def clocks() -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds)."""
    return time.process_time(), time.perf_counter()


@contextmanager
def forward_clock(model: torch.nn.Module) -> Iterator[list[tuple[float, float]]]:
    """CPU-time (start, end) of every top-level forward of `model` while open."""
    spans: list[tuple[float, float]] = []
    starts: list[float] = []
    pre = model.register_forward_pre_hook(lambda *_: starts.append(time.process_time()))
    post = model.register_forward_hook(lambda *_: spans.append((starts.pop(), time.process_time())))
    try:
        yield spans
    finally:
        pre.remove()
        post.remove()


@contextmanager
def method_clock(obj: Any, names: tuple[str, ...]) -> Iterator[list[float]]:
    """[CPU seconds, calls] of the named methods of one instance, or functions of a module (`obj.name` shadowed
    while open)."""
    total = [0.0, 0]
    owned = {name: vars(obj)[name] for name in names if name in vars(obj)}  # a module's functions, not methods

    def clocked(method: Callable) -> Callable:
        def run(*args, **kwargs):
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                total[0] += time.process_time() - start
                total[1] += 1
        return run

    for name in names:
        setattr(obj, name, clocked(getattr(obj, name)))
    try:
        yield total
    finally:
        for name in names:
            if name in owned:
                setattr(obj, name, owned[name])
            else:
                delattr(obj, name)


def split_recommend(model, tok, histories, beams: int) -> dict[str, float]:
    """CPU seconds of one recommend() call: before the prefill, the prefill forward, the decode forwards and
    everything else after the prefill (beam selection, constraint, results)."""
    with forward_clock(model) as spans:
        start, _ = clocks()
        model.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams, batch_size=len(histories))
        end, _ = clocks()
    (prefill_start, prefill_end), decodes = spans[0], spans[1:]
    decode_forwards = sum(b - a for a, b in decodes)
    return {"total": end - start, "encode": prefill_start - start, "prefill": prefill_end - prefill_start,
            "decode_forwards": decode_forwards, "after_prefill": end - prefill_end,
            "search": end - prefill_end - decode_forwards}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def stock_section(tok, model, histories, batch, beams: int, repeats: int) -> dict[str, Any]:
    prefix_fn = make_prefix_allowed_tokens_fn(tok)

    def stock():
        with torch.no_grad():
            out = model.generate(
                **batch, max_new_tokens=tok.num_levels, num_beams=beams, num_return_sequences=beams,
                do_sample=False, length_penalty=0.0, prefix_allowed_tokens_fn=prefix_fn,
            )
        return tok.decode_items(out[:, batch["input_ids"].shape[1] :].cpu())

    def fast():
        return model.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams, batch_size=len(histories))

    t_stock, stock_items = timed(stock, repeats)
    t_fast, fast_recs = timed(fast, repeats)
    return {"stock_generate_s": round(t_stock, 3), "recommend_s": round(t_fast, 3),
            "speedup": round(t_stock / t_fast, 2), "identical_top": [i for row in fast_recs for i, _ in row] == stock_items}


def median_interval(values: list[float], level: float = 0.95) -> dict[str, float]:
    """The median and a distribution-free interval for it: the j-th smallest and j-th largest round, j the largest
    with P(Binomial(n, 1/2) < j) <= (1 - level) / 2, which covers the median with at least `level` probability
    for independent rounds (below 6 rounds no j qualifies at 95%: the interval is then the min and max)."""
    ordered, n = sorted(values), len(values)
    low = max([j - 1 for j in range(1, n // 2 + 1)
               if sum(math.comb(n, i) for i in range(j)) / 2 ** n <= (1 - level) / 2], default=0)
    return {"median": round(statistics.median(values), 3), "low": round(ordered[low], 3),
            "high": round(ordered[n - 1 - low], 3), "rounds": n}


def prefill_section(tok, model, histories, batch, beams: int, rounds: int, baseline=None) -> dict[str, Any]:
    """recommend() / prefill per round (CPU and wall): the calls alternate prefill, recommend, prefill, ... and
    each recommend() is divided by the mean of the prefills just before and after it (a slow drift of the
    machine's speed cancels), median with its interval over the rounds. With `baseline` (the same weights in
    another commit's model code), its own sandwiched rounds interleave with these (the two sides' order alternating
    by round), and each round's recommend() and prefill of this code are divided by the baseline's too."""
    models = {"new": model} if baseline is None else {"new": model, "baseline": baseline}

    def prefill(lm) -> tuple[float, float]:
        cpu0, wall0 = clocks()
        with torch.no_grad():
            lm(**batch, use_cache=True, logits_to_keep=1)
        cpu1, wall1 = clocks()
        return cpu1 - cpu0, wall1 - wall0

    def recommend(lm) -> tuple[float, float]:
        cpu0, wall0 = clocks()
        lm.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams, batch_size=len(histories))
        cpu1, wall1 = clocks()
        return cpu1 - cpu0, wall1 - wall0

    prefills = {side: [prefill(lm)] for side, lm in models.items()}
    recommends: dict[str, list[tuple[float, float]]] = {side: [] for side in models}
    for round_ in range(rounds):
        for side in sorted(models, reverse=bool(round_ % 2)):
            recommends[side].append(recommend(models[side]))
            prefills[side].append(prefill(models[side]))
    parts = {side: [] for side in models}
    for round_ in range(rounds):
        for side in sorted(models, reverse=bool(round_ % 2)):
            parts[side].append(split_recommend(models[side], tok, histories, beams))

    def figures(side: str) -> dict[str, Any]:
        ratio = {clock: [r[k] / ((a[k] + b[k]) / 2) for r, a, b in zip(recommends[side], prefills[side],
                                                                          prefills[side][1:])]
                 for k, clock in enumerate(("cpu", "wall"))}
        share = {key: spread([p[key] / p["prefill"] for p in parts[side]])
                 for key in ("encode", "decode_forwards", "search")}
        return {"prefill_cpu_s": spread([c for c, _ in prefills[side]]),
                "recommend_cpu_s": spread([c for c, _ in recommends[side]]),
                "recommend_over_prefill_cpu": median_interval(ratio["cpu"]),
                "recommend_over_prefill_wall": median_interval(ratio["wall"]), "parts_over_prefill_cpu": share}

    out = {"rounds": rounds, **figures("new")}
    if baseline is not None:
        def over(kind: list[tuple[float, float]], base: list[tuple[float, float]]) -> dict[str, float]:
            return median_interval([a[0] / b[0] for a, b in zip(kind, base)])

        out["baseline"] = figures("baseline")
        out["new_over_baseline_cpu"] = {
            "recommend": over(recommends["new"], recommends["baseline"]),
            "standalone_prefill": over(prefills["new"], prefills["baseline"]),
            **{f"recommend_{key}": median_interval([a[key] / b[key] for a, b in zip(parts["new"], parts["baseline"])])
               for key in ("encode", "prefill", "decode_forwards", "search")}}
        lists = [lm.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams, batch_size=len(histories))
                 for lm in (model, baseline)]
        out["identical_lists"] = [[i for i, _ in r] for r in lists[0]] == [[i for i, _ in r] for r in lists[1]]
        out["max_score_difference"] = max(abs(a[1] - b[1]) for x, y in zip(*lists) for a, b in zip(x, y))
    return out


def baseline_model(tok, model, preset: str, commit: str) -> tuple[Any, torch.nn.Module]:
    """`commit`'s model code (`code_at.model_code_at`) and the same weights in it, for an A/B in this process."""
    from code_at import model_code_at  # a sibling script; imported here so the other sections need no git

    code = model_code_at(commit)
    old = code.GamerForCausalLM(code.GamerConfig.from_preset(preset, tokenizer=tok)).eval()
    old.load_state_dict(model.state_dict())  # strict: the same parameters under the same names
    return code, old


def attention_section(tok, model, histories, batch, beams: int, rounds: int) -> dict[str, Any]:
    """recommend() / prefill with the grouped masked attention and with Transformers' sdpa path, interleaved."""
    grouped = modeling_gamer.sdpa_grouped_attention_forward
    paths = {"grouped": grouped, "transformers_sdpa": sdpa_attention_forward}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    lists = {}
    try:
        for round_ in range(rounds):
            for name in sorted(paths, reverse=bool(round_ % 2)):
                modeling_gamer.sdpa_grouped_attention_forward = paths[name]
                runs[name].append(prefill_section(tok, model, histories, batch, beams, 1))
                lists[name] = model.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams,
                                              batch_size=len(histories))
    finally:
        modeling_gamer.sdpa_grouped_attention_forward = grouped
    with forward_clock(model) as spans:  # the fixed cost of a decode forward: one prompt, one beam
        for _ in range(rounds):
            model.recommend(tok, histories[:1], behavior="buy", top_k=1, num_beams=1)
    fixed = [b - a for n, (a, b) in enumerate(spans) if n % tok.num_levels]  # each call: a prefill, K-1 decodes
    out: dict[str, Any] = {"rounds": rounds, "identical_lists": lists["grouped"] == lists["transformers_sdpa"],
                           "decode_forward_1x1_cpu_s": spread(fixed)}
    for name, parts in runs.items():
        out[name] = {key: spread([p[key]["median"] for p in parts]) for key in
                     ("prefill_cpu_s", "recommend_cpu_s", "recommend_over_prefill_cpu")}
        out[name]["decode_forwards_over_prefill"] = spread(
            [p["parts_over_prefill_cpu"]["decode_forwards"]["median"] for p in parts])
    return out


def decode_forward_cost(model, tok, history, rounds: int) -> dict[str, Any]:
    """CPU ms and Python calls of one decode forward of 1 prompt and 1 beam: the per-forward fixed cost.

    Timed on the forwards after each prefill (hooks), then one call counted under cProfile."""
    with forward_clock(model) as spans:
        for _ in range(rounds):
            model.recommend(tok, [history], behavior="buy", top_k=1, num_beams=1)
    fixed = [1e3 * (b - a) for n, (a, b) in enumerate(spans) if n % tok.num_levels]
    profile, forwards = cProfile.Profile(), []

    def start(*_: Any) -> None:  # every forward after the prefill
        forwards.append(None)
        if len(forwards) > 1:
            profile.enable()

    pre = model.register_forward_pre_hook(start)
    post = model.register_forward_hook(lambda *_: profile.disable())
    try:
        model.recommend(tok, [history], behavior="buy", top_k=1, num_beams=1)
    finally:
        pre.remove()
        post.remove()
    return {"cpu_ms": spread(fixed), "python_calls": round(pstats.Stats(profile).total_calls / (tok.num_levels - 1))}


def hotpath_section(tok, model, preset: str, histories, batch, beams: int, rounds: int, commit: str) -> dict[str, Any]:
    """recommend() and the prefill forward of today's code and of `commit`'s, interleaved (CPU seconds)."""
    _, old = baseline_model(tok, model, preset, commit)
    models = {"new": model, "old": old}
    calls = {}
    for side, lm in models.items():
        calls[f"{side}_prefill"] = lambda lm=lm: lm(**batch, use_cache=True, logits_to_keep=1)
        calls[f"{side}_recommend"] = lambda lm=lm: lm.recommend(tok, histories, behavior="buy", top_k=beams,
                                                                num_beams=beams, batch_size=len(histories))
    lists = {side: calls[f"{side}_recommend"]() for side in models}  # warm-up, and the lists compared
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    with torch.no_grad():
        for round_ in range(rounds):
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                start = time.process_time()
                calls[name]()
                seconds[name].append(time.process_time() - start)
        parts: dict[str, list[dict[str, float]]] = {side: [] for side in models}
        for round_ in range(rounds):  # recommend() split into its parts, the two sides alternating
            for side in sorted(models, reverse=bool(round_ % 2)):
                parts[side].append(split_recommend(models[side], tok, histories, beams))

    def ratio(top: str, bottom: str) -> dict[str, float]:
        return spread([a / b for a, b in zip(seconds[top], seconds[bottom])])

    scores = [abs(a[1] - b[1]) for new_row, old_row in zip(lists["new"], lists["old"]) for a, b in zip(new_row, old_row)]
    return {"baseline_commit": commit, "rounds": rounds, **{f"{name}_cpu_s": spread(v) for name, v in seconds.items()},
            "new_recommend_over_new_prefill": ratio("new_recommend", "new_prefill"),
            "new_recommend_over_old_prefill": ratio("new_recommend", "old_prefill"),
            "old_recommend_over_old_prefill": ratio("old_recommend", "old_prefill"),
            "new_recommend_over_old_recommend": ratio("new_recommend", "old_recommend"),
            "new_prefill_over_old_prefill": ratio("new_prefill", "old_prefill"),
            "identical_lists": [[i for i, _ in row] for row in lists["new"]] == [[i for i, _ in row] for row in lists["old"]],
            "max_score_difference": max(scores),
            "new_over_old_by_part": {key: spread([a[key] / b[key] for a, b in zip(parts["new"], parts["old"])])
                                     for key in ("decode_forwards", "search", "prefill", "encode")},
            "parts_cpu_s": {side: {key: spread([p[key] for p in runs]) for key in ("decode_forwards", "search")}
                            for side, runs in parts.items()},
            "decode_forward_1x1": {side: decode_forward_cost(lm, tok, histories[0], rounds) for side, lm in models.items()}}


class PartClock:
    """CPU seconds per named part of a recommend() call: module forwards (inclusive, by hooks) and wrapped callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.phase = "prefill"  # module parts are charged to the phase of the forward they run in
        self._undo: list[Callable[[], None]] = []

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def modules(self, name: str, modules: list[torch.nn.Module]) -> None:
        for module in modules:
            starts: list[float] = []
            pre = module.register_forward_pre_hook(lambda *_, s=starts: s.append(time.process_time()))
            post = module.register_forward_hook(
                lambda *_, s=starts: self.add(f"{self.phase}:{name}", time.process_time() - s.pop()))
            self._undo += [pre.remove, post.remove]

    def wrap(self, owner: Any, attribute: str, name: str, phase: str | None = None) -> None:
        """Time `owner.attribute` (a function of a module or a method of a class) as `name` ("{phase}" filled in)."""
        original = getattr(owner, attribute)

        def clocked(*args, **kwargs):
            previous = self.phase
            self.phase = phase or previous
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(name.format(phase=self.phase), time.process_time() - start)
                self.phase = previous

        setattr(owner, attribute, clocked)
        self._undo.append(lambda: setattr(owner, attribute, original))

    def close(self) -> None:
        for undo in reversed(self._undo):
            undo()


def profile_recommend(model, tok, histories, beams: int, rounds: int) -> dict[str, Any]:
    """CPU ms of each part of recommend() (median over rounds), per call, per decode step and per decode row."""
    from gamer_hf.modeling import cache_gamer, generation_gamer

    trie = ItemTrie.for_tokenizer(tok).to(model.device)
    layers = list(model.model.layers)
    runs: list[dict[str, float]] = []
    for _ in range(rounds):
        clock = PartClock()
        clock.modules("self_attention", [layer.self_attn for layer in layers])
        clock.modules("cross_level_attention", [layer.cross_attn for layer in layers if layer.cross_attn is not None])
        clock.modules("experts", [layer.mlp for layer in layers])
        clock.modules("norms", [model.model.norm] + [norm for layer in layers for norm in
                                (layer.input_layernorm, layer.post_attention_layernorm,
                                 getattr(layer, "cross_attn_layernorm", None)) if norm is not None])
        clock.modules("head", [model.lm_head])
        clock.wrap(modeling_gamer, "_sdpa_call", "{phase}:sdpa")
        clock.wrap(generation_gamer, "_prefill", "prefill_call", phase="prefill")
        clock.wrap(generation_gamer, "_decode_step", "decode_call", phase="decode")
        clock.wrap(trie, "children", "trie")
        clock.wrap(trie, "step", "trie")
        clock.wrap(cache_gamer.GamerBeamCache, "reorder_cache", "cache_reorder")
        try:
            with forward_clock(model) as spans:
                start = time.process_time()
                model.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams,
                                batch_size=len(histories))
                total = time.process_time() - start
        finally:
            clock.close()
        part = dict(clock.seconds)
        part["total"], part["encode"] = total, spans[0][0] - start
        part["prefill_forward"] = spans[0][1] - spans[0][0]
        part["decode_forwards"] = sum(b - a for a, b in spans[1:])
        runs.append(part)
    steps = tok.num_levels - 1
    rows = len(histories) * beams
    names = sorted({name for run in runs for name in run})
    median = {name: statistics.median(run.get(name, 0.0) for run in runs) for name in names}
    forward_parts = ["self_attention", "cross_level_attention", "experts", "norms", "head"]
    decode = {name: median.get(f"decode:{name}", 0.0) for name in forward_parts}
    decode["rest_of_forward"] = median["decode_forwards"] - sum(decode.values())
    decode["mask_and_log_softmax"] = median["decode_call"] - median["decode_forwards"]
    after = median["total"] - median["encode"] - median["prefill_call"] - median["decode_call"]
    search = {"trie": median.get("trie", 0.0), "cache_reorder": median.get("cache_reorder", 0.0)}
    search["top_k_and_rest"] = after - sum(search.values())
    tokens = int(tok.encode_histories(histories, behavior="buy", return_tensors="pt")["attention_mask"].sum())
    ms = lambda seconds: round(1e3 * seconds, 2)  # noqa: E731
    return {"histories": len(histories), "rounds": rounds, "decode_steps": steps, "rows_per_step": rows,
            "prompt_tokens": tokens, "total_ms": ms(median["total"]), "encode_ms": ms(median["encode"]),
            "prefill_ms": ms(median["prefill_forward"]),
            "prefill_us_per_token": round(1e6 * median["prefill_forward"] / tokens, 2),
            "prefill_log_softmax_ms": ms(median["prefill_call"] - median["prefill_forward"]),
            "prefill_us_per_token_by_part": {name: round(1e6 * median.get(f"prefill:{name}", 0.0) / tokens, 2)
                                             for name in [*forward_parts, "sdpa"]},
            "decode_ms": {name: ms(value) for name, value in decode.items()},
            "decode_sdpa_ms": ms(median.get("decode:sdpa", 0.0)),  # inside the two attention parts
            "decode_ms_per_step": ms(median["decode_call"] / steps),
            "decode_us_per_row": round(1e6 * median["decode_call"] / (steps * rows), 2),
            "decode_us_per_row_by_part": {name: round(1e6 * value / (steps * rows), 2)
                                          for name, value in decode.items()},
            "search_ms": {name: ms(value) for name, value in search.items()}}


def profile_section(tok, model, histories, beams: int, rounds: int) -> dict[str, Any]:
    return {"batch": profile_recommend(model, tok, histories, beams, rounds),
            "one": profile_recommend(model, tok, histories[:1], beams, rounds)}


def two_part_attention(query, key, value, prompt_mask, slots, scale: float) -> torch.Tensor:
    """Exact masked attention of a beam step in two parts: queries [batch, heads, width, dim] over the prompt keys
    (the first `prompt_mask.shape[-1]`, with its additive [batch, 1, 1, prompt] mask) in one call per prompt,
    and over each beam's own slots (`slots`: [batch, width, s] key positions) as a batch of `batch * width`
    tiny calls; the two outputs combined by their log-sum-exps. Output [batch, heads, width, dim]."""
    attend = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu  # the CPU kernel that returns the lse
    batch, heads, width, dim = query.shape
    prompt, kv_heads, count = prompt_mask.shape[-1], key.shape[1], slots.shape[-1]
    prompt_out, prompt_lse = attend(query, key[:, :, :prompt], value[:, :, :prompt], attn_mask=prompt_mask, scale=scale)
    prompts = torch.arange(batch, device=query.device)[:, None, None]

    def own(states: torch.Tensor) -> torch.Tensor:  # [batch * width, kv_heads, s, dim]: each beam's slots only
        return states[prompts, :, slots].view(batch * width, count, kv_heads, dim).transpose(1, 2)

    beam_query = query.transpose(1, 2).reshape(batch * width, heads, 1, dim)
    slot_out, slot_lse = attend(beam_query, own(key), own(value), scale=scale)
    slot_out, slot_lse = slot_out.view(batch, width, heads, dim).transpose(1, 2), slot_lse.view(batch, width, heads).transpose(1, 2)
    lse = torch.logaddexp(prompt_lse, slot_lse)
    return prompt_out * (prompt_lse - lse).exp()[..., None] + slot_out * (slot_lse - lse).exp()[..., None]


def two_part_section(tok, model, histories, beams: int, rounds: int) -> dict[str, Any]:
    """The decode steps' self-attention calls of one recommend() call (captured), run as they are and in two
    parts, interleaved; CPU ms per step (all self-attention layers) and the largest output difference."""
    from gamer_hf.modeling import generation_gamer

    prompt = int(tok.encode_histories(histories, behavior="buy", return_tensors="pt")["input_ids"].shape[1])
    captured: list[tuple[Any, ...]] = []
    original_call, original_step, step = modeling_gamer._sdpa_call, generation_gamer._decode_step, [-1]

    def capture(module, query, key, value, attention_mask, **kwargs):
        if type(module) is modeling_gamer.GamerAttention and step[0] >= 0:
            captured.append((step[0], module, query, key, value, attention_mask, kwargs))
        return original_call(module, query, key, value, attention_mask, **kwargs)

    def counted_step(*args, **kwargs):
        step[0] += 1
        return original_step(*args, **kwargs)

    modeling_gamer._sdpa_call, generation_gamer._decode_step = capture, counted_step
    try:
        model.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams, batch_size=len(histories))
    finally:
        modeling_gamer._sdpa_call, generation_gamer._decode_step = original_call, original_step
    calls: list[tuple[int, dict[str, Callable]]] = []  # per captured call: its step and the forms timed
    for number, module, query, key, value, mask, kwargs in captured:
        readable = mask[:, 0] == 0  # [batch, width, keys]: the prompt's real tokens and the beam's own slots
        slots = readable[..., prompt:].nonzero()[:, -1].view(*readable.shape[:2], -1) + prompt
        prompt_mask = mask[:, :, :1, :prompt]
        calls.append((number, {
            "one_call": partial(original_call, module, query, key, value, mask, **kwargs),
            "two_part": partial(two_part_attention, query, key, value, prompt_mask, slots, kwargs["scaling"]),
            "prompt_part_alone": partial(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu, query,
                                         key[:, :, :prompt], value[:, :, :prompt], attn_mask=prompt_mask,
                                         scale=kwargs["scaling"]),
        }))
    difference = max(float((forms["one_call"]()[0].transpose(1, 2) - forms["two_part"]()).abs().max())
                     for _, forms in calls)
    steps = sorted({number for number, _ in calls})
    keys = {number: int(forms["one_call"].args[2].shape[2]) for number, forms in calls}
    names = list(calls[0][1])
    seconds = {(name, number): [] for name in names for number in steps}
    with torch.no_grad():
        for round_ in range(rounds):
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                totals = dict.fromkeys(steps, 0.0)
                for number, forms in calls:
                    start = time.process_time()
                    forms[name]()
                    totals[number] += time.process_time() - start
                for number, total in totals.items():
                    seconds[(name, number)].append(total)

    def over_one_call(name: str, number: int) -> dict[str, float]:
        return spread([b / a for a, b in zip(seconds[("one_call", number)], seconds[(name, number)])])

    return {"histories": len(histories), "prompt_tokens_padded": prompt, "rounds": rounds, "max_difference": difference,
            "per_step": [{"step": number, "keys": keys[number],
                          **{f"{name}_ms": spread([1e3 * t for t in seconds[(name, number)]]) for name in names},
                          "two_part_over_one_call": over_one_call("two_part", number),
                          "prompt_part_alone_over_one_call": over_one_call("prompt_part_alone", number)}
                         for number in steps]}


@contextmanager
def compiled_steps(model: torch.nn.Module, forward: Callable) -> Iterator[None]:
    """recommend()'s decode-step forwards through `forward` while open (the prefill runs eager)."""
    from gamer_hf.modeling import generation_gamer

    original = generation_gamer._decode_step

    def step(lm, *args, **kwargs):
        lm.forward = forward
        try:
            return original(lm, *args, **kwargs)
        finally:
            del lm.forward

    generation_gamer._decode_step = step
    try:
        yield
    finally:
        generation_gamer._decode_step = original


def compiled_section(tok, model, histories, beams: int, rounds: int) -> dict[str, Any]:
    """recommend() with compiled decode steps against eager: compile time, interleaved CPU time, same lists."""
    forward = torch.compile(model.forward, dynamic=True)

    def recommend():
        return model.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams, batch_size=len(histories))

    eager_lists = recommend()
    start = time.perf_counter()
    with compiled_steps(model, forward):
        compiled_lists = recommend()
    compile_s = time.perf_counter() - start
    seconds: dict[str, list[float]] = {"eager": [], "compiled": []}
    for round_ in range(rounds):
        for form in sorted(seconds, reverse=bool(round_ % 2)):
            start = time.process_time()
            if form == "compiled":
                with compiled_steps(model, forward):
                    compiled_lists = recommend()
            else:
                recommend()
            seconds[form].append(time.process_time() - start)
    scores = [abs(a[1] - b[1]) for x, y in zip(eager_lists, compiled_lists) for a, b in zip(x, y)]
    return {"rounds": rounds, "first_compiled_call_wall_s": round(compile_s, 1),
            **{f"{form}_cpu_s": spread(values) for form, values in seconds.items()},
            "compiled_over_eager": spread([c / e for e, c in zip(seconds["eager"], seconds["compiled"])]),
            "identical_lists": [[i for i, _ in r] for r in eager_lists] == [[i for i, _ in r] for r in compiled_lists],
            "max_score_difference": max(scores)}


def flex_mask_section(tok, model, preset: str, histories, beams: int, rounds: int, commit: str) -> dict[str, Any]:
    """CPU ms per recommend() call inside `create_block_mask` under flex attention, today's code and `commit`'s."""
    from gamer_hf.modeling import cache_gamer

    old_code, old = baseline_model(tok, model, preset, commit)
    sides = {"new": (model, [cache_gamer, modeling_gamer]),
             "old": (old, [old_code.cache_gamer, old_code.modeling_gamer])}
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    builds: dict[str, int] = {}
    with torch.compiler.set_stance("force_eager"):
        for lm, _ in sides.values():
            lm.set_attn_implementation("flex_attention")
        try:
            for round_ in range(rounds):
                for side in sorted(sides, reverse=bool(round_ % 2)):
                    lm, modules = sides[side]
                    with ExitStack() as stack:
                        timers = [stack.enter_context(method_clock(module, ("create_block_mask",)))
                                   for module in modules if hasattr(module, "create_block_mask")]
                        lm.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams,
                                     batch_size=len(histories))
                    seconds[side].append(sum(clock[0] for clock in timers))
                    builds[side] = sum(clock[1] for clock in timers)
        finally:
            for lm, _ in sides.values():
                lm.set_attn_implementation("sdpa")
    return {"baseline_commit": commit, "rounds": rounds, "block_masks_per_call": builds,
            **{f"{side}_block_mask_ms": spread([1e3 * t for t in values]) for side, values in seconds.items()}}


def direct_search() -> Callable[[], None]:
    """Every `ItemIndex.rows` call searched by the padded vectorized search, as before this session's row cache and
    Python-int keys (both off) until the returned function is called."""
    from gamer_hf.modeling import item_index_gamer

    saved = item_index_gamer._CACHED_CALL, item_index_gamer._FEW_IDS
    item_index_gamer._CACHED_CALL = item_index_gamer._FEW_IDS = 0

    def restore() -> None:
        item_index_gamer._CACHED_CALL, item_index_gamer._FEW_IDS = saved

    return restore


def lookup_section(tok, model, histories, rounds: int) -> dict[str, Any]:
    """CPU us per call of a request's item lookups: through the id -> row cache warm (ids seen before) and cold (the
    cache emptied before each call), and by the direct search of before (`direct_search`)."""
    from gamer_hf.modeling import item_index_gamer
    from gamer_hf.serve import RecommendRequest, Recommender

    index, recommender = tok.item_index, Recommender(model, tok, name="bench", max_history=len(histories[0]))
    requests = {n: [RecommendRequest(history=h[:n]) for h in histories] for n in (10, 50)}  # parsed bodies
    calls = {
        **{f"prepare, {n} ids": partial(lambda n: [recommender.prepare(r) for r in requests[n]], n) for n in requests},
        "encode one request": lambda: [tok.encode_histories([h], behavior="buy") for h in histories],
        f"encode {len(histories)} histories": lambda: tok.encode_histories(histories, behavior="buy"),
    }
    per_call = {name: len(histories) if name.startswith(("prepare", "encode one")) else 1 for name in calls}

    def run(name: str, way: str) -> float:
        restore = direct_search() if way == "direct" else lambda: None
        if way == "warm":  # every id of the calls seen before
            calls[name]()
        if way == "cold":  # each call of the batch starts from an empty cache
            clear, original = index._cached_rows.clear, index.rows
            index.rows = lambda items: (clear(), original(items))[1]
        start = time.process_time()
        try:
            calls[name]()
        finally:
            restore()
            if way == "cold":
                del index.rows
        return 1e6 * (time.process_time() - start) / per_call[name]

    ways = ("direct", "cold", "warm")
    us = {(name, way): [] for name in calls for way in ways}
    for round_ in range(rounds):
        for name in calls:
            for way in ways[round_ % 3:] + ways[: round_ % 3]:
                us[(name, way)].append(run(name, way))
    return {"rounds": rounds, "items": len(index), "cache_ids": item_index_gamer._CACHED_IDS, **{
        name: {**{f"{way}_us": median_interval(us[(name, way)]) for way in ways},
               **{f"{way}_over_direct": median_interval([a / b for a, b in zip(us[(name, way)], us[(name, "direct")])])
                  for way in ("cold", "warm")}} for name in calls}}


def lookup_stream(tok, model, bodies: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """CPU us per request of the event loop's check (`Recommender.prepare`) and of the decode thread's encoding of it,
    requests in arrival order from an emptied cache (a server's start) against the direct search of before
    (`direct_search`), interleaved over `rounds`; with the share of the check's ids the cache already held."""
    from gamer_hf.serve import RecommendRequest, Recommender

    index, recommender = tok.item_index, Recommender(model, tok, name="bench")
    requests = [RecommendRequest(**body) for body in bodies]
    us: dict[str, list[float]] = {f"{way} {part}": [] for way in ("direct", "cached") for part in ("prepare", "encode")}
    held: list[float] = []
    for round_ in range(rounds):
        for way in ("direct", "cached")[::-1 if round_ % 2 else 1]:
            restore = direct_search() if way == "direct" else lambda: None
            index._cached_rows.clear()
            prepare_s = encode_s = 0.0
            hits = total = 0
            try:
                for request in requests:
                    if way == "cached":  # not timed
                        hits += sum(str(item) in index._cached_rows for _, item in request.history)
                        total += len(request.history)
                    start = time.process_time()
                    prepared = recommender.prepare(request)
                    middle = time.process_time()
                    tok.encode_histories([prepared.history], behavior=prepared.behavior,
                                         max_history=recommender.max_history)
                    encode_s += time.process_time() - middle
                    prepare_s += middle - start
            finally:
                restore()
            us[f"{way} prepare"].append(1e6 * prepare_s / len(requests))
            us[f"{way} encode"].append(1e6 * encode_s / len(requests))
            if way == "cached":
                held.append(hits / total)
    return {"requests": len(requests), "distinct_histories": len({str(body["history"]) for body in bodies}),
            "rounds": rounds, **{f"{name}_us": median_interval(values) for name, values in us.items()},
            **{f"cached_over_direct_{part}": median_interval([a / b for a, b in zip(us[f"cached {part}"],
                                                                                   us[f"direct {part}"])])
               for part in ("prepare", "encode")}, "ids_already_cached": spread(held)}


def constraint_section(tok, model, histories, beams: int, rounds: int) -> dict[str, Any]:
    """Share of the time after the prefill spent in the trie (`children` and `step` of the tokenizer's trie)."""
    trie = ItemTrie.for_tokenizer(tok).to(model.device)  # the instance recommend() decodes with
    shares, trie_s, after_s = [], [], []
    for _ in range(rounds):
        with method_clock(trie, ("children", "step")) as in_trie:
            parts = split_recommend(model, tok, histories, beams)
        shares.append(in_trie[0] / parts["after_prefill"])
        trie_s.append(in_trie[0])
        after_s.append(parts["after_prefill"])
    return {"items": len(tok.item_index), "trie_cpu_s": spread(trie_s), "after_prefill_cpu_s": spread(after_s),
            "trie_share_of_decode": spread(shares)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--preset", default="small")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--constraint-items", type=int, default=1_000_000)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--codebook", type=int, default=256)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for the stock comparison")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the prefill and constraint sections")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--baseline-commit", default="c74736b",
                        help="model code the hotpath and flex_mask sections (and the prefill section with --ab) compare to")
    parser.add_argument("--lookup-work", type=Path, default=None,
                        help="lookup section: also a served request stream, from serve_load.py's --work (its checkpoint "
                             "and real test-split requests)")
    parser.add_argument("--lookup-requests", type=int, default=512, help="requests of that stream")
    parser.add_argument("--ab", action="store_true",
                        help="prefill section: interleave --baseline-commit's model code's sandwiched rounds with these")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()

    tok, model = build(args.items, args.levels, args.codebook, args.preset, seed=0)
    model.to(args.device)
    histories = histories_for(tok, args.batch, args.history, seed=1)
    batch = tok.encode_histories(histories, behavior="buy", return_tensors="pt").to(args.device)
    model.recommend(tok, histories, behavior="buy", top_k=args.beams, num_beams=args.beams)  # warm-up, builds the trie
    setup = {"preset": args.preset, "items": args.items, "history": args.history, "batch": args.batch,
             "beams": args.beams, "device": args.device, "threads": torch.get_num_threads()}
    if "stock" in args.sections:
        print(json.dumps({"section": "stock", **setup, **stock_section(tok, model, histories, batch, args.beams,
                                                                       args.repeats)}), flush=True)
    if "prefill" in args.sections:
        baseline = baseline_model(tok, model, args.preset, args.baseline_commit)[1] if args.ab else None
        print(json.dumps({"section": "prefill", **setup, **({"baseline_commit": args.baseline_commit} if args.ab else {}),
                          **prefill_section(tok, model, histories, batch, args.beams, args.rounds, baseline)}),
              flush=True)
    if "attention" in args.sections:
        print(json.dumps({"section": "attention", **setup, **attention_section(tok, model, histories, batch, args.beams,
                                                                               args.rounds)}), flush=True)
    if "hotpath" in args.sections:
        print(json.dumps({"section": "hotpath", **setup, **hotpath_section(tok, model, args.preset, histories, batch, args.beams,
                                                                           args.rounds, args.baseline_commit)}),
              flush=True)
    if "profile" in args.sections:
        print(json.dumps({"section": "profile", **setup, **profile_section(tok, model, histories, args.beams,
                                                                           args.rounds)}), flush=True)
    if "two_part" in args.sections:
        print(json.dumps({"section": "two_part", **setup, **two_part_section(tok, model, histories, args.beams,
                                                                             args.rounds)}), flush=True)
    if "compiled" in args.sections:
        print(json.dumps({"section": "compiled", **setup, **compiled_section(tok, model, histories, args.beams,
                                                                             args.rounds)}), flush=True)
    if "flex_mask" in args.sections:
        print(json.dumps({"section": "flex_mask", **setup,
                          **flex_mask_section(tok, model, args.preset, histories, args.beams, args.rounds,
                                              args.baseline_commit)}), flush=True)
    if "lookup" in args.sections:
        print(json.dumps({"section": "lookup", **setup, **lookup_section(tok, model, histories, args.rounds)}),
              flush=True)
        if args.lookup_work is not None:  # the load test's checkpoint and real test-split requests
            from serve_load import request_bodies  # a sibling script; imported here so the other sections need none

            from gamer_hf.loading import load_gamer

            served = next(args.lookup_work.glob("model_*"))
            bodies, _ = request_bodies(args.lookup_work, served, args.lookup_requests, seed=0)
            served_model, served_tok = load_gamer(served, device="cpu")
            print(json.dumps({"section": "lookup_stream", "checkpoint": str(served), "items": len(served_tok.item_index),
                              **lookup_stream(served_tok, served_model, bodies, args.rounds)}), flush=True)
    if "constraint" in args.sections:
        print(json.dumps({"section": "constraint", **setup,
                          **constraint_section(tok, model, histories, args.beams, args.rounds)}), flush=True)
        big, _ = build(args.constraint_items, args.levels, args.codebook, args.preset, seed=0)
        big_histories = histories_for(big, args.batch, args.history, seed=1)
        model.recommend(big, big_histories[:1], behavior="buy", top_k=args.beams, num_beams=args.beams)  # trie
        print(json.dumps({"section": "constraint", **setup,
                          **constraint_section(big, model, big_histories, args.beams, args.rounds)}), flush=True)


if __name__ == "__main__":
    main()
