"""Every subcommand's help tells the truth: one default per option, none that is just None, and
`--no_X` switches that say they turn X off."""

from __future__ import annotations

import re

import pytest

from gamer_hf.cli import COMMANDS, main


def _options(text: str) -> dict[str, str]:
    """Option name -> its help text on one line, from an argparse help page."""
    blocks: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        match = re.match(r"^  (--[\w-]+)", line)
        if match:
            name = match.group(1)
            blocks[name] = line
        elif name and line.startswith("   "):
            blocks[name] += " " + line.strip()
        else:
            name = None
    return {key: " ".join(value.split()) for key, value in blocks.items()}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_has_no_duplicated_or_contradictory_defaults(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    options = _options(capsys.readouterr().out)
    assert options
    for name, text in options.items():
        assert text.count("(default") <= 1, (name, text)
        assert "(default: None)" not in text, (name, text)
        if name.startswith("--no_"):
            positive = name.replace("--no_", "--", 1)
            assert f"turn {positive} off" in text and "(default" not in text, (name, text)
