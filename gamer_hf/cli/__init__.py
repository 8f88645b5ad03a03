"""The `gamer-hf` command line: one subcommand per step, each an argument dataclass plus a run()
that calls one library function and prints its result.

Every subcommand accepts `--config recipe.yaml` (or an installed recipe's name: `--config quickstart`); flags given on the command line override the
recipe's values, so a recipe can be shared and tweaked without editing it.

Error policy (one place, every command): a mistake the user can fix -- any `GamerError`, a
`ValueError` from an argument check, a missing or unwritable file, an HTTP or connection error
from the Hub -- prints one line `gamer-hf COMMAND: error: ...` naming the problem and exits 2;
the library writes its outputs atomically, so nothing half-written is left. `--debug` (anywhere
on the command line) shows the traceback instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from typing import Any, Callable

import yaml
from huggingface_hub.errors import HTTPError as HubHTTPError
from transformers import HfArgumentParser

from gamer_hf_entry import COMMANDS, DEBUG_FLAG, answer_without_command

from ..errors import ConfigurationError, GamerError
from ..recipes import resolve_recipe

__all__ = ["main", "COMMANDS", "USER_ERRORS", "parse_command_args"]

# What a user's mistake raises, as opposed to a bug. OSError covers only the file errors a wrong
# path gives; the Hub's HTTP errors (a refused token, an unreachable endpoint) come from outside.
USER_ERRORS: tuple[type[BaseException], ...] = (
    GamerError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
    PermissionError, HubHTTPError,
)
# COMMANDS (subcommand -> module, argument dataclass, help) lives in gamer_hf_entry, the console
# script, which answers `gamer-hf --help` without importing this package (and torch).


def _load(command: str) -> tuple[type, Callable[[Any], Any]]:
    module_name, class_name, _ = COMMANDS[command]
    module = importlib.import_module(module_name)
    return getattr(module, class_name), module.run


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append "(default: X)" only where it tells something: not when the help already states its
    default, not for None (the help says what leaving it out means), not for a `--no_X` switch."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is None or isinstance(action, argparse._StoreFalseAction):
            return text
        return super()._get_help_string(action)


def _describe_negations(parser: argparse.ArgumentParser) -> None:
    """HfArgumentParser gives each `--no_X` switch the help of `--X`, which then reads backwards."""
    for action in parser._actions:
        if isinstance(action, argparse._StoreFalseAction) and action.option_strings[0].startswith("--no_"):
            action.help = f"turn --{action.dest} off (the same as --{action.dest} false)"


def parse_command_args(dataclass_type: type, argv: list[str]) -> Any:
    """Parse argv for one subcommand: values from `--config FILE` first, then explicit flags."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(dataclass_type, formatter_class=HelpFormatter)
    _describe_negations(parser)
    defaults: dict[str, Any] = {}
    if known.config is not None:
        known.config = resolve_recipe(known.config)  # a file, or an installed recipe's name
        try:
            loaded = yaml.safe_load(known.config.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigurationError(f"recipe {known.config} is not valid YAML: {' '.join(str(error).split())}") from None
        if not isinstance(loaded, dict):
            raise ConfigurationError(f"recipe {known.config} must be a mapping of argument: value")
        fields = {f.name for f in dataclasses.fields(dataclass_type)}
        unknown = sorted(set(loaded) - fields)
        if unknown:
            raise ConfigurationError(
                f"recipe {known.config} has unknown keys {unknown}; valid keys: {sorted(fields)}"
            )
        defaults = loaded
    parser.set_defaults(**defaults)
    # Required fields supplied by the recipe must not be demanded again on the command line.
    for action in parser._actions:
        if action.dest in defaults:
            action.required = False
    (args,) = parser.parse_args_into_dataclasses(args=rest, look_for_args_file=False)
    return args


def _one_line(error: BaseException) -> str:
    """The error's message on one line (HTTP errors and YAML errors span several)."""
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and not isinstance(error, HubHTTPError) and error.filename is not None \
            and error.strerror:
        text = f"{error.strerror}: {error.filename}"
    return text or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    code = answer_without_command(argv)
    if code is not None:
        return code
    command, rest = argv[0], argv[1:]
    dataclass_type, run = _load(command)
    try:
        result = run(parse_command_args(dataclass_type, rest))
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"gamer-hf {command}: error: {_one_line(error)} (--debug shows the traceback)", file=sys.stderr)
        return 2
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
