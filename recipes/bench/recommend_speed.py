"""recommend() (prefill once, shared cache, vectorized trie) vs stock generate(num_beams, prefix_allowed_tokens_fn).

Same model, inputs and outputs; reports the speed ratio and checks the top-N lists are identical.

    python recipes/bench/recommend_speed.py --preset small --items 10000 --history 50 --batch 64
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast, make_prefix_allowed_tokens_fn


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--codebook", type=int, default=256)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    tok, model = build(args.items, args.levels, args.codebook, args.preset, seed=0)
    model.to(args.device)
    histories = histories_for(tok, args.batch, args.history, seed=1)
    batch = tok.encode_histories(histories, behavior="buy", return_tensors="pt").to(args.device)
    prefix_fn = make_prefix_allowed_tokens_fn(tok)

    def stock():
        with torch.no_grad():
            out = model.generate(
                **batch, max_new_tokens=tok.num_levels, num_beams=args.beams, num_return_sequences=args.beams,
                do_sample=False, length_penalty=0.0, prefix_allowed_tokens_fn=prefix_fn,
            )
        return tok.decode_items(out[:, batch["input_ids"].shape[1] :].cpu())

    def fast():
        return model.recommend(tok, histories, behavior="buy", top_k=args.beams, num_beams=args.beams, batch_size=args.batch)

    fast()  # warm-up (builds the trie once, as a served model would)
    t_stock, stock_items = timed(stock, args.repeats)
    t_fast, fast_recs = timed(fast, args.repeats)
    fast_items = [item for row in fast_recs for item, _ in row]
    result = {
        "preset": args.preset, "items": args.items, "history": args.history, "batch": args.batch,
        "beams": args.beams, "device": args.device, "stock_generate_s": round(t_stock, 3),
        "recommend_s": round(t_fast, 3), "speedup": round(t_stock / t_fast, 2),
        "identical_top": fast_items == stock_items,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
