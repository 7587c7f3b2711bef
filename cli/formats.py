"""Output formats shared by commands, as Enums so that ``--help`` lists the choices."""

from __future__ import annotations

from enum import StrEnum


class TableFormat(StrEnum):
    """A result as a rich table (for people) or JSON (for scripts)."""

    table = "table"
    json = "json"
