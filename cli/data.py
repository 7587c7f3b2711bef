"""``seqkit data``: synthesize the embedded corpus and prepare manifests from a corpus."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from seqkit.audio.features import FEATURE_KINDS, FeatureConfig
from seqkit.cli.formats import TableFormat, split_names
from seqkit.cli.progress import rich_progress
from seqkit.corpora.lhotse_download import download_recipe
from seqkit.corpora.librispeech.download import CORPORA, Fetched, download_corpus
from seqkit.corpora.librispeech.prepare import LibriPrepareSummary
from seqkit.corpora.prepared import PrepareSummary
from seqkit.corpora.source_prepare import SourcePrepareSummary
from seqkit.corpora.sources import prepare_any
from seqkit.corpora.timit.nltk_sample import (
    NLTK_TIMIT_URL,
    download_nltk_timit,
    unpack_nltk_timit,
)
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
    help="Make, download and prepare speech corpora (synthesized, TIMIT, LibriSpeech, lhotse's "
    "recipes and manifests, Kaldi data dirs).",
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
    str | None,
    typer.Option(help="LibriSpeech: dev-clean (default) or dev-other.",
                 rich_help_panel="LibriSpeech", show_default=False),
]
_TestSubset = Annotated[
    str | None,
    typer.Option(help="LibriSpeech: test-clean (default) or test-other.",
                 rich_help_panel="LibriSpeech", show_default=False),
]
_Jobs = Annotated[
    int | None,
    typer.Option(help="Worker processes reading audio (LibriSpeech, lhotse, Kaldi; default: the "
                 "CPU count).", rich_help_panel="Runtime"),
]


class _Split(StrEnum):
    train = "train"
    dev = "dev"
    test = "test"


_PrepareCorpus = Annotated[
    Path,
    typer.Argument(
        help="The corpus: a TIMIT copy (any name case), `seqkit data synth` output, a folder "
        "with LibriSpeech/ and/or librispeech_finetuning/ (Libri-Light), a Kaldi data dir (or "
        "a folder of them named train/dev/test), a lhotse manifest folder or CutSet "
        "(*.jsonl.gz), or a corpus as a lhotse recipe reads it (with --corpus)."
    ),
]
_Corpus = Annotated[
    str | None,
    typer.Option(
        "--corpus",
        help="Read CORPUS with this reader: timit or librispeech (seqkit's own), kaldi, "
        "lhotse-manifests, or any lhotse recipe (cmu_arctic, l2_arctic, ljspeech, vctk, "
        "tedlium, commonvoice, ...; lhotse:timit for lhotse's TIMIT reader). Default: found "
        "from the layout.",
        rich_help_panel="Data", show_default=False,
    ),
]
_LhotseOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--lhotse-option",
        help="KEY=VALUE passed to the lhotse recipe's prepare function (VALUE read as JSON "
        "when it parses, e.g. languages='[\"en\"]', else as text); repeat.",
        rich_help_panel="Data",
    ),
]
_AllTo = Annotated[
    _Split | None,
    typer.Option(
        "--all-to",
        help="Put every utterance in this split: test for a measurement set (no stats.json), "
        "train for an extra training set. Default: the corpus's own splits, else a seeded "
        "speaker-disjoint split.",
        rich_help_panel="Data", show_default=False,
    ),
]
_Seed = Annotated[
    int,
    typer.Option(help="Seed of the speaker-disjoint split of a corpus that defines none.",
                 rich_help_panel="Data"),
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
        help="Leave out utterances that fail their checks (missing audio, empty transcript, no "
        "speaker, ...) and list them in OUT/skipped.json, instead of stopping.",
        rich_help_panel="Data",
    ),
]


@app.command(
    "prepare",
    epilog="Example: seqkit data synth corpus && seqkit data prepare corpus prepared. "
    "LibriSpeech: seqkit data prepare librispeech prepared/ls100 --subsets train-clean-100. "
    "CMU ARCTIC (lhotse): seqkit data prepare cmu_arctic prepared/arctic --corpus cmu_arctic. "
    "Your recordings: seqkit data prepare data/mine prepared/mine --all-to train "
    "(a Kaldi data dir). See docs/corpora.md.",
)
def prepare(
    corpus: _PrepareCorpus,
    out: Annotated[Path, typer.Argument(help="Directory to create with the manifests and stats.")],
    reader: _Corpus = None,
    lhotse_options: _LhotseOptions = None,
    all_to: _AllTo = None,
    seed: _Seed = 0,
    features: _Features = FeatureKind.fbank123,
    skip_bad: _SkipBad = False,
    subsets: _TrainSubsets = None,
    dev: _DevSubset = None,
    test: _TestSubset = None,
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
    sentences are left out. The NLTK TIMIT sample goes to test in full (its speakers are TIMIT
    training speakers): it scores models not trained on TIMIT.

    LibriSpeech / Libri-Light (as their archives unpack): train = the train subsets present or
    named, dev = dev-clean, test = test-clean (`--dev`/`--test` choose -other).

    Kaldi data dirs, lhotse manifests and lhotse's recipes (`--corpus NAME`): a corpus that
    defines splits keeps them; any other is split speaker-disjoint by `--seed` (the summary and
    OUT/splits.json say which speakers went where). Phones come from the corpus's own alignment
    where it has one (TIMIT, L2-ARCTIC's annotations), mapped to TIMIT's symbols; otherwise from
    the words. Audio cut from longer recordings or at another rate is written, 16 kHz, to
    OUT/audio/.

    Words become phones through CMUdict, stress stripped and mapped onto TIMIT's 39 scoring
    phones; words it lacks go through espeak-ng's letter-to-sound (counted in the summary,
    listed in OUT/oov.tsv).

    OUT gets train.jsonl, dev.jsonl, test.jsonl and stats.json (normalization statistics on
    train; none when there is no train split), written in full or not at all.
    """
    with rich_progress(transient=output_format is TableFormat.json) as progress:
        summary = prepare_any(
            corpus, out, corpus=reader, options=_key_values(lhotse_options, "--lhotse-option"),
            features=FeatureConfig(kind=features.value), seed=seed,
            all_to=all_to.value if all_to is not None else None, skip_bad=skip_bad,
            force=force, jobs=jobs if jobs is not None else (os.cpu_count() or 1),
            train=split_names(subsets), dev=dev, test=test, progress=progress,
        )
    if output_format is TableFormat.json:
        typer.echo(json.dumps(summary.to_dict(), indent=1))
        return
    _print_prepared(summary, skip_bad)


def _key_values(values: list[str] | None, option: str, *, as_json: bool = True) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict, each VALUE read as JSON when it parses (``as_json``)."""
    out: dict[str, Any] = {}
    for value in values or ():
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {value!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(text) if as_json else text.strip()
        except ValueError:
            out[key.strip()] = text
    return out


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
    if isinstance(summary, SourcePrepareSummary):
        _print_source(console, summary)
    if isinstance(summary, LibriPrepareSummary | SourcePrepareSummary) and summary.tokens:
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


_SHOWN_SPEAKERS = 12  # speakers listed per split; all of them are in OUT/splits.json


def _print_source(console: Console, summary: SourcePrepareSummary) -> None:
    """Where a lhotse / Kaldi corpus's splits and phones came from."""
    console.print(f"read as: {summary.kind}; splits: {summary.split_rule}", highlight=False)
    for split, speakers in (summary.split_speakers or {}).items():
        shown = ", ".join(speakers[:_SHOWN_SPEAKERS])
        more = f" and {len(speakers) - _SHOWN_SPEAKERS} more" if len(
            speakers) > _SHOWN_SPEAKERS else ""
        console.print(f"  {split} speakers ({len(speakers)}): {shown or '-'}{more}",
                      highlight=False)
    sources = ", ".join(f"{n} from {origin}" for origin, n in (summary.phone_sources or {}).items())
    console.print(f"phones: {sources}", highlight=False)
    if summary.audio_written:
        console.print(f"audio: {summary.audio_written} utterance(s) cut or resampled to "
                      f"{summary.features.sample_rate} Hz into {summary.out_dir / 'audio'}",
                      highlight=False)
    console.print(f"speakers of each split: {summary.out_dir / 'splits.json'}", highlight=False)


class _Download(StrEnum):
    librispeech = "librispeech"
    librilight = "librilight"
    nltk_timit = "nltk-timit"


_DownloadCorpus = Annotated[
    str,
    typer.Argument(help="librispeech (read audiobooks, 1000 h, CC BY 4.0); librilight (its "
                   "10 h fine-tuning set; LibriSpeech's dev and test come with it); "
                   "nltk-timit (NLTK's TIMIT sample: 16 speakers, CC BY-NC-SA); or any lhotse "
                   "recipe that downloads (cmu_arctic, ljspeech, vctk, libritts, tedlium, "
                   "yesno, ...; see docs/corpora.md).", show_default=False),
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
    typer.Option(help="Base URL holding the archives by file name (an OpenSLR mirror, a local "
                 "server) instead of their usual addresses (LibriSpeech and lhotse recipes).",
                 rich_help_panel="LibriSpeech"),
]
_DownloadOptions = Annotated[
    list[str] | None,
    typer.Option("--lhotse-option",
                 help="lhotse recipe: KEY=VALUE passed to its download function (VALUE read as "
                 "JSON when it parses), e.g. speakers='[\"aew\",\"slt\"]'; repeat.",
                 rich_help_panel="lhotse"),
]
_Pins = Annotated[
    list[str] | None,
    typer.Option("--pin", help="lhotse recipe: FILE=SHA256, an archive's expected SHA-256 "
                 "(added to seqkit's table; the archive is refused before unpacking if it "
                 "differs); repeat.", rich_help_panel="lhotse"),
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
    lhotse_options: _DownloadOptions = None,
    pins: _Pins = None,
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

    Any other NAME is a lhotse recipe, run with its archives checked before they are unpacked
    (SHA-256 where one is published, else named as unpublished and checked for length and
    integrity) and resumed where an earlier download stopped; OUT/seqkit-downloads.json records
    each archive's SHA-256. Then: `seqkit data prepare CORPUS_DIR PREPARED --corpus NAME`.
    """
    if corpus not in {d.value for d in _Download}:
        if subsets or keep_archives or from_zip is not None or url != NLTK_TIMIT_URL or force \
                or sha256 or nltk_index is not None:
            raise ConfigError(
                f"--subsets, --keep-archives, --url, --from-zip, --sha256, --nltk-index and "
                f"--force are for librispeech, librilight and nltk-timit: {corpus} (a lhotse "
                "recipe) takes --lhotse-option, --pin and --mirror"
            )
        _download_recipe(corpus, out, lhotse_options, pins, mirror, output_format)
        return
    if lhotse_options or pins:
        raise ConfigError(f"--lhotse-option and --pin are for lhotse's recipes, not {corpus}: "
                          "drop them")
    if corpus == _Download.nltk_timit:
        if subsets or mirror or keep_archives:
            raise ConfigError("--subsets, --mirror and --keep-archives are for librispeech and "
                              "librilight: drop them for nltk-timit")
        _download_nltk(out, url, from_zip, force, sha256, nltk_index)
        return
    if from_zip is not None or url != NLTK_TIMIT_URL or force or sha256 or (
            nltk_index is not None):
        raise ConfigError("--url, --from-zip, --sha256, --nltk-index and --force are for "
                          f"nltk-timit: {corpus} takes --mirror, and skips subsets "
                          "already downloaded")
    with rich_progress(transient=output_format is TableFormat.json) as progress:
        fetched = download_corpus(
            corpus, out, subsets=split_names(subsets), mirror=mirror,
            keep_archives=keep_archives, progress=progress,
        )
    if output_format is TableFormat.json:
        typer.echo(json.dumps([f.to_dict() for f in fetched], indent=1))
        return
    _print_downloaded(f"{corpus} in {out}", fetched)


def _download_recipe(name: str, out: Path, options: list[str] | None, pins: list[str] | None,
                     mirror: str | None, output_format: TableFormat) -> None:
    pinned = _key_values(pins, "--pin", as_json=False)
    with rich_progress(transient=output_format is TableFormat.json) as progress:
        result = download_recipe(name, out, options=_key_values(options, "--lhotse-option"),
                                 mirror=mirror, pins=pinned, progress=progress)
    if output_format is TableFormat.json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
        return
    table = Table(title=f"lhotse recipe {result.recipe} in {out}")
    for column in ("archive", "status", "check", "sha256"):
        table.add_column(column)
    for item in result.archives:
        table.add_row(item.file.name, item.status,
                      "pinned SHA-256" if item.pinned else "none published: length + integrity",
                      item.sha256[:16] + "...")
    console = Console()
    console.print(table)
    console.print(f"{result.recipe} → {result.corpus_dir}; next: seqkit data prepare "
                  f"{result.corpus_dir} PREPARED --corpus {result.recipe}", highlight=False)


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
