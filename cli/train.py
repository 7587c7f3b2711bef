"""``seqkit train``: train a recipe on prepared corpora, on one process or N local workers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import seqkit
from seqkit.cli.exits import interrupted_exit_code
from seqkit.cli.progress import err_console, rich_progress
from seqkit.data.corpus_set import DevSet, parse_data_weights, resolve_corpora
from seqkit.training import EpochRecord, StepRecord, TrainSummary, load_recipe
from seqkit.training.distributed import TrainLaunch, is_main_process, launch_local
from seqkit.training.runlog import Notice
from seqkit.training.trainer import stop_signal_of

_EPILOG = (
    "Example: seqkit train synth/ctc_blstm --data prepared --out runs/ctc --max-minutes 10. "
    "Two corpora, the second at 30% of its utterances per epoch: --data prepared --data mine "
    "--data-weight mine=0.3. Fine-tuning a trained model: seqkit train synth/finetune --data "
    "mine --init demo/run-ctc --out runs/mine"
)


def _summary_table(summary: TrainSummary) -> Table:
    table = Table(title=f"{summary.run_dir} ({summary.stopped})")
    for name in ("epoch", "train loss", "dev loss", "dev PER %", "lr", "frames/s", "skipped",
                 "s"):
        table.add_column(name, justify="right")
    for e in summary.epochs:
        table.add_row(
            str(e.epoch), f"{e.train_loss:.3f}", f"{e.dev_loss:.3f}",
            "-" if e.dev_per_pct is None else f"{e.dev_per_pct:.2f}" + (" *" if e.best else ""),
            f"{e.lr:.2e}", f"{e.frames_per_s:.0f}", str(e.skipped), f"{e.seconds:.0f}",
        )
    return table


def _train_with_progress(**kwargs: Any) -> TrainSummary:
    """Run :func:`seqkit.train` with a bar per epoch (latest loss and frames/s); rank 0 draws."""
    latest = {"loss": "-", "fps": "-"}

    def log(record: StepRecord | EpochRecord | Notice) -> None:
        if isinstance(record, Notice):
            err_console.print(f"[yellow]note:[/yellow] {escape(record.text)}", highlight=False,
                              soft_wrap=True)
            return
        if isinstance(record, StepRecord):
            latest["loss"], latest["fps"] = f"{record.loss:.3f}", f"{record.frames_per_s:.0f}"
            return
        per = record.dev_per_pct
        err_console.print(
            f"epoch {record.epoch}: train {record.train_loss:.3f} dev {record.dev_loss:.3f}"
            + ("" if per is None else f" PER {per:.2f}%")
            + (f" ({record.skipped} skipped)" if record.skipped else ""),
            highlight=False,
        )

    with rich_progress(status=lambda: f"loss {latest['loss']}  {latest['fps']} frames/s",
                       disable=not is_main_process()) as progress:
        return seqkit.train(progress=progress, log=log, **kwargs)


def train_command(
    recipe: Annotated[Path, typer.Argument(help="Recipe: a TOML file or a built-in name (see "
                                           "seqkit recipes), e.g. synth/ctc_blstm.",
                                           show_default=False)],
    data: Annotated[list[Path], typer.Option(
        "--data", help="Prepared directory (seqkit data prepare); repeat it to train on several "
        "corpora at once (the first one's dev split scores each epoch).",
        rich_help_panel="Data", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Run directory for checkpoints and logs.",
                                      rich_help_panel="Data", show_default=False)],
    data_weights: Annotated[list[str] | None, typer.Option(
        "--data-weight", help="CORPUS=WEIGHT: the corpus (its --data path or folder name) gives "
        "round(WEIGHT x its train utterances) to each epoch: 0.3 = a fresh random 30%, 2 = each "
        "utterance twice (default 1: each once). Repeatable.", rich_help_panel="Data",
        show_default=False)] = None,
    dev: Annotated[DevSet, typer.Option(
        "--dev", help="Dev set of several corpora: the first corpus's dev split, or every "
        "corpus's pooled.", rich_help_panel="Data")] = DevSet.FIRST,
    init: Annotated[Path | None, typer.Option(
        "--init", help="Fine-tune: start from a trained model of the same kind, shape, phone set "
        "and front end (a run dir's best.pt, or a .pt file). Weights only: a fresh optimizer "
        "and LR schedule; its feature statistics are kept.", rich_help_panel="Data",
        show_default=False)] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a recipe value, e.g. --set train.lr=3e-4 (repeatable).",
        rich_help_panel="Recipe", show_default=False)] = None,
    max_epochs: Annotated[int | None, typer.Option(
        "--max-epochs", help="Stop after N epochs (overrides train.max_epochs).",
        rich_help_panel="Budget", show_default=False)] = None,
    max_minutes: Annotated[float | None, typer.Option(
        "--max-minutes", help="Stop after M minutes, writing last.pt (overrides the recipe).",
        rich_help_panel="Budget", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Random seed (overrides train.seed).", rich_help_panel="Recipe",
        show_default=False)] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue OUT exactly where last.pt stopped.",
        rich_help_panel="Runtime")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Start over in an existing OUT.", rich_help_panel="Runtime")] = False,
    nproc: Annotated[int, typer.Option(
        "--nproc", min=1, help="Local workers (DDP through torch.distributed's launcher; gloo "
        "on CPU, NCCL on GPUs).", rich_help_panel="Runtime")] = 1,
) -> None:
    """Train a (B)LSTM-CTC, RNN-transducer or phone-LM recipe on one or several prepared corpora.

    Writes OUT/best.pt, OUT/last.pt, OUT/config.toml, OUT/metrics.jsonl and OUT/curves.png;
    config.toml and metrics.jsonl record the corpora read (with their SHA-256) and the --init
    model. Ctrl-C or SIGTERM writes last.pt and exits 130 or 143; --resume continues from it with
    the same next batch and LR (a run stopped before its first checkpoint starts over), and
    refuses corpora that changed since. One run at a time per OUT.
    """
    sets = list(overrides or [])
    if seed is not None:
        sets.append(f"train.seed={seed}")
    load_recipe(recipe, sets)  # errors here, before any worker starts
    weights = parse_data_weights(data_weights or [])
    if nproc > 1:
        resolve_corpora(data, weights)  # errors here too
        launch = TrainLaunch(recipe, tuple(data), out, tuple(sets), max_epochs, max_minutes,
                             resume, force, tuple(data_weights or ()), dev.value, init)
        launch_local(nproc, f"{__package__}.main", launch)
        err_console.print(f"trained with {nproc} workers: {out}", highlight=False)
        return
    try:
        summary = _train_with_progress(
            recipe=recipe, data=data, out=out, overrides=sets, data_weights=weights, dev=dev.value,
            init=init, resume=resume, force=force, max_epochs=max_epochs, max_minutes=max_minutes,
        )
    except KeyboardInterrupt as stop:  # before the first step (e.g. building the features)
        err_console.print("interrupted before training began; run the command again",
                          highlight=False)
        raise typer.Exit(interrupted_exit_code(stop_signal_of(stop))) from None
    if not is_main_process():
        return
    typer.echo()
    Console().print(_summary_table(summary))
    if summary.stopped == "interrupted":
        err_console.print(f"interrupted: wrote {out / 'last.pt'}; continue with --resume",
                          highlight=False)
        raise typer.Exit(interrupted_exit_code(summary.stop_signal))


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the root app."""
    app.command("train", epilog=_EPILOG)(train_command)
