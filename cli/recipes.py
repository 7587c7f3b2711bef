"""``seqkit recipes``: the built-in recipes, by name, with what each one trains."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from seqkit.cli.formats import TableFormat
from seqkit.training.catalog import builtin_recipes


def recipes_command(
    output_format: Annotated[
        TableFormat, typer.Option("--format", help="Print a table or JSON.")
    ] = TableFormat.table,
) -> None:
    """List the built-in recipes: pass a name to `seqkit train` instead of a TOML path.

    Copy one out (`seqkit recipes --format json` gives each file's location) to change it.
    """
    rows = [{"name": r.name, "purpose": r.purpose, "file": str(r.resource)}
            for r in builtin_recipes()]
    if output_format is TableFormat.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="built-in recipes (seqkit train NAME --data ... --out ...)")
    table.add_column("name")
    table.add_column("what it trains")
    for row in rows:
        table.add_row(row["name"], row["purpose"])
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``recipes`` command to the root app."""
    app.command("recipes", epilog="Example: seqkit recipes --format json")(recipes_command)
