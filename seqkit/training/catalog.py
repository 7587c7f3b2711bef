"""Built-in recipes and how a recipe argument is resolved.

The recipes ship inside the wheel as package data of ``seqkit.recipes`` (the repo's top-level
``recipes/``), so ``seqkit train synth/ctc_blstm`` works from any folder. A recipe argument is a
TOML file's path or a built-in name (``synth/ctc_blstm``); a path that exists always wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from seqkit.errors import ConfigError

_PACKAGE = "seqkit.recipes"


@dataclass(frozen=True)
class BuiltinRecipe:
    """A recipe shipped with seqkit."""

    name: str  # dataset/model, e.g. "synth/ctc_blstm"
    purpose: str  # the first sentence of the TOML's opening comment
    resource: Traversable  # the TOML file inside the installed package


def builtin_recipes() -> list[BuiltinRecipe]:
    """Every built-in recipe, sorted by name."""
    found = []
    for folder in files(_PACKAGE).iterdir():
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            if item.name.endswith(".toml"):
                found.append(BuiltinRecipe(f"{folder.name}/{item.name[:-5]}",
                                           _purpose(item.read_text(encoding="utf-8")), item))
    return sorted(found, key=lambda recipe: recipe.name)


def _purpose(text: str) -> str:
    """The first sentence of the TOML's opening comment block."""
    words = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    sentence, dot, _ = " ".join(words).partition(". ")
    return sentence + dot.strip()


def resolve_recipe(spec: str | os.PathLike[str]) -> Traversable:
    """The recipe file a command-line argument names.

    Args:
        spec: a path to a TOML file, or a built-in name such as ``synth/ctc_blstm``
            (``.toml`` optional).

    Raises:
        ConfigError: neither a file nor a built-in name; the message lists the built-in names.
    """
    path = os.fspath(spec)
    if os.path.isfile(path):
        return Path(path)
    name = path.removesuffix(".toml")
    recipes = builtin_recipes()
    for recipe in recipes:
        if recipe.name == name:
            return recipe.resource
    raise ConfigError(
        f"recipe {path} not found: give a TOML file or a built-in name "
        f"({', '.join(r.name for r in recipes)}; `seqkit recipes` says what each trains)"
    )
