"""``seqkit data``: synthesize the embedded corpus and prepare manifests from a corpus."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Make and prepare speech corpora (the embedded synthesized corpus, TIMIT).",
    no_args_is_help=True,
)

# --- synth (owned by the corpus-synthesis work) -----------------------------------------------

from pathlib import Path as _SynthPath  # noqa: E402
from typing import Annotated as _Annotated  # noqa: E402

from seqkit.data.synth import DEFAULT_SEED as _SYNTH_SEED  # noqa: E402
from seqkit.data.synth import DEFAULT_SENTENCES as _SYNTH_SENTENCES  # noqa: E402
from seqkit.data.synth import DEFAULT_SPEAKERS as _SYNTH_SPEAKERS  # noqa: E402


@app.command(
    "synth",
    epilog="Example: seqkit data synth corpus --speakers 80 --sentences 18 --seed 0",
)
def synth(
    out: _Annotated[_SynthPath, typer.Argument(help="Corpus directory to create (TIMIT layout).")],
    speakers: _Annotated[int, typer.Option(help="Number of speakers (about 20% test, 12.5% dev).",
                                           rich_help_panel="Corpus")] = _SYNTH_SPEAKERS,
    sentences: _Annotated[int, typer.Option(help="Sentences per speaker.",
                                            rich_help_panel="Corpus")] = _SYNTH_SENTENCES,
    seed: _Annotated[int, typer.Option(help="Same seed, byte-identical corpus.",
                                       rich_help_panel="Corpus")] = _SYNTH_SEED,
    clean: _Annotated[bool, typer.Option("--clean", help="No noise, gain, reverberation or "
                                         "rate/pitch jitter.", rich_help_panel="Corpus")] = False,
    jobs: _Annotated[int | None, typer.Option(help="Worker processes (default: the CPU count).",
                                              rich_help_panel="Runtime")] = None,
    force: _Annotated[bool, typer.Option("--force", help="Replace a non-empty OUT.",
                                         rich_help_panel="Runtime")] = False,
) -> None:
    """Synthesize the embedded speech corpus with espeak-ng, in TIMIT's exact format.

    Speakers are English accents (dialect regions DR1-DR8) with own voices, rates and pitches.
    Train, dev and test speakers use disjoint voices; OUT/splits.json lists them.
    Each utterance is a NIST SPHERE 16 kHz .WAV with its .PHN, .WRD and .TXT.
    """
    import os

    from rich.console import Console
    from rich.table import Table

    from cli.progress import rich_progress
    from seqkit.data.synth import synthesize_corpus

    with rich_progress() as progress:
        summary = synthesize_corpus(
            out, speakers=speakers, sentences=sentences, seed=seed, clean=clean,
            jobs=jobs if jobs is not None else (os.cpu_count() or 1), force=force,
            progress=progress,
        )
    table = Table(title=f"synthesized corpus {summary.path}")
    for column in ("split", "speakers", "utterances", "hours"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, size in summary.splits.items():
        table.add_row(split, str(size.speakers), str(size.utterances), f"{size.hours:.3f}")
    Console().print(table)


# --- prepare (owned by the corpus-reading work) -----------------------------------------------
