"""Speed and scaling of GAMER on one device, reported as ratios wherever a baseline runs beside it.

Measurements (random token content: cost does not depend on it):
1. training throughput per preset: a fixed number of forward + backward + AdamW steps on one batch,
   sequences/s, tokens/s and peak memory (CPU: peak resident memory of a fresh process per preset,
   so presets do not share a high-water mark; GPU: peak allocated memory);
2. recommend() (prefill once, shared cache, vectorized trie) vs stock `generate(num_beams,
   prefix_allowed_tokens_fn)` on the same model and histories, with an identical-output check;
3. scaling with history length (20, 50, 100, 200 interactions): recommend() time per batch and
   training tokens/s, relative to 20;
4. scaling with catalogue size (10k, 100k, 1M items), the constraint alone: ItemTrie build time and
   one decode step's constraint for a batch of beams, `GamerConstrainedLogitsProcessor` (stateless,
   for generate()) and `ItemTrie.allowed` (recommend()'s path) vs the dict prefix function through
   Transformers' `PrefixConstrainedLogitsProcessor`;
5. packed vs padded training on a realistic length mix (histories of varying length): the same
   sequences left-padded to the longest, or packed first-fit into rows of that length with
   `position_ids` restarting per sequence; sequences/s of both and the loss difference;
6. recommend() against one prefill forward of the same prompts (its floor);
7. the expert FFN's dispatch: the grouped matmul the model uses (fixed shapes, compiles fullgraph)
   against the per-expert loop it replaced (`bincount` + `split`, reproduced here as the baseline),
   forward + backward of every expert FFN of a training batch, interleaved rounds, median ratio and range;
8. training against the parity commit (`--parity-commit`, a22ee19: the model code of the day gamer_hf was
   measured at 0.97x the authors' sequences/s), on history lengths drawn from a real log: the old model code
   (extracted with `git show` into a temporary package) on padded batches as its collator made them, today's
   on the same rows padded and packed by GAMER's own collator; same weights, interleaved rounds;
9. token cost against history length (`--token-cost-histories`, 20 and 200): training tokens/s of the shortest
   over each longer one, per interleaved round, for the model as it trains (sdpa; with attention dropout on CPU,
   queries in blocks that read only the keys their mask allows), the same with one attention call over the
   whole map (the path before the blocks), and without attention dropout (where torch's fused CPU kernel runs);
10. compiled training (`--sections compile`, not in the default set): `torch.compile(model)` (Inductor) training steps against the eager
   model on the same mixed-length batch, padded and packed by GAMER's collator; compile time, graph breaks, and
   eager / compiled per interleaved round (the compiled graph equals eager: `test_compiled_training_step_equals_eager`).

    python recipes/bench/speed.py                       # everything, CPU sizes, JSON to recipes/bench/results/
    python recipes/bench/speed.py --quick               # seconds, for a smoke test
    python recipes/bench/speed.py --sections packing prefill   # only some measurements
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pv
import torch
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

from gamer_hf import (
    GamerConstrainedLogitsProcessor,
    GamerForCausalLM,
    GamerTokenizerFast,
    ItemTrie,
    make_prefix_allowed_tokens_fn,
)

from gamer_hf.data.collator import GamerCollator
from gamer_hf.modeling import modeling_gamer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_throughput import sync  # noqa: E402  (sibling benchmark scripts)
from code_at import model_code_at  # noqa: E402
from recommend_speed import build, catalogue, histories_for, timed  # noqa: E402

BEHAVIORS = {"click": 0, "cart": 1, "buy": 2}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "speed.json"
SECTIONS = ("train", "recommend", "history", "catalogue", "packing", "prefill", "experts", "parity", "tokencost",
            "compile")


def _training_batch(tok: GamerTokenizerFast, batch: int, history: int, device: str) -> dict[str, torch.Tensor]:
    encoded = tok.encode_histories(histories_for(tok, batch, history + 1, seed=1), return_tensors="pt").to(device)
    labels = encoded["input_ids"].masked_fill(~tok.code_token_mask(encoded["input_ids"]), -100)
    return {**encoded, "labels": labels}


def train_step(model: GamerForCausalLM, optimizer: torch.optim.Optimizer, inputs: dict[str, torch.Tensor],
               device: str) -> None:
    """One forward + backward + AdamW step, finished on the device."""
    loss = model(**inputs).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    sync(device)


def _current_rss_mib() -> float:
    """Resident memory now (Linux /proc), falling back to the high-water mark elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_throughput(preset: str, items: int, batch: int, history: int, steps: int, warmup: int,
                     device: str) -> dict[str, Any]:
    """Fixed forward + backward + AdamW steps of one preset on one batch; runs in its own process on CPU."""
    tok, model = build(items, 4, 256, preset, seed=0)
    model.to(device).train()
    inputs = _training_batch(tok, batch, history, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    before = _current_rss_mib()
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            start = time.perf_counter()
        train_step(model, optimizer, inputs, device)
    seconds = time.perf_counter() - start
    tokens = int(inputs["attention_mask"].sum()) * steps
    if device.startswith("cuda"):
        peak = {"peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
    else:
        high = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        peak = {"peak_rss_mib": round(high, 1), "training_rss_growth_mib": round(high - before, 1)}
    return {
        "preset": preset, "parameters": sum(p.numel() for p in model.parameters()), "batch": batch,
        "history": history, "tokens_per_sequence": inputs["input_ids"].shape[1], "steps": steps,
        "seconds": round(seconds, 3), "sequences_per_s": round(batch * steps / seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1), **peak,
    }


def in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run `fn(*args)` in a new spawned interpreter so its peak memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def stock_generate(model: GamerForCausalLM, tok: GamerTokenizerFast, histories: list, beams: int) -> list:
    """Transformers beam search with the dict prefix function: the baseline recommend() replaces."""
    batch = tok.encode_histories(histories, behavior="buy", return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(
            **batch, max_new_tokens=tok.num_levels, num_beams=beams, num_return_sequences=beams, do_sample=False,
            length_penalty=0.0, prefix_allowed_tokens_fn=make_prefix_allowed_tokens_fn(tok),
        )
    return tok.decode_items(out[:, batch["input_ids"].shape[1]:].cpu())


def recommend_vs_generate(preset: str, items: int, history: int, batch: int, beams: int, repeats: int,
                          device: str) -> dict[str, Any]:
    tok, model = build(items, 4, 256, preset, seed=0)
    model.to(device)
    histories = histories_for(tok, batch, history, seed=1)

    def fast() -> list:
        return model.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams, batch_size=batch)

    fast()  # warm-up: builds the trie once, as a served model would
    stock_s, stock_items = timed(lambda: stock_generate(model, tok, histories, beams), repeats)
    fast_s, fast_recs = timed(fast, repeats)
    return {
        "preset": preset, "items": items, "history": history, "batch": batch, "beams": beams,
        "stock_generate_s": round(stock_s, 3), "recommend_s": round(fast_s, 3),
        "stock_histories_per_s": round(batch / stock_s, 2), "recommend_histories_per_s": round(batch / fast_s, 2),
        "speedup": round(stock_s / fast_s, 2),
        "identical_top": [item for row in fast_recs for item, _ in row] == stock_items,
    }


def history_scaling(preset: str, lengths: list[int], items: int, rec_batch: int, train_batch: int, beams: int,
                    repeats: int, device: str) -> list[dict[str, Any]]:
    """recommend() seconds per batch and training tokens/s per history length; ratios against the first."""
    tok, model = build(items, 4, 256, preset, seed=0)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    rows = []
    for length in lengths:
        histories = histories_for(tok, rec_batch, length, seed=length)
        model.recommend(tok, histories[:2], top_k=10, num_beams=beams)
        rec_s, _ = timed(lambda: model.recommend(tok, histories, top_k=10, num_beams=beams, batch_size=rec_batch),
                         repeats)
        inputs = _training_batch(tok, train_batch, length, device)
        model.train()
        train_step(model, optimizer, inputs, device)  # warm-up
        train_s, _ = timed(lambda: train_step(model, optimizer, inputs, device), repeats)
        model.eval()
        rows.append({"history": length, "prompt_tokens": length * (tok.num_levels + 1) + 1,
                     "recommend_s": round(rec_s, 4), "recommend_histories_per_s": round(rec_batch / rec_s, 2),
                     "train_step_s": round(train_s, 4),
                     "train_tokens_per_s": round(int(inputs["attention_mask"].sum()) / train_s, 1)})
    for row in rows:
        row["recommend_time_vs_first"] = round(row["recommend_s"] / rows[0]["recommend_s"], 2)
        row["train_step_time_vs_first"] = round(row["train_step_s"] / rows[0]["train_step_s"], 2)
    return rows


def _beam_inputs(tok: GamerTokenizerFast, rows: int, depth: int, prompt: int, seed: int) -> torch.Tensor:
    """[rows, prompt + depth] token ids: a random history, the buy token, then `depth` codes of real items."""
    rng = np.random.default_rng(seed)
    codes = tok.item_code_tensor[torch.from_numpy(rng.integers(0, len(tok.item_index), rows))]
    offsets = torch.tensor(tok.code_token_offsets)
    history = torch.from_numpy(rng.integers(offsets[0], offsets[-1], size=(rows, prompt - 1)))
    buy = torch.full((rows, 1), tok.behavior_token_id("buy"))
    return torch.cat([history, buy, (codes + offsets)[:, :depth]], dim=1)


def catalogue_scaling(sizes: list[int], batch: int, beams: int, repeats: int, prompt: int) -> list[dict[str, Any]]:
    """Per catalogue size: build times, and one decode step's constraint (mean over the K depths) per beam batch."""
    out = []
    for size in sizes:
        tok = GamerTokenizerFast.from_items(catalogue(size, 4, 256, seed=size), BEHAVIORS, codebook_size=256)
        codes = tok.item_code_tensor
        trie_build_s, trie = timed(lambda: ItemTrie(codes, tok.codebook_sizes), 1)
        dict_build_s, prefix_fn = timed(lambda: make_prefix_allowed_tokens_fn(tok), 1)
        tok.__dict__.pop("_gamer_item_trie", None)
        processor = GamerConstrainedLogitsProcessor(tok)
        stock = PrefixConstrainedLogitsProcessor(prefix_fn, num_beams=beams)
        rows = batch * beams
        timings = {"processor": 0.0, "trie_allowed": 0.0, "dict_prefix_fn": 0.0}
        for depth in range(tok.num_levels):
            input_ids = _beam_inputs(tok, rows, depth, prompt, seed=depth)
            scores = torch.randn(rows, len(tok))
            nodes = torch.zeros(rows, dtype=torch.long)
            for level in range(depth):  # the trie nodes the beams stand on, as recommend() tracks them
                nodes = trie.step(nodes, level, input_ids[:, prompt + level] - tok.code_token_offsets[level])
            ours, ours_out = timed(lambda: processor(input_ids, scores), repeats)
            theirs, theirs_out = timed(lambda: stock(input_ids, scores), repeats)
            allowed, _ = timed(lambda: trie.allowed(nodes.view(batch, beams), depth), repeats)
            if not torch.equal(torch.isinf(ours_out), torch.isinf(theirs_out)):
                raise AssertionError(f"{size} items, depth {depth}: the two constraints disagree")
            timings["processor"] += ours / tok.num_levels
            timings["dict_prefix_fn"] += theirs / tok.num_levels
            timings["trie_allowed"] += allowed / tok.num_levels
        out.append({
            "items": size, "beam_rows": rows, "trie_build_s": round(trie_build_s, 3),
            "dict_build_s": round(dict_build_s, 3),
            "processor_step_ms": round(1e3 * timings["processor"], 3),
            "trie_allowed_step_ms": round(1e3 * timings["trie_allowed"], 3),
            "dict_prefix_fn_step_ms": round(1e3 * timings["dict_prefix_fn"], 3),
            "processor_speedup": round(timings["dict_prefix_fn"] / timings["processor"], 1),
            "trie_allowed_speedup": round(timings["dict_prefix_fn"] / timings["trie_allowed"], 1),
        })
        print(json.dumps(out[-1]), flush=True)
    return out


def length_mix(count: int, shortest: int, longest: int, seed: int) -> list[int]:
    """History lengths as logs have them: many short, a long tail (log-uniform between the bounds)."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(shortest), np.log(longest), count)).astype(int).tolist()


def pack_rows(sequences: list[list[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First-fit decreasing packing into rows of `width` tokens; input_ids, position_ids, labels.

    The tail of a row is padding that forms its own "sequence" (positions restart), so nothing real reads it.
    """
    rows: list[list[list[int]]] = []
    for ids in sorted(sequences, key=len, reverse=True):
        row = next((r for r in rows if sum(map(len, r)) + len(ids) <= width), None)
        if row is None:
            rows.append(row := [])
        row.append(ids)
    input_ids = torch.full((len(rows), width), pad_id)
    positions = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for r, row in enumerate(rows):
        start = 0
        for ids in row:
            input_ids[r, start : start + len(ids)] = torch.tensor(ids)
            positions[r, start : start + len(ids)] = torch.arange(len(ids))
            labels[r, start + 1 : start + len(ids)] = torch.tensor(ids[1:])  # shifted inside the model
            start += len(ids)
        positions[r, start:] = torch.arange(width - start)
    return input_ids, positions, labels


def packed_vs_padded(preset: str, items: int, batch: int, shortest: int, longest: int, repeats: int,
                     device: str) -> dict[str, Any]:
    """Training steps on one batch of mixed-length histories, padded vs packed, same model and optimizer."""
    tok, model = build(items, 4, 256, preset, seed=0)
    model.to(device)
    lengths = length_mix(batch, shortest, longest, seed=3)
    histories = [h[: n + 1] for h, n in zip(histories_for(tok, batch, longest + 1, seed=3), lengths)]
    sequences = [tok.encode_interactions(h) for h in histories]
    padded = tok.encode_histories(histories, return_tensors="pt").to(device)
    code_mask = tok.code_token_mask(padded["input_ids"])
    padded["labels"] = padded["input_ids"].masked_fill(~code_mask, -100)
    input_ids, position_ids, labels = pack_rows(sequences, padded["input_ids"].shape[1], tok.pad_token_id)
    labels = labels.masked_fill(~tok.code_token_mask(labels.clamp(min=0)) | (labels < 0), -100)
    labels = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)  # pack_rows wrote them pre-shifted
    packed = {"input_ids": input_ids.to(device), "position_ids": position_ids.to(device),
              "shift_labels": labels.to(device)}
    model.eval()
    with torch.no_grad():
        loss_gap = abs(model(**padded, use_cache=False).loss.item() - model(**packed, use_cache=False).loss.item())
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)

    times = {}
    for name, inputs in (("padded", padded), ("packed", packed)):
        train_step(model, optimizer, inputs, device)  # warm-up
        times[name], _ = timed(lambda inputs=inputs: train_step(model, optimizer, inputs, device), repeats)
    real = sum(map(len, sequences))
    return {
        "preset": preset, "batch": batch, "history_lengths": [shortest, longest],
        "mean_history": round(float(np.mean(lengths)), 1), "real_tokens": real,
        "padded_shape": list(padded["input_ids"].shape), "packed_shape": list(input_ids.shape),
        "padding_share_padded": round(1 - real / padded["input_ids"].numel(), 3),
        "padded_step_s": round(times["padded"], 3), "packed_step_s": round(times["packed"], 3),
        "padded_sequences_per_s": round(batch / times["padded"], 1),
        "packed_sequences_per_s": round(batch / times["packed"], 1),
        "packed_speedup": round(times["padded"] / times["packed"], 2), "loss_gap": round(loss_gap, 6),
    }


def recommend_vs_prefill(preset: str, items: int, history: int, batch: int, beams: int, repeats: int,
                         device: str) -> dict[str, Any]:
    """recommend() seconds over the seconds of one forward of its prompts (the prefill it cannot avoid)."""
    tok, model = build(items, 4, 256, preset, seed=0)
    model.to(device).eval()
    histories = histories_for(tok, batch, history, seed=1)
    prompts = tok.encode_histories(histories, behavior="buy", return_tensors="pt").to(device)

    def prefill() -> None:
        with torch.no_grad():
            model(**prompts, use_cache=True, logits_to_keep=1)

    def recommend() -> list:
        return model.recommend(tok, histories, behavior="buy", top_k=beams, num_beams=beams, batch_size=batch)

    recommend()  # warm-up: builds the trie once
    prefill_s, _ = timed(prefill, repeats)
    recommend_s, _ = timed(recommend, repeats)
    return {"preset": preset, "items": items, "history": history, "batch": batch, "beams": beams,
            "prefill_s": round(prefill_s, 3), "recommend_s": round(recommend_s, 3),
            "recommend_over_prefill": round(recommend_s / prefill_s, 2)}


def loop_experts(ffn: torch.nn.Module, hidden_states: torch.Tensor, routes: torch.Tensor) -> torch.Tensor:
    """The expert dispatch the model had before (one matmul per expert group found by `bincount`): the baseline."""
    flat, routes = hidden_states.reshape(-1, hidden_states.shape[-1]), routes.reshape(-1)
    order = torch.argsort(routes, stable=True)
    counts = torch.bincount(routes, minlength=ffn.num_experts).tolist()
    outputs = [ffn._swiglu(group @ ffn.gate_up_proj[e]) @ ffn.down_proj[e]
               for e, group in enumerate(flat[order].split(counts)) if counts[e]]
    grouped = torch.cat(outputs)
    out = torch.empty_like(grouped)
    out[order] = grouped
    return out.view(*hidden_states.shape[:-1], -1)


def expert_dispatch(preset: str, items: int, batch: int, history: int, rounds: int, device: str) -> dict[str, Any]:
    """Forward + backward of every layer's expert FFN on one training batch's shapes, grouped vs loop."""
    tok, model = build(items, 4, 256, preset, seed=0)
    model.to(device).train()
    inputs = _training_batch(tok, batch, history, device)
    roles = model.model._roles(inputs["input_ids"], None, None, None)
    layers = [layer.mlp for layer in model.model.layers]
    hidden = [torch.randn(*inputs["input_ids"].shape, ffn.gate_up_proj.shape[1], device=device, requires_grad=True)
              for ffn in layers]

    def step(dispatch) -> None:
        for ffn, states in zip(layers, hidden):
            dispatch(ffn, states, roles.item_position_ids).sum().backward()
        sync(device)

    grouped = lambda ffn, states, routes: ffn(states, routes)  # noqa: E731
    for dispatch in (grouped, loop_experts):
        step(dispatch)  # warm-up
    ratios, times = [], {"grouped": [], "loop": []}
    for _ in range(rounds):  # interleaved, so both see the same load
        for name, dispatch in (("grouped", grouped), ("loop", loop_experts)):
            start = time.perf_counter()
            step(dispatch)
            times[name].append(time.perf_counter() - start)
        ratios.append(times["loop"][-1] / times["grouped"][-1])
    return {"preset": preset, "batch": batch, "history": history, "tokens": int(inputs["input_ids"].numel()),
            "rounds": rounds, "grouped_s_median": round(float(np.median(times["grouped"])), 4),
            "loop_s_median": round(float(np.median(times["loop"])), 4),
            "loop_over_grouped_median": round(float(np.median(ratios)), 3),
            "loop_over_grouped_range": [round(min(ratios), 3), round(max(ratios), 3)]}


def user_event_counts(events: Path) -> np.ndarray:
    """Interactions per user of a real log (an events.csv.gz), for the users with at least 2 events."""
    users = pv.read_csv(events, convert_options=pv.ConvertOptions(include_columns=["user_id"]))["user_id"]
    counts = pc.value_counts(users).field("counts").to_numpy()
    return counts[counts >= 2]


def real_history_lengths(counts: np.ndarray, count: int, longest: int, seed: int) -> list[int]:
    """`count` history lengths drawn from a log's `user_event_counts`, each capped at `longest`: lengths as logs
    have them."""
    return np.minimum(np.random.default_rng(seed).choice(counts, count), longest).tolist()


def _quantiles(values: list[float]) -> dict[str, float]:
    return {"median": round(float(np.median(values)), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def _interval(quantiles: dict[str, float]) -> str:
    return f"{quantiles['median']}x [{quantiles['min']}, {quantiles['max']}]"


def parity_training(commit: str, preset: str, items: int, batch: int, rounds: int, events: Path, max_history: int,
                    device: str) -> dict[str, Any]:
    """Training steps of the model code at `commit` (padded batches, as its collator made them) against today's
    (the same rows padded, and packed by `GamerCollator(pack=True)`): same weights, same rows, one fresh batch of
    real-log lengths per round, the three steps interleaved within each round (order rotating)."""
    tok, model = build(items, 4, 256, preset, seed=0)
    old_code = model_code_at(commit)
    old = old_code.GamerForCausalLM(old_code.GamerConfig.from_preset(preset, tokenizer=tok))
    old.load_state_dict(model.state_dict())  # strict: the same parameters under the same names
    models = {"old_padded": old.to(device), "padded": model.to(device), "packed": model}
    collators = {"old_padded": GamerCollator(tok, max_history), "padded": GamerCollator(tok, max_history),
                 "packed": GamerCollator(tok, max_history, pack=True)}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=5e-4) for name, m in (("old", old), ("new", model))}
    rng = np.random.default_rng(0)
    behaviors, item_ids = list(tok.behaviors), tok.item_ids
    counts = user_event_counts(events)  # read once; each round draws its own lengths from it

    def batch_of(seed: int) -> tuple[list[int], dict[str, dict[str, torch.Tensor]]]:
        lengths = real_history_lengths(counts, batch, max_history + 1, seed)
        rows = [{"behaviors": [behaviors[i] for i in rng.integers(0, len(behaviors), n)],
                 "items": [item_ids[i] for i in rng.integers(0, len(item_ids), n)]} for n in lengths]
        return lengths, {name: {k: v.to(device) for k, v in collate(rows).items()}
                         for name, collate in collators.items()}

    def step(name: str, inputs: dict[str, torch.Tensor]) -> float:
        start = time.perf_counter()
        train_step(models[name], optimizers["old" if name.startswith("old") else "new"], inputs, device)
        return time.perf_counter() - start

    _, first = batch_of(seed=0)
    with torch.no_grad():  # the three layouts of one batch give one loss (eval mode: no dropout)
        losses = {name: models[name].eval()(**inputs).loss.item() for name, inputs in first.items()}
    for name, inputs in first.items():  # warm-up
        models[name].train()
        step(name, inputs)
    names, per_round = list(models), []
    for r in range(rounds):
        lengths, inputs = batch_of(seed=1 + r)
        order = names[r % 3:] + names[: r % 3]
        seconds = {name: step(name, inputs[name]) for name in order}
        per_round.append({"mean_history": round(float(np.mean(lengths)), 1), "longest": int(max(lengths)),
                          "shapes": {name: list(inputs[name]["input_ids"].shape) for name in names},
                          "real_tokens": int(sum(lengths)) * (tok.num_levels + 1),
                          **{f"{name}_s": round(s, 3) for name, s in seconds.items()}})
        print(json.dumps(per_round[-1]), flush=True)
    ratio = lambda a, b: [row[f"{b}_s"] / row[f"{a}_s"] for row in per_round]  # noqa: E731  (a's speed-up on b)
    packed_over_old = ratio("packed", "old_padded")
    return {
        "commit": commit, "preset": preset, "batch": batch, "dataset": events.parent.name, "max_history": max_history,
        "rounds": rounds, "per_round": per_round,
        "loss": {name: round(v, 6) for name, v in losses.items()},
        "sequences_per_s": {name: _quantiles([batch / row[f"{name}_s"] for row in per_round]) for name in names},
        "packed_over_old": _quantiles(packed_over_old), "padded_over_old": _quantiles(ratio("padded", "old_padded")),
        "packed_over_padded": _quantiles(ratio("packed", "padded")),
        "implied_over_authors": {k: round(0.97 * v, 3) for k, v in _quantiles(packed_over_old).items()},
    }


def token_cost(preset: str, items: int, lengths: list[int], batch: int, rounds: int, device: str) -> dict[str, Any]:
    """Training tokens/s per history length, and the first length's over each other's, per round; three
    variants of one model, all lengths and variants interleaved within a round (same load)."""
    tok, model = build(items, 4, 256, preset, seed=0)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    attention = [m for m in model.modules() if isinstance(m, modeling_gamer.GamerAttention)]
    blocks, dropout = modeling_gamer.QUERY_BLOCK, model.config.attention_dropout
    variants = {"as_trained": (blocks, dropout), "one_call": (sys.maxsize, dropout), "no_attention_dropout": (blocks, 0.0)}
    batches = {n: _training_batch(tok, batch, n, device) for n in lengths}

    def tokens_per_s(variant: str, n: int) -> float:
        modeling_gamer.QUERY_BLOCK = variants[variant][0]
        for module in attention:
            module.attention_dropout = variants[variant][1]
        start = time.perf_counter()
        train_step(model, optimizer, batches[n], device)
        return int(batches[n]["attention_mask"].sum()) / (time.perf_counter() - start)

    try:
        for variant in variants:  # warm-up
            for n in lengths:
                tokens_per_s(variant, n)
        per_round = []
        for r in range(rounds):
            order = list(variants)[r % 3:] + list(variants)[: r % 3]
            per_round.append({f"{v}_{n}": round(tokens_per_s(v, n), 1) for v in order for n in lengths})
            print(json.dumps(per_round[-1]), flush=True)
    finally:
        modeling_gamer.QUERY_BLOCK = blocks
        for module in attention:
            module.attention_dropout = dropout
    first = lengths[0]
    summary = {v: {f"tokens_per_s_{n}": _quantiles([row[f"{v}_{n}"] for row in per_round]) for n in lengths}
               for v in variants}
    for v in variants:
        for n in lengths[1:]:
            summary[v][f"cost_{n}_over_{first}"] = _quantiles([row[f"{v}_{first}"] / row[f"{v}_{n}"] for row in per_round])
    for n in lengths[1:]:
        summary["as_trained"][f"speedup_over_one_call_{n}"] = _quantiles(
            [row[f"as_trained_{n}"] / row[f"one_call_{n}"] for row in per_round])
    return {"preset": preset, "batch": batch, "histories": lengths, "attention_dropout": dropout,
            "query_block": blocks, "rounds": rounds, "per_round": per_round, "summary": summary}


def compiled_training(preset: str, items: int, batch: int, shortest: int, longest: int, rounds: int,
                      device: str) -> dict[str, Any]:
    """Training steps of `torch.compile(model)` (Inductor) against the eager model on the same batches (GAMER's
    collator, padded and packed, mixed history lengths), the four steps interleaved per round (order rotating);
    compile time and graph breaks counted on the first compiled step of each layout."""
    from torch._dynamo.utils import counters

    tok, model = build(items, 4, 256, preset, seed=0)
    model.to(device).train()
    lengths = length_mix(batch, shortest, longest, seed=5)
    rng = np.random.default_rng(5)
    behaviors, item_ids = list(tok.behaviors), tok.item_ids
    rows = [{"behaviors": [behaviors[i] for i in rng.integers(0, len(behaviors), n + 1)],
             "items": [item_ids[i] for i in rng.integers(0, len(item_ids), n + 1)]} for n in lengths]
    inputs = {layout: {k: v.to(device) for k, v in GamerCollator(tok, pack=layout == "packed")(rows).items()}
              for layout in ("padded", "packed")}
    compiled = torch.compile(model, dynamic=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    counters.clear()
    compile_s = {}
    for layout, batch_inputs in inputs.items():
        start = time.perf_counter()
        train_step(compiled, optimizer, batch_inputs, device)
        compile_s[layout] = round(time.perf_counter() - start, 1)
        train_step(model, optimizer, batch_inputs, device)  # eager warm-up
    graph_breaks = sum(counters["graph_break"].values())
    steps = {f"{mode}_{layout}": (forward, layout) for mode, forward in (("eager", model), ("compiled", compiled))
             for layout in inputs}
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            forward, layout = steps[name]
            start = time.perf_counter()
            train_step(forward, optimizer, inputs[layout], device)
            seconds[name].append(time.perf_counter() - start)
    return {"preset": preset, "batch": batch, "history_lengths": [shortest, longest], "rounds": rounds,
            "shapes": {layout: list(batch_inputs["input_ids"].shape) for layout, batch_inputs in inputs.items()},
            "compile_s": compile_s, "graph_breaks": graph_breaks,
            "step_s": {name: _quantiles(v) for name, v in seconds.items()},
            "eager_over_compiled": {layout: _quantiles([e / c for e, c in zip(seconds[f"eager_{layout}"],
                                                                               seconds[f"compiled_{layout}"])])
                                    for layout in inputs}}


def markdown(results: dict[str, Any]) -> str:
    """The tables RESULTS.md shows, from the JSON (only the sections that ran)."""
    lines: list[str] = []
    if "train_presets" in results:
        lines += ["| preset | params | batch x tokens | train seq/s | train tokens/s | peak memory |",
                  "|---|---:|---|---:|---:|---:|"]
        for r in results["train_presets"]:
            memory = r.get("peak_gpu_mib") or r.get("training_rss_growth_mib")
            lines.append(f"| {r['preset']} | {r['parameters'] / 1e6:.2f}M | {r['batch']} x {r['tokens_per_sequence']} | "
                         f"{r['sequences_per_s']:,} | {r['tokens_per_s']:,.0f} | {memory:,.0f} MiB |")
    if "recommend_vs_generate" in results:
        g = results["recommend_vs_generate"]
        lines += ["", "| preset | items | history | batch | beams | stock generate | recommend() | speed-up | identical |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|",
                  f"| {g['preset']} | {g['items']:,} | {g['history']} | {g['batch']} | {g['beams']} | "
                  f"{g['stock_generate_s']} s | {g['recommend_s']} s | **{g['speedup']}x** | {g['identical_top']} |"]
    if "history_scaling" in results:
        lines += ["", "| history | prompt tokens | recommend() s/batch | vs first | train tokens/s | train step vs first |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in results["history_scaling"]:
            lines.append(f"| {r['history']} | {r['prompt_tokens']} | {r['recommend_s']} | "
                         f"{r['recommend_time_vs_first']}x | "
                         f"{r['train_tokens_per_s']:,.0f} | {r['train_step_time_vs_first']}x |")
    if "catalogue_scaling" in results:
        lines += ["", "| items | trie build | dict build | ItemTrie.allowed / step | logits processor / step | "
                      "dict prefix fn / step | speed-up (allowed, processor) |", "|---:|---:|---:|---:|---:|---:|---|"]
        for r in results["catalogue_scaling"]:
            lines.append(f"| {r['items']:,} | {r['trie_build_s']} s | {r['dict_build_s']} s | "
                         f"{r['trie_allowed_step_ms']} ms | "
                         f"{r['processor_step_ms']} ms | {r['dict_prefix_fn_step_ms']} ms | "
                         f"{r['trie_allowed_speedup']}x, {r['processor_speedup']}x |")
    if "packed_vs_padded" in results:
        p = results["packed_vs_padded"]
        lines += ["", "| batch | histories | padding (padded) | padded shape | packed shape | padded seq/s | "
                      "packed seq/s | packed speed-up | loss gap |", "|---:|---|---:|---|---|---:|---:|---:|---:|",
                  f"| {p['batch']} | {p['history_lengths'][0]}-{p['history_lengths'][1]} (mean {p['mean_history']}) | "
                  f"{p['padding_share_padded']:.0%} | {p['padded_shape']} | {p['packed_shape']} | "
                  f"{p['padded_sequences_per_s']} | {p['packed_sequences_per_s']} | **{p['packed_speedup']}x** | "
                  f"{p['loss_gap']} |"]
    if "recommend_vs_prefill" in results:
        r = results["recommend_vs_prefill"]
        lines += ["", "| preset | items | history | batch | beams | one prefill | recommend() | recommend / prefill |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {r['preset']} | {r['items']:,} | {r['history']} | {r['batch']} | {r['beams']} | "
                  f"{r['prefill_s']} s | {r['recommend_s']} s | **{r['recommend_over_prefill']}x** |"]
    if "expert_dispatch" in results:
        e = results["expert_dispatch"]
        lines += ["", "| preset | batch x tokens | rounds | grouped (median) | loop (median) | loop / grouped: median "
                      "[range] |", "|---|---|---:|---:|---:|---|",
                  f"| {e['preset']} | {e['batch']} x {e['tokens'] // e['batch']} | {e['rounds']} | "
                  f"{e['grouped_s_median']} s | {e['loop_s_median']} s | **{e['loop_over_grouped_median']}x** "
                  f"[{e['loop_over_grouped_range'][0]}, {e['loop_over_grouped_range'][1]}] |"]
    if "parity_training" in results:
        t = results["parity_training"]
        seq = t["sequences_per_s"]
        lines += ["", f"| commit | batch | rounds | {t['commit'][:7]} padded seq/s | today padded seq/s | today packed "
                      "seq/s | packed / old: median [range] | padded / old | implied vs the authors (x 0.97) |",
                  "|---|---:|---:|---:|---:|---:|---|---|---|",
                  f"| {t['commit'][:7]} | {t['batch']} | {t['rounds']} | {seq['old_padded']['median']} | "
                  f"{seq['padded']['median']} | {seq['packed']['median']} | **{_interval(t['packed_over_old'])}** | "
                  f"{_interval(t['padded_over_old'])} | {_interval(t['implied_over_authors'])} |"]
    if "token_cost" in results:
        t = results["token_cost"]
        first, rest = t["histories"][0], t["histories"][1:]
        lines += ["", "| variant | " + " | ".join(f"tokens/s at {n}" for n in t["histories"]) + " | "
                  + " | ".join(f"cost at {n} / at {first}: median [range]" for n in rest) + " |",
                  "|---|" + "---:|" * len(t["histories"]) + "---|" * len(rest)]
        for variant, row in t["summary"].items():
            lines.append(f"| {variant} | " + " | ".join(f"{row[f'tokens_per_s_{n}']['median']:,.0f}"
                                                      for n in t["histories"]) + " | "
                         + " | ".join(f"**{_interval(row[f'cost_{n}_over_{first}'])}**" for n in rest) + " |")
    if "compiled_training" in results:
        c = results["compiled_training"]
        lines += ["", "| layout | shape | compile (first step) | eager step: median [range] | compiled step | "
                      "eager / compiled: median [range] |", "|---|---|---:|---|---|---|"]
        for layout, shape in c["shapes"].items():
            eager, compiled = c["step_s"][f"eager_{layout}"], c["step_s"][f"compiled_{layout}"]
            lines.append(f"| {layout} | {shape} | {c['compile_s'][layout]} s | {eager['median']} s [{eager['min']}, "
                         f"{eager['max']}] | {compiled['median']} s [{compiled['min']}, {compiled['max']}] | "
                         f"**{_interval(c['eager_over_compiled'][layout])}** |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-history", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rec-batch", type=int, default=32)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--histories", type=int, nargs="+", default=[20, 50, 100, 200])
    parser.add_argument("--catalogues", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pack-batch", type=int, default=64, help="sequences of the packed-vs-padded batch")
    parser.add_argument("--pack-longest", type=int, default=200, help="longest history of the length mix")
    parser.add_argument("--parity-commit", default="a22ee19",
                        help="model code to train beside today's (the parity measurement's commit)")
    parser.add_argument("--parity-dataset", default="retailrocket_cml", help="real log the history lengths come from")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("GAMER_HF_DATA_DIR"),
                        help="the shared datasets (the parity section reads --parity-dataset there)")
    parser.add_argument("--parity-max-history", type=int, default=100, help="the recipe's max_history")
    parser.add_argument("--token-cost-histories", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--sections", nargs="+", default=[s for s in SECTIONS if s != "compile"], choices=SECTIONS,
                        help="default: all but compile (Inductor compiles for minutes on CPU: ask for it)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in well under a minute")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if "parity" in args.sections and args.data_dir is None:
        parser.error("give --data-dir or set GAMER_HF_DATA_DIR (the parity section reads a real log), or leave parity "
                     "out of --sections")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.presets, args.train_steps, args.train_batch, args.items = ["tiny"], 1, 4, 2000
        args.rec_batch, args.histories, args.catalogues, args.repeats = 4, [20, 50], [10_000], 1
        args.pack_batch, args.pack_longest, args.parity_max_history = 8, 30, 20
        args.token_cost_histories = [20, 60]

    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "device": args.device, "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(), "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "data_dir")},
    }
    sections = set(args.sections)
    if "train" in sections:
        results["train_presets"] = []
        for preset in args.presets:
            run = in_fresh_process if args.device == "cpu" else (lambda fn, *a: fn(*a))
            row = run(train_throughput, preset, args.items, args.train_batch, args.train_history, args.train_steps, 1,
                      args.device)
            print(json.dumps(row), flush=True)
            results["train_presets"].append(row)
    if "recommend" in sections:
        results["recommend_vs_generate"] = recommend_vs_generate("small", args.items, 50, args.rec_batch, args.beams,
                                                                 args.repeats, args.device)
        print(json.dumps(results["recommend_vs_generate"]), flush=True)
    if "history" in sections:
        results["history_scaling"] = history_scaling("small", args.histories, args.items, args.rec_batch,
                                                     args.train_batch, args.beams, args.repeats, args.device)
        print(json.dumps(results["history_scaling"]), flush=True)
    if "catalogue" in sections:
        results["catalogue_scaling"] = catalogue_scaling(args.catalogues, args.rec_batch, args.beams, args.repeats,
                                                         prompt=16)
    if "packing" in sections:
        results["packed_vs_padded"] = packed_vs_padded("small", args.items, args.pack_batch, 5, args.pack_longest,
                                                       args.repeats, args.device)
        print(json.dumps(results["packed_vs_padded"]), flush=True)
    if "prefill" in sections:
        results["recommend_vs_prefill"] = recommend_vs_prefill("small", args.items, 50, args.rec_batch, args.beams,
                                                               args.repeats, args.device)
        print(json.dumps(results["recommend_vs_prefill"]), flush=True)
    if "experts" in sections:
        results["expert_dispatch"] = expert_dispatch("small", args.items, args.train_batch, args.train_history,
                                                     max(3, 5 * args.repeats), args.device)
        print(json.dumps(results["expert_dispatch"]), flush=True)
    if "parity" in sections:
        results["parity_training"] = parity_training(args.parity_commit, "small", args.items, args.pack_batch,
                                                     max(3, 3 * args.repeats),
                                                     args.data_dir / args.parity_dataset / "events.csv.gz",
                                                     args.parity_max_history, args.device)
        print(json.dumps({k: v for k, v in results["parity_training"].items() if k != "per_round"}), flush=True)
    if "tokencost" in sections:
        results["token_cost"] = token_cost("small", args.items, args.token_cost_histories, args.train_batch,
                                           max(3, 2 * args.repeats), args.device)
        print(json.dumps(results["token_cost"]["summary"]), flush=True)
    if "compile" in sections:
        results["compiled_training"] = compiled_training("small", args.items, args.pack_batch, 5, args.pack_longest,
                                                         max(3, 3 * args.repeats), args.device)
        print(json.dumps(results["compiled_training"]), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(markdown(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
