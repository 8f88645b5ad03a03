"""Quality report of a semantic-ID assignment: collisions, codebook usage and entropy per level.

Low usage or low entropy at a level means the generator wastes vocabulary there; a high collision
rate means the codes carry less item identity than their length suggests. Two figures say whether
the codes carry meaning at all: the share of items whose embedding was a random fallback, and
neighbour agreement, the share of an item's nearest training co-occurrence neighbours that share its
first code (next to the share expected by chance for first codes of the same sizes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp

from .collisions import collision_ranks, prefix_keys

__all__ = ["COLLISION_WARNING_RATE", "LevelStats", "NeighbourAgreement", "SemanticIdReport", "build_report",
           "collision_warnings", "fitting_sizes", "level_stats", "neighbour_agreement"]

COLLISION_WARNING_RATE = 0.3  # more items than this sharing their tuple before handling: warn
# Codebook sizes `fitting_sizes` picks from: powers of two, at most the reference 256 codes per level.
SIZE_CHOICES = (8, 16, 32, 64, 128, 256)
_SORT_BLOCK = 1 << 22  # co-occurrence entries sorted at once by neighbour_agreement


@dataclass(frozen=True)
class LevelStats:
    """Usage of one code level. `normalized_entropy` = entropy / log2(codebook_size) (0 when size is 1)."""

    level: int  # 1-based
    codebook_size: int
    codes_used: int
    usage: float  # codes_used / codebook_size
    entropy_bits: float
    normalized_entropy: float
    distinct_prefixes: int  # distinct tuples of levels 1..level
    disambiguation: bool = False  # True for a level appended to resolve collisions


@dataclass
class SemanticIdReport:
    """Everything worth knowing before training on a set of semantic IDs."""

    method: str
    num_items: int
    num_levels: int
    codebook_sizes: list[int]
    collision_rate: float  # before handling: 1 - distinct tuples / items
    colliding_items: int  # items sharing their tuple with at least one other item (before handling)
    max_collision_group: int
    collision_handling: str  # "append", "reassign" or "none" (nothing to resolve)
    collision_rate_after: float
    levels: list[LevelStats]
    items_per_first_code: dict[str, float]  # min / median / mean / max over used level-1 codes
    timings: dict[str, float] = field(default_factory=dict)
    # before handling, per prefix length 1..K: 1 - distinct prefixes / items
    collision_rate_per_level: list[float] = field(default_factory=list)
    embedding_coverage: dict[str, float | int] = field(default_factory=dict)  # `ItemEmbeddings.coverage()`
    neighbour_agreement: dict[str, float | int] = field(default_factory=dict)  # `NeighbourAgreement` as dict
    warnings: list[str] = field(default_factory=list)  # `collision_warnings`, one line each

    def to_dict(self) -> dict:
        return asdict(self)

    def to_table(self) -> str:
        """Human-readable summary: one header block and one row per level."""
        lines = [
            f"semantic IDs: {self.method} | {self.num_items} items | {self.num_levels} levels | "
            f"codebook sizes {self.codebook_sizes}",
            f"collisions before handling: rate {self.collision_rate:.4f} | colliding items "
            f"{self.colliding_items} | largest group {self.max_collision_group} | handling "
            f"{self.collision_handling} | rate after {self.collision_rate_after:.4f}",
            "items per level-1 code: "
            + " | ".join(f"{key} {value:g}" for key, value in self.items_per_first_code.items()),
        ]
        if self.collision_rate_per_level:
            lines.append("collision rate per prefix level (before handling): "
                         + " | ".join(f"{rate:.4f}" for rate in self.collision_rate_per_level))
        if self.embedding_coverage:
            counts = {key: value for key, value in self.embedding_coverage.items() if not isinstance(value, dict)}
            lines.append("embeddings: " + " | ".join(f"{key} {value:.4g}" if isinstance(value, float) else
                                                      f"{key} {value}" for key, value in counts.items()))
            mapped = self.embedding_coverage.get("profile_map")
            if mapped:
                lines.append(f"lone training items mapped from their profile: {self.embedding_coverage['profile_items']}"
                             f" | {mapped['model']} | held-out R^2 {mapped['held_out_r2']:.4f} over "
                             f"{mapped['held_out_items']} items (0: the mean embedding) | cosine "
                             f"{mapped['held_out_cosine']:.4f} vs the mean embedding's "
                             f"{mapped['mean_embedding_cosine']:.4f} and a random item's {mapped['random_item_cosine']:.4f}")
        if self.neighbour_agreement:
            agreement = self.neighbour_agreement
            lines.append(f"neighbour agreement (first code shared with the {agreement['neighbours']} nearest "
                         f"co-occurrence neighbours): {agreement['agreement']:.4f} vs chance {agreement['chance']:.4f} "
                         f"over {agreement['items']} items")
        if self.timings:
            lines.append("timings (s): " + " | ".join(f"{key} {value:.2f}" for key, value in self.timings.items()))
        header = f"{'level':>5} {'size':>6} {'used':>6} {'usage':>7} {'entropy':>8} {'norm':>6} {'prefixes':>9}"
        lines += ["", header, "-" * len(header)]
        for stats in self.levels:
            name = f"{stats.level}{'*' if stats.disambiguation else ''}"
            lines.append(
                f"{name:>5} {stats.codebook_size:>6} {stats.codes_used:>6} {stats.usage:>7.3f} "
                f"{stats.entropy_bits:>8.3f} {stats.normalized_entropy:>6.3f} {stats.distinct_prefixes:>9}"
            )
        if any(stats.disambiguation for stats in self.levels):
            lines.append("* disambiguation level appended to resolve collisions")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def distinct_prefixes(codes: np.ndarray) -> list[int]:
    """Number of distinct tuples of levels 1..l of `codes`, for every l."""
    return [len(np.unique(key)) for key in prefix_keys(codes)]


def level_stats(codes: np.ndarray, codebook_sizes: Sequence[int], num_base_levels: int) -> list[LevelStats]:
    """Stats of every column of `codes`; columns from `num_base_levels` on are disambiguation levels."""
    stats = []
    prefixes = None
    for level, size in enumerate(codebook_sizes):
        column = codes[:, level]
        if column.size and (column.min() < 0 or column.max() >= size):
            raise ValueError(f"level {level + 1} has codes outside [0, {size}): min {column.min()}, max {column.max()}")
        counts = np.bincount(column, minlength=size)
        prefixes = distinct_prefixes(codes) if prefixes is None else prefixes  # after the range check
        entropy = _entropy_bits(counts) if column.size else 0.0
        used = int((counts > 0).sum())
        stats.append(
            LevelStats(
                level=level + 1,
                codebook_size=int(size),
                codes_used=used,
                usage=used / size,
                entropy_bits=entropy,
                normalized_entropy=float(entropy / np.log2(size)) if size > 1 else 0.0,
                distinct_prefixes=prefixes[level],
                disambiguation=level >= num_base_levels,
            )
        )
    return stats


@dataclass(frozen=True)
class NeighbourAgreement:
    """Mean share of an item's `neighbours` strongest co-occurrence neighbours with its first code,
    over the `items` that have any, and that share for randomly drawn other items (`chance`)."""

    agreement: float
    chance: float
    items: int
    neighbours: int


def neighbour_agreement(first_codes: np.ndarray, cooccurrence: sp.csr_matrix, neighbours: int = 10) -> NeighbourAgreement:
    """How well level-1 codes group items that users interact with together (see `NeighbourAgreement`)."""
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    first = np.asarray(first_codes, dtype=np.int64)
    matrix = sp.csr_matrix(cooccurrence)
    if matrix.shape != (len(first), len(first)):
        raise ValueError(f"co-occurrence matrix of shape {matrix.shape} does not match {len(first)} items")
    matrix.sum_duplicates()  # canonical: within a row, columns ascending
    sizes = np.bincount(first)
    same = np.zeros(len(first), dtype=np.int64)
    counted = np.zeros(len(first), dtype=np.int64)
    for start, stop in _row_blocks(matrix.indptr, _SORT_BLOCK):
        low, high = matrix.indptr[start], matrix.indptr[stop]
        rows = np.repeat(np.arange(start, stop), np.diff(matrix.indptr[start : stop + 1]))
        # each row's entries heaviest first, ties by column (lexsort is stable), a block of rows per sort:
        # one sort of every entry takes minutes and gigabytes at millions of items
        order = np.lexsort((-matrix.data[low:high], rows))
        top = order[np.arange(len(order)) - (matrix.indptr[rows[order]] - low) < neighbours]
        rows, columns = rows[top], matrix.indices[low:high][top]
        same += np.bincount(rows, weights=first[columns] == first[rows], minlength=len(first)).astype(np.int64)
        counted += np.bincount(rows, minlength=len(first))
    filled = np.flatnonzero(counted)
    if not filled.size:
        return NeighbourAgreement(0.0, 0.0, 0, neighbours)
    shares = same[filled] / counted[filled]
    chances = (sizes[first[filled]] - 1) / max(len(first) - 1, 1)
    return NeighbourAgreement(float(shares.mean()), float(chances.mean()), len(filled), neighbours)


def _row_blocks(indptr: np.ndarray, entries: int) -> list[tuple[int, int]]:
    """Consecutive row ranges of about `entries` stored entries each (a row longer than that is its own block)."""
    bounds = np.unique(np.searchsorted(indptr, np.arange(0, indptr[-1], entries), side="right") - 1)
    bounds = np.r_[bounds[bounds < len(indptr) - 1], len(indptr) - 1]
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a] or [(0, len(indptr) - 1)]


def build_report(
    method: str,
    base_codes: np.ndarray,
    final_codes: np.ndarray,
    final_codebook_sizes: Sequence[int],
    collision_handling: str,
    timings: dict[str, float] | None = None,
) -> SemanticIdReport:
    """Report on `final_codes`, with collision figures measured on `base_codes` (before handling)."""
    n = len(base_codes)
    if n == 0:
        raise ValueError("cannot report on an empty item set")
    _, group_size = collision_ranks(base_codes)
    base_prefixes, final_distinct = distinct_prefixes(base_codes), distinct_prefixes(final_codes)[-1]
    first = np.bincount(final_codes[:, 0])
    first = first[first > 0]
    return SemanticIdReport(
        method=method,
        num_items=n,
        num_levels=final_codes.shape[1],
        codebook_sizes=[int(size) for size in final_codebook_sizes],
        collision_rate=1.0 - base_prefixes[-1] / n,
        colliding_items=int((group_size > 1).sum()),
        max_collision_group=int(group_size.max()),
        collision_handling=collision_handling,
        collision_rate_after=1.0 - final_distinct / n,
        levels=level_stats(final_codes, final_codebook_sizes, base_codes.shape[1]),
        items_per_first_code={
            "min": float(first.min()),
            "median": float(np.median(first)),
            "mean": float(first.mean()),
            "max": float(first.max()),
        },
        timings=dict(timings or {}),
        collision_rate_per_level=[1.0 - distinct / n for distinct in base_prefixes],
    )


def _fits(num_items: int, levels: int, size: int) -> bool:
    """Room for every item in the prefixes before the last level (k-means fills codebooks unevenly, so the
    last level is left to tell apart the few items that share a prefix)."""
    return size ** (levels - 1) >= num_items


def fitting_sizes(num_items: int, levels: int | None = None, codebook_size: int | None = None) -> tuple[int, int]:
    """(levels, codebook size) for a catalogue of `num_items`, keeping whichever the user gave: the fewest
    levels (3 at least) and then the smallest power-of-two size up to 256 with `size ** (levels - 1) >=
    num_items`; 4 x 256, the reference, when nothing smaller fits."""
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    if levels is not None and codebook_size is not None:
        return levels, codebook_size
    if levels is not None:
        return levels, next((size for size in SIZE_CHOICES if _fits(num_items, levels, size)), SIZE_CHOICES[-1])
    if codebook_size is not None:
        levels = 3
        while not _fits(num_items, levels, max(codebook_size, 2)):
            levels += 1
        return levels, codebook_size
    for candidate in (3, 4):
        size = next((size for size in SIZE_CHOICES if _fits(num_items, candidate, size)), None)
        if size is not None:
            return candidate, size
    return 4, SIZE_CHOICES[-1]


def _shape(sizes: Sequence[int]) -> str:
    return f"{len(sizes)} levels x {sizes[0]} codes" if len(set(sizes)) == 1 else f"codebook sizes {list(sizes)}"


def collision_warnings(report: SemanticIdReport, threshold: float = COLLISION_WARNING_RATE) -> list[str]:
    """One line when more than `threshold` of the items shared their tuple before handling, naming the cause:
    sizes too small for the catalogue (with sizes that fit), or embeddings that do not tell items apart."""
    if report.collision_rate <= threshold:
        return []
    sizes = [stats.codebook_size for stats in report.levels if not stats.disambiguation]
    shared = (f"{report.collision_rate:.0%} of the {report.num_items:,} items share their code tuple with another "
              f"item (before handling)")
    if math.prod(sizes[:-1]) < report.num_items:
        levels, size = fitting_sizes(report.num_items)
        return [f"{shared}: {_shape(sizes)} leave {math.prod(sizes[:-1]):,} prefixes before "
                f"the last level for {report.num_items:,} items; use --levels {levels} --codebook_size {size} (what "
                "leaving both out picks for this catalogue)"]
    return [f"{shared} although {_shape(sizes)} fit the catalogue: their embeddings do not "
            "tell them apart (items without side information or co-occurrence get the same or random vectors); "
            f"the {report.collision_handling} step keeps them distinct, but their codes carry no meaning: try "
            "--embedding hybrid or --fit_on learned"]
