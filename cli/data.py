"""``seqkit data``: synthesize the embedded corpus and prepare manifests from a corpus."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from seqkit.audio.features import FEATURE_KINDS, FeatureConfig
from seqkit.cli.formats import TableFormat
from seqkit.cli.progress import rich_progress
from seqkit.data.nltk_sample import NLTK_TIMIT_URL, download_nltk_timit, unpack_nltk_timit
from seqkit.data.prepare import prepare_corpus
from seqkit.data.synth import DEFAULT_SEED, DEFAULT_SENTENCES, DEFAULT_SPEAKERS, synthesize_corpus

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Make and prepare speech corpora (the embedded synthesized corpus, TIMIT).",
    no_args_is_help=True,
)


@app.command(
    "synth",
    epilog="Example: seqkit data synth corpus --speakers 144 --sentences 18 --seed 0",
)
def synth(
    out: Annotated[Path, typer.Argument(help="Corpus directory to create (TIMIT layout).")],
    speakers: Annotated[
        int,
        typer.Option(
            help="Number of speakers (about 20% test, 12.5% dev).", rich_help_panel="Corpus"
        ),
    ] = DEFAULT_SPEAKERS,
    sentences: Annotated[
        int, typer.Option(help="Sentences per speaker.", rich_help_panel="Corpus")
    ] = DEFAULT_SENTENCES,
    seed: Annotated[
        int, typer.Option(help="Same seed, byte-identical corpus.", rich_help_panel="Corpus")
    ] = DEFAULT_SEED,
    clean: Annotated[
        bool,
        typer.Option(
            "--clean",
            help="No noise, gain, reverberation or rate/pitch jitter.",
            rich_help_panel="Corpus",
        ),
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(help="Worker processes (default: the CPU count).", rich_help_panel="Runtime"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty OUT.", rich_help_panel="Runtime")
    ] = False,
) -> None:
    """Synthesize the embedded speech corpus with espeak-ng, in TIMIT's exact format.

    Speakers are English accents (dialect regions DR1-DR8) with own voices, rates and pitches.
    Train, dev and test speakers use disjoint voices; OUT/splits.json lists them.
    Each utterance is a NIST SPHERE 16 kHz .WAV with its .PHN, .WRD and .TXT.
    """
    with rich_progress() as progress:
        summary = synthesize_corpus(
            out,
            speakers=speakers,
            sentences=sentences,
            seed=seed,
            clean=clean,
            jobs=jobs if jobs is not None else (os.cpu_count() or 1),
            force=force,
            progress=progress,
        )
    table = Table(title=f"synthesized corpus {summary.path}")
    for column in ("split", "speakers", "utterances", "hours"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, size in summary.splits.items():
        table.add_row(split, str(size.speakers), str(size.utterances), f"{size.hours:.3f}")
    Console().print(table)


# The choices --help shows: the feature kinds the library knows, listed once in seqkit.audio.
FeatureKind = StrEnum("FeatureKind", {kind: kind for kind in FEATURE_KINDS})


@app.command(
    "prepare",
    epilog="Example: seqkit data synth corpus && seqkit data prepare corpus prepared",
)
def prepare(
    corpus: Annotated[
        Path,
        typer.Argument(
            help="Corpus root: a TIMIT copy (any name case) or `seqkit data synth` output."
        ),
    ],
    out: Annotated[Path, typer.Argument(help="Directory to create with the manifests and stats.")],
    features: Annotated[
        FeatureKind,
        typer.Option(
            help="fbank123 = 40 log-mel + energy with deltas (Graves et al. 2013); "
            "fbank80 = plain 80 log-mel.",
            rich_help_panel="Features",
        ),
    ] = FeatureKind.fbank123,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad",
            help="Leave out utterances that fail their checks and list "
            "them in OUT/skipped.json, instead of stopping.",
            rich_help_panel="Data",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty OUT.", rich_help_panel="Runtime")
    ] = False,
    output_format: Annotated[
        TableFormat,
        typer.Option(
            "--format", help="Print the summary as a table or as JSON.", rich_help_panel="Runtime"
        ),
    ] = TableFormat.table,
) -> None:
    """Check a TIMIT-layout corpus and write train/dev/test manifests and feature statistics.

    Splits come from CORPUS/splits.json when present, otherwise TIMIT's standard split
    (train = TRAIN/, dev = the 50 dev speakers, test = the 24 core test speakers); SA sentences
    are left out. OUT gets train.jsonl, dev.jsonl, test.jsonl and stats.json (normalization
    statistics on train), written in full or not at all.

    The NLTK TIMIT sample (CORPUS = nltk_data/corpora/timit, or `seqkit data download
    nltk-timit`) goes to test in full: its speakers are TIMIT training speakers, so it scores
    models not trained on TIMIT (`seqkit evaluate RUN --data OUT`).
    """
    with rich_progress(transient=output_format is TableFormat.json) as progress:
        summary = prepare_corpus(
            corpus,
            out,
            features=FeatureConfig(kind=features.value),
            skip_bad=skip_bad,
            force=force,
            progress=progress,
        )
    if output_format is TableFormat.json:
        typer.echo(json.dumps(summary.to_dict(), indent=1))
        return
    table = Table(
        title=f"prepared {summary.out_dir} ({summary.features.kind}, {summary.features.dim} dims)"
    )
    for column in ("split", "speakers", "utterances", "hours", "phones"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split in summary.splits:
        table.add_row(
            split.name,
            str(split.speakers),
            str(split.utterances),
            f"{split.hours:.3f}",
            str(split.phones),
        )
    console = Console()
    console.print(table)
    if summary.note:
        console.print(summary.note, highlight=False)
    if summary.clamped:
        console.print(
            f"clamped {summary.clamped} last boundary(ies) to the end of the audio "
            "(at most 10 ms past it)",
            highlight=False,
        )
    if skip_bad:
        console.print(
            f"skipped {len(summary.skipped)} utterance(s): see {summary.out_dir / 'skipped.json'}",
            highlight=False,
        )


class _Download(StrEnum):
    nltk_timit = "nltk-timit"


@app.command(
    "download",
    epilog="Example: seqkit data download nltk-timit nltk_timit && "
    "seqkit data prepare nltk_timit prepared_nltk && "
    "seqkit evaluate demo/run-ctc --data prepared_nltk",
)
def download(
    corpus: Annotated[
        _Download,
        typer.Argument(help="nltk-timit = NLTK's TIMIT sample (16 speakers, CC BY-NC-SA)."),
    ],
    out: Annotated[Path, typer.Argument(help="Corpus directory to create.")],
    url: Annotated[
        str, typer.Option(help="Where to download the zip from.", rich_help_panel="Source")
    ] = NLTK_TIMIT_URL,
    from_zip: Annotated[
        Path | None,
        typer.Option(
            help="Unpack this already downloaded zip instead of downloading.",
            rich_help_panel="Source",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty OUT.", rich_help_panel="Runtime")
    ] = False,
) -> None:
    """Download a free corpus and unpack it where `seqkit data prepare` reads it.

    nltk-timit: the TIMIT sample NLTK distributes (`nltk.download('timit')`), 160 real
    utterances of 16 TIMIT training speakers. `seqkit data prepare` puts all of it in the test
    split: it measures how a model trained elsewhere (the synthesized demo) does on people.
    """
    if from_zip is not None:
        path = unpack_nltk_timit(from_zip, out, force=force)
    else:
        with rich_progress() as progress:
            path = download_nltk_timit(out, url=url, force=force, progress=progress)
    Console().print(f"{corpus.value} → {path}; next: seqkit data prepare {path} PREPARED",
                    highlight=False)
