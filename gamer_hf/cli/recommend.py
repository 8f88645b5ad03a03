"""`gamer-hf recommend`: top-K items for one history under a requested behavior."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Optional

from ..errors import InputError
from ..loading import load_gamer, parse_history, recommend_items, unknown_interactions

__all__ = ["RecommendArguments", "run"]


@dataclass
class RecommendArguments:
    model: str = field(metadata={"help": "GAMER checkpoint directory (or a Hub repo snapshot)"})
    history: str = field(metadata={"help": "interactions, oldest first: 'click:sku1,cart:sku2'"})
    behavior: Optional[str] = field(default=None, metadata={"help": "requested behavior (default: the target behavior)"})
    top_k: int = field(default=10, metadata={"help": "how many items to return"})
    num_beams: int = field(default=20, metadata={"help": "beam width of the constrained search (>= top_k)"})
    max_history: Optional[int] = field(
        default=None,
        metadata={"help": "most recent interactions read (default: the history length the checkpoint was trained with)"},
    )
    exclude_history: bool = field(default=False, metadata={"help": "leave out items already in the history"})
    skip_unknown: bool = field(default=False, metadata={"help": "drop history items the checkpoint does not know"})
    json: bool = field(default=False, metadata={"help": "print JSON instead of a table"})


def run(args: RecommendArguments) -> int:
    history = parse_history(args.history)
    model, tokenizer = load_gamer(args.model)
    unknown = unknown_interactions(tokenizer, history)
    listed = ", ".join(f"{behavior}:{item}" for behavior, item in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    if unknown and not args.skip_unknown:
        raise InputError(f"{len(unknown)} history entries are unknown to {args.model} ({listed}); pass "
                         "--skip_unknown to drop them")
    if unknown:
        print(f"skipped {len(unknown)} unknown history entries ({listed})", file=sys.stderr)
        if len(unknown) == len(history):
            print("no history entry is known: recommending from an empty history (the requested behavior alone)",
                  file=sys.stderr)
    behavior, recs = recommend_items(
        model, tokenizer, history, behavior=args.behavior, top_k=args.top_k, num_beams=args.num_beams,
        exclude_history=args.exclude_history, max_history=args.max_history, on_unknown="skip" if args.skip_unknown else "raise",
    )
    if args.json:
        print(json.dumps({"behavior": behavior, "items": [{"item_id": i, "score": s} for i, s in recs]}))
    else:
        print(f"top-{args.top_k} under '{behavior}':")
        for rank, (item, score) in enumerate(recs, 1):
            print(f"{rank:>3}  {item:<24} {score:9.4f}")
    return 0
