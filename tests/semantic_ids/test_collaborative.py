from __future__ import annotations

import math

import datasets
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gamer_hf.semantic_ids.collaborative import (
    ItemPositions,
    collaborative_embeddings,
    cooccurrence_matrix,
    items_with_partner,
    power_svd,
    ppmi,
    sequences_from_events,
    window_pairs,
)


def test_cooccurrence_counts_by_hand() -> None:
    # a b a c: pairs at distance 1: ab, ba, ac; distance 2: aa (self, dropped), bc.
    counts = cooccurrence_matrix([["a", "b", "a", "c"]], ["a", "b", "c"], window=2).toarray()
    expected = np.array([[0.0, 2.0, 1.0], [2.0, 0.0, 0.5], [1.0, 0.5, 0.0]])
    np.testing.assert_allclose(counts, expected)


def test_cooccurrence_does_not_cross_sequences_and_skips_unknown_items() -> None:
    counts = cooccurrence_matrix([["a", "x", "b"], ["c"]], ["a", "b", "c"], window=1).toarray()
    assert counts.sum() == 0  # a-x and x-b involve an unknown item; a and c are in different sequences
    counts = cooccurrence_matrix([["a", "x", "b"]], ["a", "b", "c"], window=2).toarray()
    assert counts[0, 1] == counts[1, 0] == 0.5


def test_ppmi_by_hand() -> None:
    counts = np.array([[0.0, 2.0, 1.0], [2.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    weights = ppmi(counts, alpha=1.0).toarray()
    # total 6; rows/cols sums (3, 2, 1): pmi(a, b) = log(2 * 6 / (3 * 2)) = log 2, pmi(a, c) = log 2
    assert weights[0, 1] == pytest.approx(math.log(2.0))
    assert weights[0, 2] == pytest.approx(math.log(2.0))
    assert weights[1, 2] == 0.0


def test_ppmi_clips_negative_associations() -> None:
    counts = np.array([[0.0, 10.0, 1.0], [10.0, 0.0, 10.0], [1.0, 10.0, 0.0]])
    weights = ppmi(counts, alpha=1.0)
    assert weights.toarray()[0, 2] == 0.0 and weights.nnz == 4


def _two_communities(rng: np.random.Generator, repeats: int = 60) -> list[list[str]]:
    left, right = [f"L{i}" for i in range(10)], [f"R{i}" for i in range(10)]
    return [list(rng.choice(left if k % 2 else right, size=6)) for k in range(repeats)] + [["lonely"]]


def test_items_of_one_community_are_closer() -> None:
    sequences = _two_communities(np.random.default_rng(0))
    ids = [f"L{i}" for i in range(10)] + [f"R{i}" for i in range(10)] + ["lonely"]
    vectors, has_signal = collaborative_embeddings(sequences, ids, dim=4, seed=0)
    assert vectors.shape == (21, 4)
    np.testing.assert_allclose(np.linalg.norm(vectors[:20], axis=1), 1.0, rtol=1e-5)
    assert has_signal[:20].all() and not has_signal[20]
    assert not vectors[20].any()
    sims = vectors[:20] @ vectors[:20].T
    within = (sims[:10, :10].sum() + sims[10:, 10:].sum() - 20) / 180
    across = sims[:10, 10:].mean()
    assert within > across + 0.5


def test_same_seed_same_vectors() -> None:
    sequences = _two_communities(np.random.default_rng(1))
    ids = sorted({item for seq in sequences for item in seq})
    first, _ = collaborative_embeddings(sequences, ids, dim=3, seed=5)
    second, _ = collaborative_embeddings(sequences, ids, dim=3, seed=5)
    np.testing.assert_array_equal(first, second)


@pytest.fixture
def events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u2", "u1", "u2", "u1", "u1"],
            "item_id": [5, 1, 6, 2, 3],
            "behavior": ["click", "click", "buy", "cart", "buy"],
            "timestamp": [10, 30, 5, 20, 20],
        }
    )


def test_sequences_from_events_orders_by_time_and_keeps_ties_in_input_order(events: pd.DataFrame) -> None:
    assert sequences_from_events(events) == [["2", "3", "1"], ["6", "5"]]


def test_sequences_from_a_datasets_dataset(events: pd.DataFrame) -> None:
    assert sequences_from_events(datasets.Dataset.from_pandas(events)) == sequences_from_events(events)


@pytest.mark.parametrize(
    "bad,message", [(pd.DataFrame({"user_id": [1]}), "lacks column"), ([("u", "i")], "DataFrame or a datasets")]
)
def test_sequences_from_events_errors(bad, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        sequences_from_events(bad)


def test_cooccurrence_argument_errors() -> None:
    with pytest.raises(ValueError, match="window"):
        cooccurrence_matrix([["a"]], ["a"], window=0)
    with pytest.raises(ValueError, match="duplicates"):
        cooccurrence_matrix([["a"]], ["a", "a"])


def test_cooccurrence_summed_by_distance_equals_all_pairs_at_once() -> None:
    rng = np.random.default_rng(0)
    item_ids = [f"i{i}" for i in range(30)]
    sequences = [[f"i{j}" for j in rng.integers(0, 33, rng.integers(1, 15))] for _ in range(40)]  # i30-i32 unknown
    rows, cols, distances = window_pairs(sequences, item_ids, window=4)
    expected = np.zeros((30, 30))
    np.add.at(expected, (rows, cols), 1.0 / distances)
    counts = cooccurrence_matrix(sequences, item_ids, window=4)
    assert counts.dtype == np.float32
    np.testing.assert_allclose(counts.toarray(), expected, rtol=1e-6)


def test_items_with_partner_by_hand() -> None:
    # "b" is alone in both its sequences (once as the same item three times), "x" is not a catalogue item
    sequences = [["a", "c"], ["b"], ["b", "b", "b"], ["d", "x"], ["a", "e", "e", "e", "e", "e", "e", "e"]]
    mask = items_with_partner(sequences, ["a", "b", "c", "d", "e", "cold"])
    assert mask.tolist() == [True, False, True, False, True, False]


@pytest.mark.realdata
def test_items_with_partner_are_the_items_window_pairs_pairs(data_dir) -> None:
    """On 400 real retail_beh_mbht users: the cheap distinct-item rule and the pair list agree for any window."""
    events = pd.read_csv(data_dir / "retail_beh_mbht" / "events.csv.gz", nrows=6000, dtype={"user_id": str, "item_id": str})
    events = events[events["user_id"].isin(events["user_id"].unique()[:400])]
    sequences = sequences_from_events(events)
    item_ids = sorted(events["item_id"].unique())
    mask = items_with_partner(sequences, item_ids)
    assert 0 < mask.sum() < len(item_ids)  # the slice has both kinds
    for window in (1, 5):
        centers, _, _ = window_pairs(sequences, item_ids, window=window)
        np.testing.assert_array_equal(mask, np.bincount(centers, minlength=len(item_ids)) > 0)


def _with_partner_by_groupby(sequences: list[list[str]], item_ids: list[str]) -> np.ndarray:
    """The rule before ItemPositions: a pandas group-by of distinct catalogue items per sequence."""
    index = pd.Index(item_ids)
    table = pd.DataFrame({"sequence": np.repeat(np.arange(len(sequences)), [len(s) for s in sequences]),
                          "position": index.get_indexer([item for s in sequences for item in s])})
    table = table[table["position"] >= 0]
    distinct = table.groupby("sequence")["position"].transform("nunique").to_numpy()
    out = np.zeros(len(item_ids), dtype=bool)
    out[table["position"].to_numpy()[distinct > 1]] = True
    return out


def test_item_positions_partner_and_seen_masks_equal_the_previous_rules() -> None:
    rng = np.random.default_rng(3)
    item_ids = [f"i{i}" for i in range(40)]
    # lengths 0-6 over 44 ids (i40-i43 unknown), so single-item, repeated-item and empty sequences occur
    sequences = [[f"i{j}" for j in rng.integers(0, 44, rng.integers(0, 7))] for _ in range(300)]
    sequences += [["i5", "i5", "i5"], ["i41", "i6"], []]
    positions = ItemPositions.encode(sequences, item_ids)
    np.testing.assert_array_equal(positions.with_partner(), _with_partner_by_groupby(sequences, item_ids))
    seen = {item for sequence in sequences for item in sequence}
    np.testing.assert_array_equal(positions.seen(), [item in seen for item in item_ids])
    np.testing.assert_array_equal(positions.cooccurrence(3).toarray(),
                                  cooccurrence_matrix(sequences, item_ids, window=3).toarray())


def test_power_svd_finds_the_top_singular_pairs() -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    left, right = np.linalg.qr(rng.standard_normal((300, 8)))[0], np.linalg.qr(rng.standard_normal((300, 8)))[0]
    values = np.array([50.0, 40, 30, 20, 10, 5, 2, 1])
    matrix = sp.csr_matrix(((left * values) @ right.T).astype(np.float32))
    u, s = power_svd(matrix, 4, seed=0)
    assert u.dtype == np.float32 and u.shape == (300, 4)
    np.testing.assert_allclose(s, values[:4], rtol=1e-3)
    np.testing.assert_allclose(np.abs(u.T @ left[:, :4]), np.eye(4), atol=1e-3)  # the same vectors up to sign
    again, _ = power_svd(matrix, 4, seed=0)
    np.testing.assert_array_equal(u, again)


def test_large_catalogue_path_keeps_communities_apart(monkeypatch) -> None:
    from gamer_hf.semantic_ids import collaborative

    monkeypatch.setattr(collaborative, "EXACT_SVD_UP_TO", 0)  # power_svd, as past 200k items
    sequences = _two_communities(np.random.default_rng(0))
    ids = [f"L{i}" for i in range(10)] + [f"R{i}" for i in range(10)] + ["lonely"]
    counts = cooccurrence_matrix(sequences, ids)
    vectors, has_signal = collaborative_embeddings(None, ids, dim=4, seed=0, counts=counts)
    assert has_signal[:20].all() and not has_signal[20]
    sims = vectors[:20] @ vectors[:20].T
    assert (sims[:10, :10].sum() + sims[10:, 10:].sum() - 20) / 180 > sims[:10, 10:].mean() + 0.5


def test_item_positions_read_ids_that_are_not_str() -> None:
    positions = ItemPositions.encode([[1, 2, "x"], [2]], ["2", "1", "3"])  # ints as a DataFrame column gives them
    assert positions.rows.tolist() == [1, 0, -1, 0] and positions.sequence.tolist() == [0, 0, 0, 1]


def test_ppmi_keep_zeros_shares_the_counts_structure() -> None:
    counts = sp.csr_matrix(np.array([[0.0, 10.0, 1.0], [10.0, 0.0, 10.0], [1.0, 10.0, 0.0]], dtype=np.float32))
    kept = ppmi(counts, alpha=1.0, keep_zeros=True)
    assert kept.nnz == counts.nnz and np.shares_memory(kept.indices, counts.indices)  # the clipped (0, 2) entry stays, as 0
    np.testing.assert_array_equal(kept.toarray(), ppmi(counts, alpha=1.0).toarray())
