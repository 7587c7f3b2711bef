"""``seqkit export``: a trained model as one TorchScript file that needs torch only."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from seqkit.cli.progress import err_console
from seqkit.cli.search import ModelArg
from seqkit.decoding.export import export_model
from seqkit.errors import OutputExistsError
from seqkit.recognizer import read_model

console = Console(soft_wrap=True)


class SummaryFormat(StrEnum):
    """How the summary of the written file is printed."""

    TEXT = "text"
    JSON = "json"


def export(
    model: ModelArg,
    out: Annotated[Path, typer.Argument(help="TorchScript file to write, e.g. model.ts.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing OUT.", rich_help_panel="Runtime"),
    ] = False,
    fmt: Annotated[
        SummaryFormat,
        typer.Option("--format", help="Print the summary as text or JSON.",
                     rich_help_panel="Output"),
    ] = SummaryFormat.TEXT,
) -> None:
    """Write a CTC or transducer model as one self-contained TorchScript file.

    The file holds the whole recognizer: feature extraction, normalization, the model and greedy
    search. Load it with torch alone (no seqkit, no torchaudio) and call it on a 1-D float32
    tensor of 16 kHz mono samples in [-1, 1]; it returns the phones as a list of strings, the
    same as `seqkit decode RUN FILE`:

        recognizer = torch.jit.load("model.ts"); phones = recognizer(wave)

    The file also carries the checkpoint, so seqkit decode, seqkit evaluate and seqkit.load
    read it as they read the run (timings, beam search, LM).
    """
    if out.exists() and not force:  # before loading the model; checked again under the lock
        raise OutputExistsError(f"{out} exists: pass --force to replace it, or choose another OUT")
    loaded = read_model(model)
    path = export_model(loaded, out, force=force)
    summary = {
        "path": str(path),
        "kind": loaded.kind,
        "bidirectional": loaded.config.encoder.bidirectional,
        "phones": len(loaded.vocab) - 1,
        "bytes": path.stat().st_size,
    }
    if fmt == SummaryFormat.JSON:
        console.print(json.dumps(summary, indent=2), markup=False, highlight=False)
        return
    direction = "bidirectional" if summary["bidirectional"] else "unidirectional"
    err_console.print(
        f"wrote {path} ({summary['bytes'] / 1e6:.1f} MB): {direction} {loaded.kind} model, "
        f"{summary['phones']} phones; load it with torch.jit.load({str(path)!r})",
        highlight=False, soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``seqkit export`` to the root app."""
    app.command(
        "export",
        epilog="Example: seqkit export runs/ctc_stream model.ts && python -c \"import torch, "
        "soundfile; w, _ = soundfile.read('a.wav', dtype='float32'); "
        "print(torch.jit.load('model.ts')(torch.from_numpy(w)))\"",
    )(export)
