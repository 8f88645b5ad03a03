"""Data pipeline: read multi-behavior logs, validate them, split them, and build model inputs.

Canonical events (`read_events(...).events`, a datasets.Dataset):
    user_id: str, item_id: str, behavior: str, timestamp: float64 seconds (or position when the
    source has no time)[, session_id: str]

Prepared splits (`prepare(...)` / `load_prepared(dir)`, a DatasetDict):
    train:            {"user_id": str, "behaviors": list[str], "items": list[str]}
                      one row per user and view (original first, then augmented views), each the
                      last max_history + 1 interactions of the user's training history
    validation, test: {"user_id": str, "history_behaviors": list[str], "history_items": list[str],
                       "target_behavior": str, "target_items": list[str]}
                      one row per (user, behavior) case; history oldest first (at most max_history);
                      target_items is the SET of held-out items under target_behavior; these rows
                      are the evaluator's cases (gamer_hf.evaluation.as_cases reads them)

Item ids everywhere are the original ids as strings (the tokenizer's item ids). Contiguous
integer ids are the positions in `PreparedData.item_ids` / `user_ids` (items.json / users.json).
Beside each behavior and item column the rows carry the same values as numbers (`behavior_numbers`,
`item_numbers`, `history_*_numbers`, `target_behavior_number`, `target_item_numbers`: positions in
metadata["behaviors"] and items.json), which the collator gathers from (`RowNumbers`).

Typical use:
    from gamer_hf.data import prepare, GamerCollator
    data = prepare("events.csv.gz", behaviors="click:0,cart:1,buy:2", protocol="session", out="prepared/")
    collator = GamerCollator(tokenizer, max_history=50)
"""

from .behaviors import PRESETS, BehaviorTable
from .collator import GamerCollator, RowNumbers
from .events import EventLog, RawEvents, validate_events
from .formats import FORMATS, detect_format, read_events
from .gamer_json import read_gamer_json
from .prepare import PreparedData, format_summary, load_prepared, prepare
from .report import DataValidationError, DropRecord, DropReport
from .sessions import session_ranks
from .synthetic import SYNTHETIC_BEHAVIORS, generate_synthetic, write_synthetic, write_synthetic_log, write_taobao_shaped

__all__ = [
    "BehaviorTable",
    "DataValidationError",
    "DropRecord",
    "DropReport",
    "EventLog",
    "FORMATS",
    "GamerCollator",
    "RowNumbers",
    "PRESETS",
    "PreparedData",
    "RawEvents",
    "SYNTHETIC_BEHAVIORS",
    "detect_format",
    "format_summary",
    "generate_synthetic",
    "load_prepared",
    "prepare",
    "read_events",
    "read_gamer_json",
    "session_ranks",
    "validate_events",
    "write_synthetic",
    "write_synthetic_log",
    "write_taobao_shaped",
]
