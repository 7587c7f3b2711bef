"""Rich progress bars for library functions that report ``progress(description, done, total)``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from seqkit.progress import ProgressFn

# Progress and status go to stderr so that stdout stays clean for results (tables, JSON).
err_console = Console(stderr=True)


@contextmanager
def rich_progress(transient: bool = False) -> Iterator[ProgressFn]:
    """Yield a ``progress(description, done, total)`` callback drawing one bar per description."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=transient) as bar:
        tasks: dict[str, TaskID] = {}

        def update(description: str, done: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total)
            bar.update(tasks[description], completed=done, total=total)

        yield update
