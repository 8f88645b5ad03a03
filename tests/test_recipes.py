"""gamer_hf.recipes: the installed recipes, named by `--config NAME` from any folder; a path still works."""

from __future__ import annotations

from pathlib import Path

import pytest

from gamer_hf.errors import ConfigurationError
from gamer_hf.recipes import RECIPES_DIR, recipe_names, resolve_recipe

REPO = Path(__file__).resolve().parents[1]


def test_the_recipes_are_inside_the_package_only() -> None:
    assert {"quickstart", "paper_reference", "retailrocket", "retail_beh", "taobao"} <= set(recipe_names())
    assert RECIPES_DIR.parent.name == "gamer_hf"
    assert not list((REPO / "recipes").glob("*.yaml"))  # one copy in the tree


def test_a_name_resolves_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_recipe("quickstart") == RECIPES_DIR / "quickstart.yaml"


def test_a_path_wins_over_an_installed_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").write_text("preset: tiny\n")
    assert resolve_recipe("quickstart") == Path("quickstart")
    assert resolve_recipe(str(tmp_path / "quickstart")) == tmp_path / "quickstart"


@pytest.mark.parametrize("config", ["no-such-recipe", "quickstart.yml", "elsewhere/quickstart"])
def test_an_unknown_recipe_names_the_installed_ones(config: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=rf"recipe file not found: {config}; .*'quickstart'"):
        resolve_recipe(config)
