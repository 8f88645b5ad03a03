"""Training recipes installed with the package, so that `--config quickstart` works from any folder.

A recipe holds settings only, no folders: `--data`, `--tokenizer` and `--output_dir` come from the
command line, and everything a run writes (model, checkpoints, logs) goes under `--output_dir`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["RECIPES_DIR", "recipe_names", "resolve_recipe"]

RECIPES_DIR = Path(__file__).parent


def recipe_names() -> list[str]:
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


def resolve_recipe(config: str | Path) -> Path:
    """A recipe file: `config` itself when it is a file, else the installed recipe of that name."""
    path = Path(config)
    if path.is_file():
        return path
    installed = RECIPES_DIR / f"{path.name}.yaml"
    if path.name == str(config) and not path.suffix and installed.is_file():
        return installed
    raise ConfigurationError(
        f"recipe file not found: {config}; give a YAML file or one of the installed recipes {recipe_names()}"
    )
