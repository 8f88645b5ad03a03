"""The number columns of prepared splits (gamer_hf/data/sequences.py): the same behaviors and items as the name and
id columns beside them, as positions in the folder's behavior table and item id map, from either engine."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from gamer_hf.data import PreparedData, generate_synthetic, prepare, write_synthetic
from gamer_hf.data.collator import NUMBER_COLUMNS
from gamer_hf.data.sequences import CASE_COLUMNS, TRAIN_COLUMNS

HOUR = 3600


def assert_numbers_are_the_names_and_ids(prepared: PreparedData) -> None:
    item_ids = pa.array(list(prepared.item_ids), pa.string())
    behaviors = pa.array(list(prepared.metadata["behaviors"]), pa.string())
    for split, columns in (("train", TRAIN_COLUMNS), ("validation", CASE_COLUMNS), ("test", CASE_COLUMNS)):
        table = prepared.splits[split].data.table
        assert tuple(table.column_names) == columns
        for name, numbers in NUMBER_COLUMNS.items():
            if name not in table.column_names:
                continue
            names, numbered = table[name].combine_chunks(), table[numbers].combine_chunks()
            table_of = item_ids if "item" in name else behaviors
            if isinstance(names, pa.ListArray):
                assert names.offsets.equals(numbered.offsets), (split, name)
                names, numbered = names.flatten(), numbered.flatten()
            assert len(names) and table_of.take(numbered).equals(names), (split, name)


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("raw") / "synthetic", *generate_synthetic(num_users=80, num_items=60,
                                                                                             seed=4))


@pytest.mark.parametrize("engine", ["memory", "duckdb"])
@pytest.mark.parametrize("options", [{}, {"protocol": "loo", "k_core": 2}, {"augment_copies": 2, "max_history": 4}],
                         ids=["session", "loo-kcore", "augmented"])
def test_both_engines_number_the_rows_by_the_saved_maps(tmp_path: Path, synthetic_folder: Path, engine: str,
                                                        options: dict) -> None:
    prepared = prepare(synthetic_folder, out=tmp_path / "out", engine=engine, progress=False, **options)
    assert_numbers_are_the_names_and_ids(prepared)


def test_given_sessions_keep_the_item_numbers_of_the_saved_map(make_log) -> None:
    """Given sessions reorder the events before the split; the numbers still index the saved id map."""
    rows = [("u1", "z", "click", 0, "s2"), ("u1", "a", "click", 10, "s1"), ("u1", "y", "cart", 20, "s2"),
            ("u1", "b", "buy", 30, "s3"), ("u1", "c", "click", 40, "s4"), ("u1", "a", "cart", 50, "s4"),
            ("u2", "y", "click", 0, "t1"), ("u2", "z", "buy", HOUR, "t2"), ("u2", "c", "click", 2 * HOUR, "t3")]
    prepared = prepare(make_log(rows), protocol="session", session_by="given", min_user_events=1, progress=False)
    assert_numbers_are_the_names_and_ids(prepared)
