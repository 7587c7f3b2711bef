"""``seqkit demo``: the whole main job on a CPU in minutes, ending with a results table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from seqkit.cli.exits import interrupted_exit_code
from seqkit.cli.formats import TableFormat, split_names
from seqkit.cli.progress import err_console, rich_progress
from seqkit.demo import DEFAULT_MINUTES, DemoModel, DemoOptions, DemoReport, run_demo
from seqkit.synth.corpus import DEFAULT_SENTENCES, DEFAULT_SPEAKERS, DEFAULT_VOICE_SPEAKERS
from seqkit.training.trainer import stop_signal_of

console = Console()


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _results_table(report: DemoReport) -> Table:
    table = Table(title=f"seqkit demo: {report.model} on unseen synthetic voices")
    table.add_column("measure")
    table.add_column("value", justify="right")
    training = report.training
    rows = [
        (f"PER (39 phones, test voices), {report.search}", _percent(report.per_pct)),
        ("PER (39 phones, test voices), greedy", _percent(report.per_greedy_pct)),
        ("PER (61 phones)", _percent(report.per61_pct)),
        ("PER (39 phones, dev voices, best epoch), greedy", _percent(training.best_dev_per_pct)),
        (
            "substitutions / deletions / insertions",
            f"{report.sub} / {report.dels} / {report.ins} of {report.ref_phones}",
        ),
        ("test utterances / speakers", f"{report.test_utterances} / {report.test_speakers}"),
        ("voice engines (train)", ", ".join(report.engines)),
        ("synthesis time", f"{report.synth_seconds / 60:.1f} min"
         if report.synth_seconds else "reused corpus"),
        ("training time", f"{training.train_seconds / 60:.1f} min, {training.epochs} epochs"),
        ("training throughput", f"{training.frames_per_s:.0f} frames/s"),
        ("decode real-time factor", f"{report.decode_rtf:.3f}"),
        ("training curves", report.paths.curves),
        ("confusion matrix", report.paths.confusion),
        ("alignment picture", report.paths.alignment),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def demo(
    out: Annotated[Path, typer.Option("--out", help="Directory for everything the demo makes.")] = (
        Path("demo")
    ),
    minutes: Annotated[
        float,
        typer.Option(
            "--minutes", help="Budget in minutes for synthesis and training: training gets what "
            "synthesis leaves, at least a quarter (early stopping may end sooner)."
        ),
    ] = DEFAULT_MINUTES,
    model: Annotated[DemoModel, typer.Option("--model", help="Recognizer to train.")] = (
        DemoModel.ctc
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed for corpus, training and sample.")] = 0,
    speakers: Annotated[
        int, typer.Option("--speakers", min=3, help="Corpus speakers (train/dev/test split).")
    ] = DEFAULT_SPEAKERS,
    sentences: Annotated[
        int, typer.Option("--sentences", min=1, help="Sentences per speaker.")
    ] = DEFAULT_SENTENCES,
    engines: Annotated[
        list[str] | None,
        typer.Option("--engines", help="Voice engines for the training voices (repeat or "
                     "comma-separate). Default: every engine installed here."),
    ] = None,
    voice_speakers: Annotated[
        int, typer.Option("--voice-speakers", min=0,
                          help="Training speakers made from each voice of people.")
    ] = DEFAULT_VOICE_SPEAKERS,
    fmt: Annotated[
        TableFormat, typer.Option("--format", help="Output format.")
    ] = TableFormat.table,
) -> None:
    """Synthesize a corpus, train a recognizer, evaluate it on unseen voices, decode a file.

    Everything lands in OUT: corpus, manifests, run, reports, pictures and report.json.

    Running it again reuses the corpus and resumes an interrupted training run.
    """
    options = DemoOptions(out=out, minutes=minutes, model=model, seed=seed, speakers=speakers,
                          sentences=sentences, engines=split_names(engines),
                          voice_speakers=voice_speakers)

    def stage(message: str) -> None:
        err_console.print(f"[bold cyan]›[/bold cyan] {message}", highlight=False)

    try:
        with rich_progress() as progress:
            report = run_demo(options, progress=progress, stage=stage)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: training wrote last.pt if it began
        err_console.print(f"interrupted: run the same `seqkit demo` again to continue in {out}",
                          highlight=False)
        raise typer.Exit(interrupted_exit_code(stop_signal_of(stop))) from None
    if fmt == TableFormat.json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    sample = report.sample
    console.print(f"\n[bold]unseen sentence[/bold] ({sample.speaker}): {sample.text}")
    console.print(f"[bold]reference [/bold] {' '.join(sample.reference)}")
    console.print(f"[bold]hypothesis[/bold] {' '.join(sample.hypothesis)}\n")
    console.print(_results_table(report))
    console.print(f"report: {report.paths.report}")


def register(app: typer.Typer) -> None:
    """Add ``seqkit demo`` to the root app."""
    app.command(
        "demo",
        epilog="Example: seqkit demo --out demo --minutes 13 (or simply: make demo)",
    )(demo)
