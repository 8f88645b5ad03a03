"""`gamer-hf semantic-ids`: item embeddings -> code tuples -> a GamerTokenizerFast directory."""

from __future__ import annotations

from gamer_hf.semantic_ids import SemanticIdArguments, build_tokenizer

__all__ = ["SemanticIdArguments", "run"]


def run(args: SemanticIdArguments) -> int:
    built = build_tokenizer(args)
    print(built.semantic_ids.report.to_table())
    parameters = built.semantic_ids.parameters
    if args.method != "cid" and (args.levels is None or args.codebook_size is None):
        print(f"sizes: {parameters['num_levels']} levels x {parameters['codebook_size'][0]} codes, chosen for "
              f"{len(built.semantic_ids.item_index):,} items (--levels / --codebook_size set them)")
    embedding = built.metadata.get("embedding")
    if embedding:
        print(f"embedding: {embedding}")
        if embedding["text_encoder"]:
            print(f"text encoder: {embedding['text_encoder']}")
    print(f"wrote tokenizer with {len(built.semantic_ids.item_index)} items to {args.out}")
    return 0
