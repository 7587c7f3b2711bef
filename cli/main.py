"""The ``seqkit`` command: wires the command groups together and turns errors into exit codes.

Each command group lives in its own module and owns its ``typer.Typer()``; this file only adds
them. A :class:`seqkit.errors.SeqkitError` raised anywhere below becomes one red line on stderr
and exit code 2 (a traceback with ``--debug``).
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

import seqkit
from seqkit.cli import bench, data, decode, demo, evaluate, export, recipes, train
from seqkit.cli.exits import USER_ERROR
from seqkit.cli.progress import err_console
from seqkit.errors import SeqkitError


class _SeqkitGroup(TyperGroup):
    """Top-level group that reports user errors as one line instead of a traceback."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning  # one line each, not file:line + source
                return super().invoke(ctx)
        except SeqkitError as err:
            if (ctx.obj or {}).get("debug"):
                raise
            err_console.print(
                f"[bold red]error:[/bold red] {escape(str(err))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(USER_ERROR) from None


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """A library warning (truncated audio, a fallback) as one yellow line on stderr."""
    err_console.print(f"[bold yellow]warning:[/bold yellow] {escape(str(message))}",
                      highlight=False, soft_wrap=True)


app = typer.Typer(
    cls=_SeqkitGroup,
    rich_markup_mode="markdown",
    name="seqkit",
    help="Train, decode and evaluate (B)LSTM-CTC and RNN-transducer phoneme recognizers.",
    epilog="Example: seqkit data synth corpus && seqkit data prepare corpus prepared",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seqkit {seqkit.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    ctx.obj = {"debug": debug}


app.add_typer(data.app, name="data")
train.register(app)
recipes.register(app)
decode.register(app)
evaluate.register(app)
export.register(app)
app.add_typer(bench.app, name="bench")
demo.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
