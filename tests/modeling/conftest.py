"""Small catalogues and models shared by the modeling tests."""

from __future__ import annotations

import random

import pytest
import torch

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast

BEHAVIORS = {"click": 0, "cart": 1, "buy": 2}


def random_catalogue(num_items: int, sizes: tuple[int, ...], seed: int) -> dict[str, tuple[int, ...]]:
    rng = random.Random(seed)
    index: dict[str, tuple[int, ...]] = {}
    used: set[tuple[int, ...]] = set()
    while len(index) < num_items:
        codes = tuple(rng.randrange(size) for size in sizes)
        if codes not in used:
            used.add(codes)
            index[f"item{len(index)}"] = codes
    return index


def random_histories(tok: GamerTokenizerFast, count: int, seed: int, max_len: int = 6) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    items, behaviors = list(tok.item_index), list(tok.behaviors)
    return [
        [(rng.choice(behaviors), rng.choice(items)) for _ in range(rng.randint(1, max_len))] for _ in range(count)
    ]


@pytest.fixture(scope="session")
def make_histories():
    return random_histories


@pytest.fixture(scope="session")
def make_catalogue():
    return random_catalogue


@pytest.fixture(scope="module")
def tokenizer() -> GamerTokenizerFast:
    return GamerTokenizerFast.from_items(random_catalogue(150, (6, 6, 6), seed=0), behaviors=BEHAVIORS, codebook_size=6)


@pytest.fixture(scope="module")
def model(tokenizer: GamerTokenizerFast) -> GamerForCausalLM:
    torch.manual_seed(0)
    return GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer)).eval()


@pytest.fixture(scope="module")
def histories(tokenizer: GamerTokenizerFast) -> list[list[tuple[str, str]]]:
    return random_histories(tokenizer, 5, seed=1)
