"""Every bench command written in RESULTS.md and README.md parses with its script's current flags, so a renamed
flag cannot leave a recorded run that nobody can repeat as written. Parsing only: nothing runs."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "recipes" / "bench"
DOCUMENTS = [BENCH / "RESULTS.md", ROOT / "README.md"]
SCRIPTS = {path.name for path in BENCH.glob("*.py")}
SCRIPT = re.compile(r"(?:.*/)?([a-z_0-9]+\.py)")
PYTHON = re.compile(r"(?:.*/)?python3?")
OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", "<", ">", ">>"}
ELIDED = "..."  # "and the flags as above"
PLACEHOLDER = re.compile(r"<[^<>]*>")  # `--models <rules>`: values the text names instead of writing
INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")  # a code span, which may wrap within its paragraph


@dataclass(frozen=True)
class Command:
    """One run of a bench script as a document writes it: where, which script, and its arguments."""

    where: str
    script: str
    argv: tuple[str, ...]
    elided: str | None = None  # the option whose values an elision stands for


def _simple_commands(shell: str) -> list[list[str]]:
    """The shell line's simple commands (split at `&&`, `;`, pipes), comments and quoting handled as bash does."""
    lexer = shlex.shlex(shell, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in OPERATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def _argv(tokens: list[str]) -> tuple[tuple[str, ...], str | None]:
    """The arguments up to an elision, and the option just before it, whose values it stands for (parsed apart:
    its values are unknown)."""
    if ELIDED not in tokens:
        return tuple(tokens), None
    tokens = tokens[:tokens.index(ELIDED)]
    if tokens and tokens[-1].startswith("--"):
        return tuple(tokens[:-1]), tokens[-1]
    return tuple(tokens), None


def commands_in(text: str, name: str) -> list[Command]:
    """Bench commands in markdown: lines of code blocks (indented or fenced, `\\` continuations joined) and code
    spans. In a code span a script named bare is a command only when run by python or given arguments (else it
    is a file named in prose)."""
    found: list[Command] = []
    lines = text.split("\n")
    fenced, number = False, 0
    while number < len(lines):
        start, line = number, lines[number]
        number += 1
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or line.startswith("    ")) or "`" in line:
            continue
        while line.endswith("\\") and number < len(lines):
            line, number = line[:-1] + " " + lines[number].strip(), number + 1
        found += _commands(line, f"{name}:{start + 1}", inline=False)
    for span in INLINE.finditer(text):
        found += _commands(span.group(1).replace("\n", " "), f"{name}:{text.count(chr(10), 0, span.start()) + 1}",
                           inline=True)
    return found


def _commands(shell: str, where: str, inline: bool) -> list[Command]:
    found = []
    try:
        simple = _simple_commands(PLACEHOLDER.sub(f" {ELIDED} ", shell))
    except ValueError:  # unbalanced quotes: prose, not a command
        return []
    for tokens in simple:
        for at, token in enumerate(tokens):
            match = SCRIPT.fullmatch(token)
            if match and match.group(1) in SCRIPTS and (token.endswith(f"recipes/bench/{match.group(1)}")
                                                       or token == match.group(1)):
                run = at > 0 and PYTHON.fullmatch(tokens[at - 1]) is not None
                if not inline or run or at + 1 < len(tokens):
                    found.append(Command(where, match.group(1), *_argv(tokens[at + 1:])))
                break
    return found


DOCUMENTED = [command for path in DOCUMENTS for command in commands_in(path.read_text(encoding="utf-8"), path.name)]


@pytest.mark.parametrize("command", DOCUMENTED, ids=[f"{c.where}:{c.script}" for c in DOCUMENTED])
def test_the_command_parses_with_the_scripts_current_flags(bench_script, monkeypatch, capsys, command):
    monkeypatch.setenv("GAMER_HF_DATA_DIR", "/data")  # the documented runs set it; parsing does not read it
    script = bench_script(command.script)
    try:
        script.parse_args(list(command.argv))
    except SystemExit:
        pytest.fail(f"{command.where}: `{command.script} {shlex.join(command.argv)}` does not parse today: "
                    f"{capsys.readouterr().err.strip().splitlines()[-1].split('error: ', 1)[-1]}")
    if command.elided:
        with pytest.raises(SystemExit):
            script.parse_args(["--help"])
        assert re.search(rf"(?<![\w-]){re.escape(command.elided)}(?![\w-])", capsys.readouterr().out), (
            f"{command.where}: {command.script} has no option {command.elided} today")


SAMPLE = """Prose naming `recipes/bench/speed.py` and `quality.py` is no command.

    OMP_NUM_THREADS=1 nice -n 10 /work/wt/_bench python recipes/bench/speed.py --sections packing \\
        --pack-batch 64   # a comment
    cp -a A B && python recipes/bench/quality.py --datasets retailrocket_cml --models ...   # same models

Inline: `train_stream.py --prepared A B --work W
--baseline-commit main`, `nice python recipes/bench/cli_startup.py` and `quality.py --seeds 0 --models <rules>
SASRec`.

```bash
python recipes/bench/rerank_speed.py --fits
```
"""


def test_the_commands_are_found_in_every_form_the_documents_write_them():
    assert commands_in(SAMPLE, "sample") == [
        Command("sample:3", "speed.py", ("--sections", "packing", "--pack-batch", "64")),
        Command("sample:5", "quality.py", ("--datasets", "retailrocket_cml"), elided="--models"),
        Command("sample:12", "rerank_speed.py", ("--fits",)),
        Command("sample:7", "train_stream.py", ("--prepared", "A", "B", "--work", "W", "--baseline-commit", "main")),
        Command("sample:8", "cli_startup.py", ()),
        Command("sample:8", "quality.py", ("--seeds", "0"), elided="--models"),
    ]


@pytest.mark.parametrize("argv", [["--prepared", "A", "--baseline-src", "SRC"],  # the flag's name before the rename
                                  ["--prepared", "A", "--repeats", "two"]])
def test_a_stale_command_fails_to_parse(bench_script, argv):
    with pytest.raises(SystemExit):
        bench_script("train_stream.py").parse_args(argv)


def test_the_documents_hold_commands_of_most_scripts():
    assert len({command.script for command in DOCUMENTED}) >= 15
