"""Output formats shared by commands, as Enums so that ``--help`` lists the choices."""

from __future__ import annotations

from enum import StrEnum


class TableFormat(StrEnum):
    """A result as a rich table (for people) or JSON (for scripts)."""

    table = "table"
    json = "json"


def split_names(values: list[str] | None) -> tuple[str, ...] | None:
    """Names from a repeated and/or comma-separated option (None when none given)."""
    if not values:
        return None
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())
