"""Training and recommendation throughput of a GAMER preset on one device (bf16 autocast on GPU).

Sequences have the reference layout (max_history interactions of [behavior, K codes], 3 behaviors,
K x C codes over `--items` real items); token content is random, which does not change the cost.
It uses only torch + transformers + gamer_hf.modeling, so it runs on a bare GPU image.

    python recipes/bench/gpu_throughput.py --preset base --steps 60 --batch 256 --history 100
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence

import torch
from recommend_speed import catalogue  # same folder: recipes/bench

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast, make_prefix_allowed_tokens_fn


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--items", type=int, default=30_000)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--codebook", type=int, default=256)
    parser.add_argument("--history", type=int, default=100)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rec-batch", type=int, default=256)
    parser.add_argument("--rec-history", type=int, default=50)
    parser.add_argument("--stock-batch", type=int, default=32, help="histories for the stock generate() baseline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=torch.cuda.is_available())
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()

    torch.manual_seed(0)
    tok = GamerTokenizerFast.from_items(catalogue(args.items, args.levels, args.codebook, 0),
                                        behaviors={"click": 0, "cart": 1, "buy": 2}, codebook_size=args.codebook)
    config = GamerConfig.from_preset(args.preset, tokenizer=tok)
    model = GamerForCausalLM(config).to(args.device)
    params = sum(p.numel() for p in model.parameters())
    rng = random.Random(1)
    items, behaviors = tok.item_ids, list(tok.behaviors)

    def histories(count: int, length: int):
        return [[(rng.choice(behaviors), rng.choice(items)) for _ in range(length)] for _ in range(count)]

    train_batch = tok.encode_histories(histories(args.batch, args.history + 1), return_tensors="pt").to(args.device)
    labels = train_batch["input_ids"].masked_fill(~tok.code_token_mask(train_batch["input_ids"]), -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    autocast = torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16)
    model.train()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(args.device)
            start = time.perf_counter()
        with autocast:
            loss = model(**train_batch, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(args.device)
    train_s = time.perf_counter() - start
    tokens = int(train_batch["attention_mask"].sum()) * args.steps
    result = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "preset": args.preset, "parameters": params, "bf16": args.bf16,
        "train_batch": args.batch, "train_history": args.history, "train_steps": args.steps,
        "train_sequences_per_s": round(args.batch * args.steps / train_s, 1),
        "train_tokens_per_s": round(tokens / train_s, 1), "final_loss": round(loss.item(), 4),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if args.device.startswith("cuda") else None,
    }

    model.eval()
    rec_histories = histories(args.rec_batch, args.rec_history)
    with autocast:
        model.recommend(tok, rec_histories[:8], top_k=20, num_beams=20)  # warm-up, builds the trie
        sync(args.device)
        start = time.perf_counter()
        model.recommend(tok, rec_histories, top_k=20, num_beams=20, batch_size=args.rec_batch)
        sync(args.device)
        rec_s = time.perf_counter() - start
        stock = rec_histories[: args.stock_batch]
        batch = tok.encode_histories(stock, behavior="buy", return_tensors="pt").to(args.device)
        sync(args.device)
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(**batch, max_new_tokens=tok.num_levels, num_beams=20, num_return_sequences=20,
                           do_sample=False, prefix_allowed_tokens_fn=make_prefix_allowed_tokens_fn(tok))
        sync(args.device)
        stock_s = time.perf_counter() - start
        start = time.perf_counter()
        model.recommend(tok, stock, top_k=20, num_beams=20, batch_size=args.stock_batch)
        sync(args.device)
        same_s = time.perf_counter() - start
    result.update({
        "recommend_histories_per_s": round(args.rec_batch / rec_s, 1), "rec_batch": args.rec_batch,
        "rec_history": args.rec_history, "stock_generate_histories_per_s": round(args.stock_batch / stock_s, 1),
        "recommend_vs_stock_same_batch": round(stock_s / same_s, 2), "stock_batch": args.stock_batch,
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
