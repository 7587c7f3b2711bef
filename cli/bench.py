"""``seqkit bench``: seqkit measured side by side against the peers.

The speed benchmarks time our code and a peer on the same inputs in one run (median of several
repeats) and report ``ratio = ours / peer``: below 1 is faster than the peer. ``peers`` and
``voices`` measure phone error instead, against pocketsphinx (the ``peers`` extra).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from seqkit.bench import ctc_loss, transducer_loss
from seqkit.bench import decode as decode_bench
from seqkit.bench import gpu as gpu_bench
from seqkit.bench import peers as peers_bench
from seqkit.bench import prepare as prepare_bench
from seqkit.bench import profile as profile_bench
from seqkit.bench import stream as stream_bench
from seqkit.bench import train as train_bench
from seqkit.bench import voices as voices_bench
from seqkit.cli.evaluate import Split
from seqkit.cli.formats import TableFormat
from seqkit.cli.progress import err_console, rich_progress
from seqkit.cli.search import ModelArg
from seqkit.training.config import Amp

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Benchmarks against peers (torch, torchaudio, plain PyTorch loops, pocketsphinx).",
    no_args_is_help=True,
)
console = Console()


class Device(StrEnum):
    """Where the loss benchmarks run."""

    cpu = "cpu"
    cuda = "cuda"


_Format = Annotated[TableFormat, typer.Option("--format", help="Print a table or JSON.")]
_Repeats = Annotated[
    int, typer.Option("--repeats", min=1, help="Timed repeats; the median is kept.")
]
# bench train and bench profile run the same recipes with the same overrides
_Recipes = Annotated[
    list[str] | None,
    typer.Option("--recipe", help="Recipe to run, a file or a built-in name (repeatable; "
                 "default: the synth CTC and transducer recipes)."),
]
_Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a value of every recipe, e.g. --set "
                 "model.joint_stride=2 (repeatable)."),
]


def _render(
    title: str,
    rows: list[dict[str, Any]],
    fmt: TableFormat,
    *,
    headers: dict[str, str | None] | None = None,
    caption: str | None = None,
) -> None:
    """Rows as JSON, or as a table whose ``headers`` rename columns (None: JSON only)."""
    if fmt is TableFormat.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    headers = headers or {}
    table = Table(title=title, caption=caption)
    columns = [key for key in dict.fromkeys(key for row in rows for key in row)
               if headers.get(key, key) is not None]
    for column in columns:
        table.add_column(
            headers.get(column) or column,
            justify="right" if column.endswith(("ms", "ratio", "rtf", "pct", "per_s")) else "left",
        )
    for row in rows:
        table.add_row(*(_cell(row.get(column), column) for column in columns))
    console.print(table)


def _cell(value: Any, column: str = "") -> str:
    if isinstance(value, float) and column.endswith("pct"):
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


# Short table headers for the phone-error benches (their JSON keeps the long names).
_PER_HEADERS: dict[str, str | None] = {
    "utterances": "utts", "ref_phones": "N", "ref_phones_no_sil": "N no sil",
    "per_pct": "PER %", "per_no_sil_pct": "PER no sil %", "utt_per_s": "utt/s",
}


@app.command(epilog="Example: seqkit bench losses --repeats 5")
def losses(
    repeats: _Repeats = 5,
    device: Annotated[Device, typer.Option("--device", help="Run the losses here.")] = Device.cpu,
    fmt: _Format = TableFormat.table,
) -> None:
    """Time CTC and transducer losses (forward + backward) against torch and torchaudio."""
    rows = ctc_loss.run(repeats=repeats, device=device.value)
    rows += transducer_loss.run(repeats=repeats, device=device.value)
    _render("Losses: ours vs peers (ratio = ours / peer)", rows, fmt)


@app.command(epilog="Example: seqkit bench train --data demo/prepared --steps 30 (--amp off: "
                  "time float32; --set model.joint_stride=2: a transducer variant; "
                  "--two-corpora: two corpora against one)")
def train(
    data: Annotated[
        Path, typer.Option("--data", help="A prepared synthesized corpus (make demo makes one).")
    ] = Path("demo/prepared"),
    two_corpora: Annotated[bool, typer.Option(
        "--two-corpora", help="Time seqkit's step on two corpora (--data and --second, the "
        "second at weight 0.5) against --data alone, instead of against a plain loop.")] = False,
    second: Annotated[Path | None, typer.Option(
        "--second", help="The second prepared corpus of --two-corpora (default: a copy of "
        "--data).", show_default=False)] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Timed steps per side.")] = 30,
    amp: Annotated[
        Amp | None,
        typer.Option("--amp", help="Precision for both sides instead of the recipes' train.amp "
                     "(off = float32)."),
    ] = None,
    recipe: _Recipes = None,
    overrides: _Overrides = None,
    fmt: _Format = TableFormat.table,
) -> None:
    """Training throughput of the synth recipes: seqkit's trainer vs a plain PyTorch loop, or
    (--two-corpora) seqkit's step on two corpora vs one.

    Both sides train each recipe with the same --set overrides."""
    kw: dict[str, Any] = {"recipes": tuple(recipe or train_bench.RECIPES), "steps": steps,
                          "amp": amp.value if amp is not None else None,
                          "overrides": tuple(overrides or ())}
    if two_corpora:
        with rich_progress(transient=True) as progress:
            rows = train_bench.run_two_corpora(data, second, progress=progress, **kw)
        _render("Training: seqkit's step on one corpus over two (ratio = one frames/s / two; "
                "<= 1.05 = mixing costs <= 5%)", rows, fmt)
        return
    with rich_progress(transient=True) as progress:
        rows = train_bench.run(data_dir=data, progress=progress, **kw)
    _render(
        "Training: plain loop frames/s over seqkit's (ratio <= 1.10 = overhead <= 10%)", rows, fmt
    )


@app.command(epilog="Example: seqkit bench profile --data demo/prepared --steps 5")
def profile(
    data: Annotated[
        Path, typer.Option("--data", help="A prepared synthesized corpus (make demo makes one).")
    ] = Path("demo/prepared"),
    steps: Annotated[int, typer.Option("--steps", min=1, help="Timed steps per recipe.")] = 5,
    recipe: _Recipes = None,
    overrides: _Overrides = None,
    fmt: _Format = TableFormat.table,
) -> None:
    """Where a training step of the synth CTC and transducer recipes spends its time: encoder,
    prediction network, joint, log-softmax, loss, each forward and backward, and the optimizer
    (CPU, float32, median over the steps)."""
    with rich_progress(transient=True) as progress:
        rows = profile_bench.run(data, recipes=tuple(recipe or profile_bench.RECIPES),
                                 steps=steps, overrides=tuple(overrides or ()),
                                 progress=progress)
    _render("Training step by phase on this CPU (ms, median over the steps)", rows, fmt)


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
    fmt: _Format = TableFormat.table,
) -> None:
    """Real-time factor of greedy and beam search (K = 4, 8, 16) for CTC and transducer models."""
    rows = decode_bench.run(repeats=repeats, ctc_checkpoint=ctc, transducer_checkpoint=transducer)
    _render("Decoding: real-time factor on this CPU", rows, fmt)


@app.command(epilog="Example: seqkit bench prepare --jobs 1 --jobs 2")
def prepare(
    utterances: Annotated[
        int, typer.Option(min=100, help="Train utterances (train-clean-100 has 28,539).")
    ] = 28539,
    distinct_audio: Annotated[
        int, typer.Option(min=1, help="Recordings synthesized; the rest hard-link to them.")
    ] = 400,
    jobs: Annotated[
        list[int] | None, typer.Option(help="Worker counts to time, one run each (default 1, 2).")
    ] = None,
    fmt: _Format = TableFormat.table,
) -> None:
    """LibriSpeech prepare rate on a synthesized train-clean-100-sized layout (no peer)."""
    with rich_progress(transient=True) as progress:
        rows = prepare_bench.run(utterances=utterances, distinct_audio=distinct_audio,
                                 jobs=tuple(jobs or (1, 2)), progress=progress)
    _render("LibriSpeech prepare: wall time on this machine", rows, fmt)


@app.command("prepare-lhotse",
             epilog="Example: seqkit bench prepare-lhotse --corpus demo/corpus --repeats 3")
def prepare_lhotse(
    corpus: Annotated[
        Path | None,
        typer.Option(help="A synthesized corpus to read (default: synthesize 112 espeak-ng "
                     "speakers x 18 sentences = 2,016 utterances first)."),
    ] = None,
    repeats: _Repeats = 3,
    fmt: _Format = TableFormat.table,
) -> None:
    """prepare of a synthesized TIMIT-layout corpus: lhotse's timit recipe against seqkit's own
    reader (same corpus, same process, one job each; the phones they write are checked equal)."""
    with rich_progress(transient=True) as progress:
        rows = prepare_bench.run_timit_readers(corpus=corpus, repeats=repeats, progress=progress)
    _render("TIMIT-layout prepare: lhotse's reader against seqkit's", rows, fmt)


@app.command(
    epilog="Example: seqkit bench stream --ctc runs/ctc_stream --transducer runs/trans_stream; "
    "seqkit bench stream --long 6 --beam 4"
)
def stream(
    repeats: _Repeats = 3,
    ctc: Annotated[
        Path | None,
        typer.Option("--ctc", help="Trained unidirectional CTC run (default: random weights)."),
    ] = None,
    transducer: Annotated[
        Path | None,
        typer.Option("--transducer", help="Trained unidirectional transducer run (default: "
                     "random weights)."),
    ] = None,
    long: Annotated[
        int, typer.Option("--long", min=0, help="Instead: feed the speech this many times as one "
                          "long stream to the beam searches (memo entries, held labels per pass).")
    ] = 0,
    beam: Annotated[int, typer.Option("--beam", min=2, help="Beam of the --long stream.")] = 4,
    fmt: _Format = TableFormat.table,
) -> None:
    """Streaming greedy decoding: latency, compute per chunk (median, p95) and RTF per chunk
    size, against the whole-file decode of the same model (ratio = streaming / whole-file RTF).
    With --long N: one long stream through the beam searches, whose memory must stay flat."""
    if long:
        rows = stream_bench.run_long(long, beam=beam, ctc_checkpoint=ctc,
                                     transducer_checkpoint=transducer)
        _render("Streaming beam search: one long stream, per pass of the speech", rows, fmt)
        return
    rows = stream_bench.run(repeats=repeats, ctc_checkpoint=ctc, transducer_checkpoint=transducer)
    _render("Streaming: latency and real-time factor per chunk on this CPU", rows, fmt)


@app.command(
    epilog="Example: seqkit bench peers runs/ctc_synth --data prepared_nltk (needs pip install "
    "'seqkit[peers]')"
)
def peers(
    model: ModelArg,
    data: Annotated[
        Path, typer.Option("--data", help="Prepared folder (seqkit data prepare).",
                           rich_help_panel="Data"),
    ],
    split: Annotated[
        Split, typer.Option("--split", help="Which manifest to score.", rich_help_panel="Data")
    ] = Split.TEST,
    fmt: _Format = TableFormat.table,
) -> None:
    """Phone error rate of a trained model beside pocketsphinx on the same utterances.

    The model decodes greedily, as seqkit evaluate does; pocketsphinx runs in allphone mode with
    its bundled US-English model and phone LM (lw 2.0, beam = pbeam = 1e-20). Both are scored on
    39 folded phones, with sil (per_pct, as seqkit evaluate) and without it on either side
    (per_no_sil_pct), with utterances per second.
    """
    with rich_progress(transient=True) as progress:
        rows = peers_bench.run(model, data, split=split.value, progress=progress)
    caption = "; ".join(f"{row['recognizer']}: {row['settings']}" for row in rows)
    _render(f"Phone error rate beside pocketsphinx ({split.value}, 39 phones)", rows, fmt,
            headers={**_PER_HEADERS, "settings": None}, caption=caption)


@app.command(
    epilog="Example: seqkit bench voices corpus --per-speaker 4 (needs pip install "
    "'seqkit[peers]')"
)
def voices(
    corpus: Annotated[
        Path, typer.Argument(help="A TIMIT-layout corpus (seqkit data synth, TIMIT, the NLTK "
                             "sample) or a folder prepared from one.")
    ],
    per_speaker: Annotated[
        int | None, typer.Option("--per-speaker", min=1,
                                 help="Utterances per speaker to decode (default all).")
    ] = None,
    fmt: _Format = TableFormat.table,
) -> None:
    """How human a corpus's voices sound: pocketsphinx's phone error per speaker.

    pocketsphinx (allphone, as in seqkit bench peers), a model of people, decodes each utterance
    and is scored without sil against the phones the speaker was asked to say (the labels).
    Rows per speaker, grouped by the engine and voice the corpus's splits.json names, then one
    "all" row per engine. #17 measured espeak-ng voices at ~71%, real TIMIT speakers at 48-52%.
    """
    with rich_progress(transient=True) as progress:
        rows = voices_bench.run(corpus, per_speaker=per_speaker, progress=progress)
    _render("pocketsphinx phone error per speaker (39 phones, without sil)", rows, fmt,
            headers=_PER_HEADERS)
@app.command(epilog="Example: seqkit bench gpu --out gpu-report (on a CUDA machine, ~7.5 "
                     "minutes; gpu-kit/run.sh runs it on a machine without network)")
def gpu(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for gpu-report.md / .json, logs/ and work/.")
    ] = Path("gpu-report"),
    minutes: Annotated[
        float, typer.Option("--minutes", help="Total budget; the stages share it in proportion.")
    ] = gpu_bench.DEFAULT_MINUTES,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Train on this prepared corpus instead of synthesizing one."),
    ] = None,
    fmt: _Format = TableFormat.table,
) -> None:
    """The first-GPU check, each stage in its own process and time limit: our CTC and
    transducer losses and gradients (full, pruned, fused joint) against float64 and against
    torch / torchaudio at realistic shapes, determinism, strided inputs, bf16 / fp16 autocast,
    time and peak memory, the CUDA test cases, and two short training runs whose loss must
    fall. One report in OUT, its first lines the verdict of each stage. Exits 0 only if every
    stage is ok, 1 otherwise (the report says which), 2 without a CUDA device or under
    TRITON_INTERPRET=1."""
    report = gpu_bench.run_gpu_check(
        out, minutes=minutes, data=data,
        stage=lambda line: err_console.print(f"stage {line}", highlight=False, markup=False))
    rows = [{"stage": s.name, "status": s.status, "seconds": s.seconds, "error": s.error}
            for s in report.stages]
    _render(f"GPU check on {report.device}: {report.verdict}; {out / 'gpu-report.md'}", rows,
            fmt)
    if report.verdict != "ok":
        raise typer.Exit(1)
