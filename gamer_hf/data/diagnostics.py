"""What a prepared dataset says about the evaluation before any model runs: the checks whose failure
a user would otherwise read as a property of the model.

- target behavior absent: a target that never occurs in the training sequences, or has no validation
  (or test) cases, is never learned, and nothing can be fit or selected on it;
- users left out: a protocol that gives most users no training history (the session protocol on a
  log of one or two sessions per user) trains on a small, unusual part of the log;
- trivially predictable targets: when a test target is the prompt's last item (or anywhere in the
  prompt), the rule Repeat scores it, and a high share makes every metric mostly a repeat rate.

`diagnose(splits, metadata)` reads only the saved splits and their metadata, so it gives the same
answer for every way of preparing them; `gamer-hf prepare` prints it, `evaluate` warns with it and
records it beside the results, and the model card shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["LEFT_OUT_SHARE", "TRIVIAL_SHARE", "DataReport", "DataWarning", "RepeatShare", "diagnose"]

LEFT_OUT_SHARE = 0.5  # more users than this without training history: suggest the loo protocol
TRIVIAL_SHARE = 0.5  # more test cases than this whose target is the prompt's last item: trivially predictable
BATCH_ROWS = 1 << 16  # test cases whose repeat figures are computed at once


@dataclass(frozen=True)
class DataWarning:
    """One finding worth stopping for; `kind` is "target_absent", "users_left_out" or "trivial_targets"."""

    kind: str
    message: str  # one line: what, why it matters, what to do


@dataclass(frozen=True)
class RepeatShare:
    """Test cases of one behavior whose targets hold the prompt's last item, or any prompt item."""

    cases: int
    last_item: int
    in_prompt: int

    def share(self, count: int) -> float:
        return count / self.cases if self.cases else 0.0


@dataclass
class DataReport:
    """The figures behind the warnings (JSON-ready through `to_dict`)."""

    protocol: str | None
    target_behavior: str | None
    users: int
    training_users: int
    sessions: int | None
    target_training_events: int | None  # None without a target behavior
    target_cases: dict[str, int]  # split -> cases of the target behavior
    repeats: dict[str, RepeatShare]  # behavior -> its test cases' repeat figures
    warnings: list[DataWarning] = field(default_factory=list)

    def lacks_target_cases(self, split: str) -> bool:
        """True when there is a target behavior and `split` has no case of it (nothing to fit or select on)."""
        return self.target_behavior is not None and not self.target_cases.get(split)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataReport:
        values = dict(data)
        values["repeats"] = {name: RepeatShare(**share) for name, share in values["repeats"].items()}
        values["warnings"] = [DataWarning(**warning) for warning in values.get("warnings", [])]
        return cls(**values)

    def lines(self) -> list[str]:
        """The summary's lines: figures first, then one `warning:` line per finding."""
        left_out = self.users - self.training_users
        lines = [f"train users   {self.training_users:,} of {self.users:,} have training history"
                 + (f" ({left_out:,} left out: {_left_out_reason(self.protocol)})" if left_out else "")]
        if self.target_behavior is not None:
            lines.append(f"target        {self.target_behavior}: {self.target_training_events:,} events in training "
                         f"sequences, {self.target_cases.get('validation', 0):,} validation cases, "
                         f"{self.target_cases.get('test', 0):,} test cases")
        if self.repeats:
            lines.append("test targets  in the prompt (last item / anywhere): " + "; ".join(
                f"{name} {share.share(share.last_item):.0%} / {share.share(share.in_prompt):.0%} of {share.cases:,}"
                for name, share in self.repeats.items()))
        return lines + [f"warning: {warning.message}" for warning in self.warnings]

    def format(self) -> str:
        return "\n".join(self.lines())


def _left_out_reason(protocol: str | None) -> str:
    if protocol == "session":
        return "the last session is test and the one before validation, so a user needs 3 or more sessions"
    return "their held-out events come first, so nothing earlier is left to train on"


def _table(split: Any) -> pa.Table:
    """A split (`datasets.Dataset`, selections honoured) as one Arrow table."""
    return split.with_format("arrow")[:] if hasattr(split, "with_format") else pa.table(split)


def _last_and_in_prompt(cases: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Per case: whether its targets hold the prompt's last item, and whether they hold any prompt item."""
    history, targets = cases.column("history_items").combine_chunks(), cases.column("target_items").combine_chunks()
    n = len(cases)
    history_case = pc.list_parent_indices(history).to_numpy()
    target_case = pc.list_parent_indices(targets).to_numpy()
    # one integer per distinct item over both columns, so that (case, item) pairs compare as integers
    codes = pc.dictionary_encode(pa.concat_arrays([pc.list_flatten(history), pc.list_flatten(targets)])).indices
    codes = codes.to_numpy(zero_copy_only=False).astype(np.int64)
    history_code, target_code = codes[: len(history_case)], codes[len(history_case):]
    lengths = pc.list_value_length(history).fill_null(0).to_numpy(zero_copy_only=False)
    last = np.full(n, -1, dtype=np.int64)
    ends = np.cumsum(lengths) - 1
    last[lengths > 0] = history_code[ends[lengths > 0]]
    is_last = target_code == last[target_case]
    width = np.int64(codes.max() + 1 if codes.size else 1)
    in_prompt = pc.is_in(pa.array(target_case * width + target_code),  # an Arrow hash set: np.isin takes seconds
                         value_set=pa.array(history_case * width + history_code)).to_numpy(zero_copy_only=False)
    return (np.bincount(target_case[is_last], minlength=n) > 0,
            np.bincount(target_case[in_prompt], minlength=n) > 0)


def _repeats(cases: pa.Table) -> dict[str, RepeatShare]:
    """Per target behavior (in order of first appearance), its cases' repeat figures, BATCH_ROWS cases at a time: each
    case is judged alone, so memory follows a batch, never the split."""
    totals: dict[str, np.ndarray] = {}
    for start in range(0, cases.num_rows, BATCH_ROWS):
        batch = cases.slice(start, BATCH_ROWS)
        last, anywhere = _last_and_in_prompt(batch)
        behaviors = batch.column("target_behavior")
        for name in pc.unique(behaviors).to_pylist():
            mask = pc.equal(behaviors, name).fill_null(False).to_numpy(zero_copy_only=False)
            totals.setdefault(str(name), np.zeros(3, dtype=np.int64))[:] += (mask.sum(), last[mask].sum(),
                                                                             anywhere[mask].sum())
    return {name: RepeatShare(*map(int, figures)) for name, figures in totals.items()}


def _count(values: pa.ChunkedArray | pa.Array, value: str) -> int:
    return int(pc.sum(pc.equal(values, value)).as_py() or 0)


def _warnings(report: DataReport) -> list[DataWarning]:
    found = []
    target = report.target_behavior
    if target is not None:
        missing = [what for what, n in (("never occurs in the training sequences", report.target_training_events),
                                        ("has 0 validation cases", report.target_cases.get("validation", 0)),
                                        ("has 0 test cases", report.target_cases.get("test", 0))) if n == 0]
        if missing:
            found.append(DataWarning("target_absent", (
                f"the target behavior {target!r} {' and '.join(missing)}: the model cannot learn it from training, "
                "and no reranker or history blend can be fit on it; choose a target that occurs in every split "
                "(--target_behavior), or read its scores as zero-shot")))
    left_out = report.users - report.training_users
    if report.users and left_out / report.users > LEFT_OUT_SHARE:
        hint = ("; --protocol loo holds out single target events instead and keeps most users"
                if report.protocol == "session" else "")
        found.append(DataWarning("users_left_out", (
            f"{left_out:,} of {report.users:,} users ({left_out / report.users:.0%}) have no training history "
            f"({_left_out_reason(report.protocol)}){hint}")))
    for name, share in report.repeats.items():
        if share.share(share.last_item) > TRIVIAL_SHARE:
            found.append(DataWarning("trivial_targets", (
                f"{share.last_item:,} of {share.cases:,} test {name} cases ({share.share(share.last_item):.0%}) have "
                "the prompt's last item among their targets: the rule Repeat scores them, so compare every model "
                "with Repeat (evaluate reports it) before reading its scores as learned")))
    return found


def diagnose(splits: Mapping[str, Any], metadata: Mapping[str, Any]) -> DataReport:
    """The data report of prepared `splits` (train / validation / test) and their `metadata`."""
    target = metadata.get("target_behavior")
    train = _table(splits["train"])
    held_out = {name: _table(splits[name]) for name in ("validation", "test") if name in splits}
    target_events = None
    if target is not None:
        target_events = _count(pc.list_flatten(train.column("behaviors")), target)  # chunk by chunk, no copy
    report = DataReport(
        protocol=metadata.get("protocol"),
        target_behavior=target,
        users=int(metadata.get("num_users") or 0),
        training_users=int(pc.count_distinct(train.column("user_id")).as_py()),
        sessions=metadata.get("num_sessions"),
        target_training_events=target_events,
        target_cases={name: _count(table.column("target_behavior"), target) if target is not None else 0
                      for name, table in held_out.items()},
        repeats=_repeats(held_out["test"]) if "test" in held_out else {},
    )
    report.warnings = _warnings(report)
    return report
