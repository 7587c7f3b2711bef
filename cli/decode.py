"""``seqkit decode``: audio files in, phone sequences with timings out."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.markup import escape

from seqkit.atomic import write_atomic
from seqkit.cli.progress import err_console, rich_progress
from seqkit.cli.search import (
    BeamOpt,
    InsertionBonusOpt,
    LmOpt,
    LmWeightOpt,
    ModelArg,
    TransducerSearchOpt,
    load_acoustic_model,
    search_options,
)
from seqkit.data.phones import fold_phones
from seqkit.decoding.plots import plot_alignment
from seqkit.decoding.recognize import (
    Hypothesis,
    audio_files,
    recognize_files,
)
from seqkit.errors import ConfigError

FORMATS = ("text", "json", "ctm")
USER_ERROR = 2

console = Console(soft_wrap=True)


def _phones(hypothesis: Hypothesis, fold: int | None) -> list[tuple[str, float, float, float]]:
    """(phone, start, end, score) rows, folded to ``fold`` phones when asked.

    Folding drops ``q`` (its span goes to the phone before it) and merges runs of ``sil`` into
    one segment (as scoring does), keeping the best score of the run.
    """
    rows: list[tuple[str, float, float, float]] = []
    pending: float | None = None  # start of a leading q, given to the first kept phone
    for seg in hypothesis.segments:
        if fold is None:
            rows.append((seg.phone, seg.start, seg.end, seg.score))
            continue
        folded = fold_phones([seg.phone], to=fold)
        if rows and (not folded or folded[0] == rows[-1][0] == "sil"):
            phone, start, _, score = rows[-1]
            rows[-1] = (phone, start, seg.end, max(score, seg.score) if folded else score)
        elif folded:
            start = seg.start if pending is None else pending
            rows.append((folded[0], start, seg.end, seg.score))
        elif pending is None:
            pending = seg.start
    return rows


def _render(hypotheses: list[Hypothesis], fmt: str, fold: int | None) -> str:
    if fmt == "json":
        items = [
            {
                "file": h.name,
                "duration": round(h.duration, 4),
                "score": h.score,
                "phones": [
                    {"phone": p, "start": round(s, 4), "end": round(e, 4), "score": round(c, 4)}
                    for p, s, e, c in _phones(h, fold)
                ],
            }
            for h in hypotheses
        ]
        return json.dumps(items, indent=2)
    lines = []
    for h in hypotheses:
        rows = _phones(h, fold)
        if fmt == "text":
            lines.append(f"{Path(h.name).name} {' '.join(p for p, _, _, _ in rows)}".rstrip())
        else:  # ctm: <file> <channel> <start> <duration> <symbol> <confidence>
            stem = Path(h.name).stem
            lines.extend(f"{stem} 1 {s:.3f} {e - s:.3f} {p} {c:.4f}" for p, s, e, c in rows)
    return "\n".join(lines)


def decode(
    model: ModelArg,
    audio: Annotated[
        list[Path],
        typer.Argument(help="Audio files (any format soundfile reads) or directories."),
    ],
    recursive: Annotated[
        bool,
        typer.Option("--recursive", "-r", help="Also decode files in subdirectories.",
                     rich_help_panel="Input"),
    ] = False,
    beam: BeamOpt = 1,
    lm: LmOpt = None,
    lm_weight: LmWeightOpt = None,
    insertion_bonus: InsertionBonusOpt = 0.0,
    transducer_search: TransducerSearchOpt = "auto",
    fold: Annotated[
        int | None,
        typer.Option("--fold", help="Print phones folded to 48 or 39 symbols.",
                     rich_help_panel="Output"),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="text (file and phones), json (timings, scores) or ctm.",
                     rich_help_panel="Output"),
    ] = "text",
    align: Annotated[
        bool,
        typer.Option("--align", help="Write an alignment PNG per file into --out.",
                     rich_help_panel="Output"),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the output file (decode.<format>) and the "
                     "alignment PNGs; default: results to stdout, PNGs in the current folder.",
                     rich_help_panel="Output"),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Files per model call.",
                          rich_help_panel="Runtime"),
    ] = 8,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed (decoding is deterministic on CPU).",
                          rich_help_panel="Runtime"),
    ] = 0,
) -> None:
    """Decode audio files into phone sequences with start/end times and posterior scores.

    Greedy by default; --beam K runs CTC prefix beam search (optionally with a phone n-gram LM)
    or the transducer beam search. Files that cannot be read are reported one line each and the
    others are still decoded; the exit code is 2 if any failed. The real-time factor is printed
    at the end (on stderr, so stdout stays clean for results).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fold not in (None, 39, 48, 61):
        raise ConfigError(f"cannot fold to {fold} phones: choose 39 or 48")
    random.seed(seed)
    torch.manual_seed(seed)
    loaded = load_acoustic_model(model)
    options = search_options(
        loaded,
        beam=beam,
        lm=lm,
        lm_weight=lm_weight,
        insertion_bonus=insertion_bonus,
        transducer_search=transducer_search,
        batch_size=batch_size,
    )
    if options.lm is not None and loaded.kind != "ctc":
        raise ConfigError("--lm is used by CTC beam search only: drop it for a transducer model")
    files = audio_files(audio, recursive=recursive)
    if not files:
        raise ConfigError(
            "no audio files found: pass files, or a directory with audio (add --recursive "
            "for subdirectories)"
        )
    with rich_progress(transient=True) as progress:
        result = recognize_files(
            loaded, files, options=options, keep_features=align, progress=progress
        )
    for _name, message in result.failures:
        err_console.print(
            f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True
        )
    text = _render(result.hypotheses, fmt, fold)
    if out is not None:
        target = out / f"decode.{'txt' if fmt == 'text' else fmt}"
        write_atomic(target, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
        err_console.print(f"wrote {target}", soft_wrap=True)
    elif text:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    if align:
        folder = out if out is not None else Path.cwd()
        for h in result.hypotheses:
            png = plot_alignment(h, folder / f"{Path(h.name).stem}.align.png")
            err_console.print(f"wrote {png}", soft_wrap=True)
    err_console.print(
        f"decoded {len(result.hypotheses)} file(s), {result.audio_seconds:.1f} s of audio in "
        f"{result.elapsed:.2f} s: RTF {result.rtf:.4f}"
        + (f"; [bold red]{len(result.failures)} failed[/bold red]" if result.failures else "")
    )
    if result.failures:
        raise typer.Exit(USER_ERROR)


def register(app: typer.Typer) -> None:
    """Add ``seqkit decode`` to the root app."""
    app.command(
        "decode",
        epilog="Example: seqkit decode runs/ctc_synth recordings/ --recursive --beam 8 "
        "--format json --align --out decoded/",
    )(decode)
