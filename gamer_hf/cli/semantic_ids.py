"""`gamer-hf semantic-ids`: item embeddings -> code tuples -> a GamerTokenizerFast directory."""

from __future__ import annotations

from gamer_hf.semantic_ids import SemanticIdArguments, build_tokenizer

__all__ = ["SemanticIdArguments", "run"]


def run(args: SemanticIdArguments) -> int:
    built = build_tokenizer(args)
    print(built.semantic_ids.report.to_table())
    if "embedding" in built.metadata:
        print(f"embedding: {built.metadata['embedding']}")
    print(f"wrote tokenizer with {len(built.semantic_ids.item_index)} items to {args.out}")
    return 0
