"""The package's exception hierarchy: every mistake a user can fix is a `GamerError`.

The CLI, the pipeline and the server catch `GamerError` and report its message in one line (the
CLI exits 2); anything else is a bug and keeps its traceback. Subclasses also derive from the
builtin a caller would have caught before (`ValueError`, `FileNotFoundError`), so existing
`except ValueError` code keeps working.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "CheckpointError",
    "ConfigurationError",
    "DataError",
    "GamerError",
    "HubError",
    "InputError",
    "OutputExistsError",
    "exit_on_user_error",
]


class GamerError(Exception):
    """A problem the user can fix; the message names the file, field or value and what to do."""


class DataError(GamerError, ValueError):
    """Input events or prepared data violate the contract (file, column, row, value named)."""


class CheckpointError(GamerError, ValueError):
    """A folder or repo is not a complete, verified GAMER checkpoint; the message names the file."""


class HubError(GamerError):
    """The Hub refused or could not be reached; the message names the endpoint and what to do."""


class ConfigurationError(GamerError, ValueError):
    """Arguments, a recipe or an output location are inconsistent (the field and value named)."""


class InputError(GamerError, ValueError):
    """A request (history, behavior, item, top_k, ...) cannot be answered as given."""


class OutputExistsError(ConfigurationError, FileExistsError):
    """The output location holds something this run must not replace (the path and the flag to pass named)."""


@contextmanager
def exit_on_user_error(program: str) -> Iterator[None]:
    """The body of a script's main: a `GamerError` becomes one line `PROGRAM: error: ...` on stderr and exit 2, as
    `gamer-hf` answers it; anything else keeps its traceback (a bug)."""
    try:
        yield
    except GamerError as error:
        print(f"{program}: error: {' '.join(str(error).split())}", file=sys.stderr)
        raise SystemExit(2) from None
