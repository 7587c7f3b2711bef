"""``seqkit evaluate``: phone error rate of a trained run on a prepared split."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import seqkit
from seqkit.cli.exits import USER_ERROR
from seqkit.cli.formats import TableFormat
from seqkit.cli.progress import err_console, rich_progress
from seqkit.cli.search import (
    BeamOpt,
    InsertionBonusOpt,
    LmOpt,
    LmWeightOpt,
    MaxSymbolsOpt,
    ModelArg,
    TransducerSearchOpt,
    check_search_flags,
)
from seqkit.data.splits import SPLITS
from seqkit.decoding.evaluate import EvalReport, write_report
from seqkit.decoding.recognize import DecodeOptions, TransducerSearch

# A split of a prepared directory (its <split>.jsonl manifest), as the library names them.
Split = StrEnum("Split", [(name.upper(), name) for name in SPLITS])  # type: ignore[misc]


console = Console(soft_wrap=True)


def _tables(report: EvalReport, split: str) -> None:
    summary = Table(title=f"Phone error rate on {split} ({len(report.utterances)} utterances)")
    for column in ("PER 39", "PER 61", "sub", "del", "ins", "ref phones", "utt/s"):
        summary.add_column(column, justify="right")
    summary.add_row(
        f"{100 * report.per:.2f}%",
        "-" if report.per61 is None else f"{100 * report.per61:.2f}%",
        str(report.sub),
        str(report.dels),
        str(report.ins),
        str(report.ref_phones),
        f"{report.utterances_per_second:.1f}",
    )
    console.print(summary)
    phones = Table(title="Per-phone error rate (S + D) / N, worst first (39 phones)")
    for column, justify in (("phone", "left"), ("N", "right"), ("errors", "right"),
                            ("rate", "right")):
        phones.add_column(column, justify=justify)
    worst = sorted(report.per_phone.items(), key=lambda item: -item[1]["rate"])
    for phone, row in worst[:15]:
        phones.add_row(phone, str(int(row["ref"])), str(int(row["errors"])),
                       f"{100 * row['rate']:.1f}%")
    console.print(phones)
    if report.confusions:
        confusions = Table(title="Top confusions (reference → hypothesis)")
        confusions.add_column("reference")
        confusions.add_column("hypothesis")
        confusions.add_column("count", justify="right")
        for ref, hyp, count in report.confusions:
            confusions.add_row(ref, hyp, str(count))
        console.print(confusions)


def evaluate_command(
    model: ModelArg,
    data: Annotated[
        Path,
        typer.Option("--data", help="Prepared directory (seqkit data prepare).",
                     rich_help_panel="Data"),
    ],
    split: Annotated[
        Split, typer.Option("--split", help="Which manifest to score.", rich_help_panel="Data")
    ] = Split.TEST,
    beam: BeamOpt = 1,
    lm: LmOpt = None,
    lm_weight: LmWeightOpt = None,
    insertion_bonus: InsertionBonusOpt = 0.0,
    transducer_search: TransducerSearchOpt = TransducerSearch.AUTO,
    max_symbols: MaxSymbolsOpt = DecodeOptions.max_symbols_per_frame,
    report_dir: Annotated[
        Path | None,
        typer.Option("--report", help="Write report.json, alignments.txt and confusion.png here.",
                     rich_help_panel="Output"),
    ] = None,
    fmt: Annotated[
        TableFormat,
        typer.Option("--format", help="table (rich tables) or json (the report on stdout).",
                     rich_help_panel="Output"),
    ] = TableFormat.table,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Utterances per model call.",
                          rich_help_panel="Runtime"),
    ] = 8,
) -> None:
    """Measure phone error rate the TIMIT way: 61 → 39 folding, S/D/I, per-phone rates.

    Decodes every utterance of the split, folds reference and hypothesis to 39 phones and
    prints PER (and 61-phone PER for a 61-phone model), error counts, the worst phones and the
    top confusions. --format json prints the whole report (per_pct, per61_pct, sub, del,
    ins, ref_phones, utterances) for scripts.
    """
    recognizer = seqkit.load(model)
    check_search_flags(beam=beam, lm=lm, lm_weight=lm_weight, max_symbols=max_symbols)
    with rich_progress(transient=True) as progress:
        report = recognizer.evaluate(
            data, split.value, beam, lm, lm_weight=lm_weight, insertion_bonus=insertion_bonus,
            transducer_search=transducer_search.value, max_symbols_per_frame=max_symbols,
            batch_size=batch_size, progress=progress)
    for name, message in report.failures:
        err_console.print(
            f"[bold red]error:[/bold red] {escape(name)}: {escape(message)}",
            highlight=False,
            soft_wrap=True,
        )
    if report_dir is not None:
        paths = write_report(report, report_dir)
        err_console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    if fmt == TableFormat.json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _tables(report, split.value)
    err_console.print(
        f"{len(report.utterances)} utterances in {report.elapsed:.2f} s: "
        f"{report.utterances_per_second:.1f} utterances/s"
    )
    if report.failures:
        raise typer.Exit(USER_ERROR)


def register(app: typer.Typer) -> None:
    """Add ``seqkit evaluate`` to the root app."""
    app.command(
        "evaluate",
        epilog="Example: seqkit evaluate runs/ctc_synth --data prepared --split test --beam 8 "
        "--report reports/ctc_synth",
    )(evaluate_command)
