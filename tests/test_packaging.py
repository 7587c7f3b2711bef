"""Packaging: the wheel's package list covers the tree; recipes resolve by path or built-in name."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqkit.cli.main import app
from seqkit.errors import ConfigError
from seqkit.training.catalog import builtin_recipes, resolve_recipe
from seqkit.training.config import load_recipe

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_pyproject_lists_every_package_of_the_tree() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    expected = {
        ".".join((package, *init.parent.relative_to(ROOT / folder).parts))
        for package, folder in config["package-dir"].items()
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert set(config["packages"]) == expected


def test_builtin_recipes_are_every_shipped_toml_with_a_purpose() -> None:
    recipes = builtin_recipes()
    shipped = sorted(f"{p.parent.name}/{p.stem}" for p in (ROOT / "recipes").glob("*/*.toml"))
    assert [r.name for r in recipes] == shipped
    assert all(r.purpose.endswith(".") and len(r.purpose) > 20 for r in recipes)


def test_a_recipe_is_a_path_or_a_builtin_name(tmp_path: Path) -> None:
    by_name = load_recipe("synth/ctc_blstm")
    assert load_recipe("synth/ctc_blstm.toml") == by_name
    assert load_recipe(ROOT / "recipes" / "synth" / "ctc_blstm.toml") == by_name
    local = tmp_path / "synth" / "ctc_blstm"  # a file that exists wins over the built-in name
    local.parent.mkdir()
    local.write_text("[model]\nkind = \"lm\"\n")
    assert load_recipe(local).model.kind == "lm"


def test_an_unknown_recipe_lists_the_builtin_names() -> None:
    with pytest.raises(ConfigError, match=r"recipe synth/ctc not found: .*synth/ctc_blstm, "):
        resolve_recipe("synth/ctc")


def test_recipes_command_lists_names_and_purposes() -> None:
    result = runner.invoke(app, ["recipes", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {"synth/ctc_blstm", "synth/transducer", "timit/ctc_blstm"} <= {r["name"] for r in rows}
    assert all(Path(r["file"]).is_file() for r in rows)
    table = runner.invoke(app, ["recipes"], terminal_width=200)
    assert "synth/transducer" in table.output and "RNN transducer" in table.output
