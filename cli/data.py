"""``seqkit data``: synthesize the embedded corpus and prepare manifests from a corpus."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from seqkit.audio.features import FEATURE_KINDS, FeatureConfig
from seqkit.cli.formats import TableFormat, split_names
from seqkit.cli.progress import rich_progress
from seqkit.corpora.librispeech.download import CORPORA, Fetched, download_corpus
from seqkit.corpora.librispeech.prepare import (
    LibriPrepareSummary,
    is_libri_corpus,
    prepare_librispeech,
)
from seqkit.corpora.prepared import PrepareSummary
from seqkit.corpora.timit.nltk_sample import (
    NLTK_TIMIT_URL,
    download_nltk_timit,
    unpack_nltk_timit,
)
from seqkit.corpora.timit.prepare import prepare_corpus
from seqkit.errors import ConfigError
from seqkit.synth.corpus import (
    DEFAULT_SEED,
    DEFAULT_SENTENCES,
    DEFAULT_SPEAKERS,
    DEFAULT_VOICE_SPEAKERS,
    synthesize_corpus,
)
from seqkit.synth.engines import ENGINE_NAMES, engine_status

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Make, download and prepare speech corpora (synthesized, TIMIT, LibriSpeech).",
    no_args_is_help=True,
)


@app.command(
    "synth",
    epilog="Example: seqkit data synth corpus --speakers 144 --sentences 18 --seed 0 "
    "--engines espeak --engines piper",
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
            "--clean/--noisy",
            help="Clean: dry voices, as TIMIT was recorded. Noisy: room, babble noise, gain and "
            "rate/pitch jitter per utterance (5 points worse on real speech, "
            "docs/real-speech.md).",
            rich_help_panel="Corpus",
        ),
    ] = True,
    engines: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Voice engines speaking the train split ({', '.join(ENGINE_NAMES)}); repeat or "
            "comma-separate. Default: every engine installed here.",
            rich_help_panel="Voices",
        ),
    ] = None,
    voice_speakers: Annotated[
        int,
        typer.Option(help="Training speakers made from each voice of people (piper, flite, "
                     "festival voices).", rich_help_panel="Voices"),
    ] = DEFAULT_VOICE_SPEAKERS,
    jobs: Annotated[
        int | None,
        typer.Option(help="Worker processes (default: the CPU count).", rich_help_panel="Runtime"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty OUT.", rich_help_panel="Runtime")
    ] = False,
) -> None:
    """Synthesize the embedded speech corpus in TIMIT's exact format.

    espeak-ng speakers are English accents (dialect regions DR1-DR8) with own voices, rates and
    pitches; voices made from recordings of people (piper's joe; flite's and festival's voices
    where installed) each become several training speakers (rate, vocal-tract warp, room).
    Dev and test are held-out espeak-ng voices; OUT/splits.json lists every speaker.
    Each utterance is a NIST SPHERE 16 kHz .WAV with its .PHN, .WRD and .TXT.
    """
    chosen = _chosen_engines(engines)
    with rich_progress() as progress:
        summary = synthesize_corpus(
            out,
            speakers=speakers,
            sentences=sentences,
            seed=seed,
            clean=clean,
            engines=chosen,
            voice_speakers=voice_speakers,
            jobs=jobs if jobs is not None else (os.cpu_count() or 1),
            force=force,
            progress=progress,
        )
    Console().print(f"voice engines: {', '.join(chosen)}")
    table = Table(title=f"synthesized corpus {summary.path}")
    for column in ("split", "speakers", "utterances", "hours"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, size in summary.splits.items():
        table.add_row(split, str(size.speakers), str(size.utterances), f"{size.hours:.3f}")
    Console().print(table)


def _chosen_engines(names: list[str] | None) -> tuple[str, ...]:
    """The ``--engines`` given, or every engine that works here, saying which are missing."""
    if names:
        return split_names(names) or ()
    status = engine_status()
    for name, reason in status.items():
        if reason is not None:
            Console(stderr=True).print(f"[yellow]{name} not used: {reason}[/yellow]")
    return tuple(name for name, reason in status.items() if reason is None)


# The choices --help shows: the feature kinds the library knows, listed once in seqkit.audio.
FeatureKind = StrEnum("FeatureKind", {kind: kind for kind in FEATURE_KINDS})


# LibriSpeech options of `seqkit data prepare`.
_TrainSubsets = Annotated[
    list[str] | None,
    typer.Option(
        help="LibriSpeech: train subsets (train-clean-100, train-clean-360, train-other-500, "
        "or Libri-Light's 10min, 1h, 10h); repeat or comma-separate. Default: those present.",
        rich_help_panel="LibriSpeech",
    ),
]
_DevSubset = Annotated[
    str, typer.Option(help="LibriSpeech: dev-clean or dev-other.", rich_help_panel="LibriSpeech")
]
_TestSubset = Annotated[
    str,
    typer.Option(help="LibriSpeech: test-clean or test-other.", rich_help_panel="LibriSpeech"),
]
_Jobs = Annotated[
    int | None,
    typer.Option(help="LibriSpeech: worker processes reading audio (default: the CPU count).",
                 rich_help_panel="Runtime"),
]


_PrepareCorpus = Annotated[
    Path,
    typer.Argument(
        help="Corpus root: a TIMIT copy (any name case), `seqkit data synth` output, or a "
        "folder with LibriSpeech/ and/or librispeech_finetuning/ (Libri-Light)."
    ),
]
_Features = Annotated[
    FeatureKind,
    typer.Option(
        help="fbank123 = 40 log-mel + energy with deltas (Graves et al. 2013); "
        "fbank80 = plain 80 log-mel.",
        rich_help_panel="Features",
    ),
]
_SkipBad = Annotated[
    bool,
    typer.Option(
        "--skip-bad",
        help="Leave out utterances that fail their checks and list "
        "them in OUT/skipped.json, instead of stopping.",
        rich_help_panel="Data",
    ),
]


@app.command(
    "prepare",
    epilog="Example: seqkit data synth corpus && seqkit data prepare corpus prepared. "
    "LibriSpeech: seqkit data prepare librispeech prepared/ls100 --subsets train-clean-100",
)
def prepare(
    corpus: _PrepareCorpus,
    out: Annotated[Path, typer.Argument(help="Directory to create with the manifests and stats.")],
    features: _Features = FeatureKind.fbank123,
    skip_bad: _SkipBad = False,
    subsets: _TrainSubsets = None,
    dev: _DevSubset = "dev-clean",
    test: _TestSubset = "test-clean",
    jobs: _Jobs = None,
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
    """Check a corpus and write train/dev/test manifests and feature statistics.

    TIMIT layout: splits come from CORPUS/splits.json when present, otherwise TIMIT's standard
    split (train = TRAIN/, dev = the 50 dev speakers, test = the 24 core test speakers); SA
    sentences are left out.

    LibriSpeech / Libri-Light (as their archives unpack): train = the train subsets present or
    named, dev = dev-clean, test = test-clean (`--dev`/`--test` choose -other). Phones come from
    CMUdict, stress stripped and mapped onto TIMIT's 39 scoring phones; words it lacks go through
    espeak-ng's letter-to-sound (counted in the summary, listed in OUT/oov.tsv).

    The NLTK TIMIT sample (CORPUS = nltk_data/corpora/timit, or `seqkit data download
    nltk-timit`) goes to test in full: its speakers are TIMIT training speakers, so it scores
    models not trained on TIMIT (`seqkit evaluate RUN --data OUT`).

    OUT gets train.jsonl, dev.jsonl, test.jsonl and stats.json (normalization statistics on
    train; none for the NLTK sample, which has no train split), written in full or not at all.
    """
    feature_config = FeatureConfig(kind=features.value)
    libri = is_libri_corpus(corpus)
    if not libri and (subsets or jobs is not None or (dev, test) != ("dev-clean", "test-clean")):
        raise ConfigError(
            "--subsets, --dev, --test and --jobs are for LibriSpeech layouts, but "
            f"{corpus} has no LibriSpeech/ or librispeech_finetuning/ folder: drop them for TIMIT"
        )
    with rich_progress(transient=output_format is TableFormat.json) as progress:
        if libri:
            summary = prepare_librispeech(
                corpus, out, train=split_names(subsets), dev=dev, test=test,
                features=feature_config,
                jobs=jobs if jobs is not None else (os.cpu_count() or 1), skip_bad=skip_bad,
                force=force, progress=progress,
            )
        else:
            summary = prepare_corpus(
                corpus, out, features=feature_config, skip_bad=skip_bad, force=force,
                progress=progress,
            )
    if output_format is TableFormat.json:
        typer.echo(json.dumps(summary.to_dict(), indent=1))
        return
    _print_prepared(summary, skip_bad)


def _print_prepared(summary: PrepareSummary, skip_bad: bool) -> None:
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
    if isinstance(summary, LibriPrepareSummary):
        share = 100 * summary.oov_tokens / max(summary.tokens, 1)
        console.print(
            f"lexicon: {summary.words} words, {summary.oov_words} not in CMUdict "
            f"({summary.oov_tokens} of {summary.tokens} running words, {share:.2f}%) pronounced "
            f"by espeak-ng: see {summary.out_dir / 'oov.tsv'}",
            highlight=False,
        )
    if skip_bad:
        console.print(
            f"skipped {len(summary.skipped)} utterance(s): see {summary.out_dir / 'skipped.json'}",
            highlight=False,
        )


class _Download(StrEnum):
    librispeech = "librispeech"
    librilight = "librilight"
    nltk_timit = "nltk-timit"


_DownloadCorpus = Annotated[
    _Download,
    typer.Argument(help="librispeech (read audiobooks, 1000 h, CC BY 4.0); librilight (its "
                   "10 h fine-tuning set; LibriSpeech's dev and test come with it); "
                   "nltk-timit (NLTK's TIMIT sample: 16 speakers, CC BY-NC-SA)."),
]
_DownloadSubsets = Annotated[
    list[str] | None,
    typer.Option(
        help="LibriSpeech / Libri-Light subsets; repeat or comma-separate. librispeech: "
        + ", ".join(CORPORA["librispeech"][0]) + " (default: "
        + ", ".join(CORPORA["librispeech"][1]) + "). librilight: "
        + ", ".join(CORPORA["librilight"][0]) + " (default: "
        + ", ".join(CORPORA["librilight"][1]) + ").",
        rich_help_panel="LibriSpeech",
    ),
]
_Mirror = Annotated[
    str | None,
    typer.Option(help="Base URL holding the LibriSpeech archives by file name (an OpenSLR "
                 "mirror, a local server) instead of their usual addresses.",
                 rich_help_panel="LibriSpeech"),
]


@app.command(
    "download",
    epilog="Example: seqkit data download librilight data && seqkit data prepare data prepared",
)
def download(
    corpus: _DownloadCorpus,
    out: Annotated[Path, typer.Argument(help="Folder to download and unpack into.")],
    subsets: _DownloadSubsets = None,
    mirror: _Mirror = None,
    keep_archives: Annotated[
        bool,
        typer.Option("--keep-archives", help="Keep each verified archive after unpacking.",
                     rich_help_panel="LibriSpeech"),
    ] = False,
    url: Annotated[
        str, typer.Option(help="nltk-timit: where to download the zip from.",
                          rich_help_panel="NLTK TIMIT")
    ] = NLTK_TIMIT_URL,
    from_zip: Annotated[
        Path | None,
        typer.Option(help="nltk-timit: unpack this already downloaded zip instead.",
                     rich_help_panel="NLTK TIMIT"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="nltk-timit: replace a non-empty OUT.",
                           rich_help_panel="NLTK TIMIT")
    ] = False,
    sha256: Annotated[
        str | None,
        typer.Option("--sha256", help="nltk-timit: the zip's expected SHA-256 (refused before "
                     "unpacking if it differs); the one found is written to OUT/SOURCE.json.",
                     rich_help_panel="NLTK TIMIT", show_default=False),
    ] = None,
    nltk_index: Annotated[
        bool | None,
        typer.Option("--nltk-index/--no-nltk-index",
                     help="nltk-timit: check the zip's size and MD5 against NLTK's data index "
                     "(refused before unpacking if they differ). Default: on for NLTK's URL, "
                     "off for another --url and for --from-zip.",
                     rich_help_panel="NLTK TIMIT", show_default=False),
    ] = None,
    output_format: Annotated[
        TableFormat,
        typer.Option("--format", help="LibriSpeech: print the summary as a table or as JSON.",
                     rich_help_panel="Runtime"),
    ] = TableFormat.table,
) -> None:
    """Download a free corpus and unpack it where `seqkit data prepare` reads it.

    librispeech / librilight: archives, URLs and SHA-256 sums are torchaudio's
    (datasets.LIBRISPEECH, LibriLightLimited). A subset already downloaded (its folder carries
    the completion marker) is skipped; an archive already in OUT is verified and used; a folder
    appears only once unpacked in full. Sizes: train-clean-100 6.3 GB, train-clean-360 23 GB,
    train-other-500 30 GB, each dev and test set ~0.3 GB.

    nltk-timit: the TIMIT sample NLTK distributes (`nltk.download('timit')`), 160 real
    utterances of 16 TIMIT training speakers. `seqkit data prepare` puts all of it in the test
    split: it measures how a model trained elsewhere (the synthesized demo) does on people.
    """
    if corpus is _Download.nltk_timit:
        if subsets or mirror or keep_archives:
            raise ConfigError("--subsets, --mirror and --keep-archives are for librispeech and "
                              "librilight: drop them for nltk-timit")
        _download_nltk(out, url, from_zip, force, sha256, nltk_index)
        return
    if from_zip is not None or url != NLTK_TIMIT_URL or force or sha256 or (
            nltk_index is not None):
        raise ConfigError("--url, --from-zip, --sha256, --nltk-index and --force are for "
                          f"nltk-timit: {corpus.value} takes --mirror, and skips subsets "
                          "already downloaded")
    with rich_progress(transient=output_format is TableFormat.json) as progress:
        fetched = download_corpus(
            corpus.value, out, subsets=split_names(subsets), mirror=mirror,
            keep_archives=keep_archives, progress=progress,
        )
    if output_format is TableFormat.json:
        typer.echo(json.dumps([f.to_dict() for f in fetched], indent=1))
        return
    _print_downloaded(f"{corpus.value} in {out}", fetched)


def _print_downloaded(title: str, fetched: Sequence[Fetched]) -> None:
    table = Table(title=title)
    for column in ("subset", "status", "folder"):
        table.add_column(column)
    for item in fetched:
        table.add_row(item.subset, item.status, str(item.folder))
    Console().print(table)


def _download_nltk(out: Path, url: str, from_zip: Path | None, force: bool,
                   sha256: str | None, nltk_index: bool | None) -> None:
    if from_zip is not None:
        path = unpack_nltk_timit(from_zip, out, force=force, sha256=sha256,
                                 published=bool(nltk_index))
    else:
        with rich_progress() as progress:
            path = download_nltk_timit(out, url=url, sha256=sha256, published=nltk_index,
                                       force=force, progress=progress)
    Console().print(f"nltk-timit → {path}; next: seqkit data prepare {path} PREPARED",
                    highlight=False)
