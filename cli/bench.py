"""``seqkit bench``: speed measured side by side against the peers, as ratios.

Every benchmark times our code and a peer on the same inputs in one run (median of several
repeats) and reports ``ratio = ours / peer``: below 1 is faster than the peer.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from seqkit.errors import ConfigError

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Benchmarks against peers (torch, torchaudio, plain PyTorch loops).",
    no_args_is_help=True,
)
console = Console()

_Format = Annotated[str, typer.Option("--format", help="table or json.")]
_Repeats = Annotated[
    int, typer.Option("--repeats", min=1, help="Timed repeats; the median is kept.")
]
_Device = Annotated[str, typer.Option("--device", help="cpu or cuda.")]


def _render(title: str, rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    if fmt != "table":
        raise typer.BadParameter(
            f"unknown format {fmt!r}: choose table or json", param_hint="--format"
        )
    table = Table(title=title)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        table.add_column(
            column, justify="right" if column.endswith(("ms", "ratio", "rtf")) else "left"
        )
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def _run(module: str, **kwargs: Any) -> list[dict[str, Any]]:
    return importlib.import_module(f"seqkit.bench.{module}").run(**kwargs)


@app.command(epilog="Example: seqkit bench losses --repeats 5")
def losses(repeats: _Repeats = 5, device: _Device = "cpu", fmt: _Format = "table") -> None:
    """Time CTC and transducer losses (forward + backward) against torch and torchaudio."""
    rows = _run("ctc_loss", repeats=repeats, device=device)
    rows += _run("transducer_loss", repeats=repeats, device=device)
    _render("Losses: ours vs peers (ratio = ours / peer)", rows, fmt)


@app.command(epilog="Example: seqkit bench train --data demo/prepared --steps 30")
def train(
    data: Annotated[
        Path, typer.Option("--data", help="A prepared synthesized corpus (make demo makes one).")
    ] = Path("demo/prepared"),
    steps: Annotated[int, typer.Option("--steps", min=1, help="Timed steps per side.")] = 30,
    fmt: _Format = "table",
) -> None:
    """Training throughput of the synth recipes: seqkit's trainer vs a plain PyTorch loop."""
    if not (data / "train.jsonl").exists():
        raise ConfigError(
            f"{data} is not a prepared corpus: run `make demo` (it makes demo/prepared) or "
            "`seqkit data synth corpus && seqkit data prepare corpus prepared`, then --data"
        )
    rows = _run("train", data_dir=data, steps=steps)
    _render(
        "Training: plain loop frames/s over seqkit's (ratio <= 1.10 = overhead <= 10%)", rows, fmt
    )


@app.command(
    epilog="Example: seqkit bench decode --ctc demo/run-ctc --transducer demo/run-transducer"
)
def decode(
    repeats: _Repeats = 3,
    ctc: Annotated[
        Path | None, typer.Option("--ctc", help="Trained CTC run (default: random weights).")
    ] = None,
    transducer: Annotated[
        Path | None,
        typer.Option("--transducer", help="Trained transducer run (default: random weights)."),
    ] = None,
    fmt: _Format = "table",
) -> None:
    """Real-time factor of greedy and beam search (K = 4, 8, 16) for CTC and transducer models."""
    rows = _run("decode", repeats=repeats, ctc_checkpoint=ctc, transducer_checkpoint=transducer)
    _render("Decoding: real-time factor on this CPU", rows, fmt)
