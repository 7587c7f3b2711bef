"""Rich progress bars for library functions that report ``progress(description, done, total)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
def rich_progress(
    transient: bool = False,
    *,
    status: Callable[[], str] | None = None,
    disable: bool = False,
) -> Iterator[ProgressFn]:
    """Yield a ``progress(description, done, total)`` callback drawing one bar per description.

    Args:
        transient: remove the bars when done.
        status: called at every update for a short text drawn beside the bar (e.g. the latest
            training loss and throughput).
        disable: draw nothing (e.g. in every distributed worker but rank 0).
    """
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if status is not None:
        columns.append(TextColumn("{task.fields[status]}"))
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=transient, disable=disable) as bar:
        tasks: dict[str, TaskID] = {}

        def update(description: str, done: int, total: int) -> None:
            fields = {"status": status()} if status is not None else {}
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total, **fields)
            bar.update(tasks[description], completed=done, total=total, **fields)

        yield update
