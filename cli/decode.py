"""``seqkit decode``: audio files in, phone sequences with timings out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

import seqkit
from seqkit.atomic import write_atomic
from seqkit.cli.exits import USER_ERROR
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
from seqkit.cli.stream import STDIN, stream_sources
from seqkit.decoding.plots import plot_alignment
from seqkit.decoding.recognize import DecodeOptions, TransducerSearch, audio_files
from seqkit.decoding.results import (
    Hypothesis,
    PhoneSegment,
    RecognitionResult,
    fold_segments,
    utterance_ids,
)
from seqkit.errors import ConfigError

console = Console(soft_wrap=True)


class OutputFormat(StrEnum):
    """How results are printed or written."""

    TEXT = "text"  # utterance id (the file's stem, no whitespace) and phones, one line per file
    JSON = "json"  # timings and scores
    CTM = "ctm"  # NIST CTM: <id> <channel> <start> <duration> <phone> <confidence>


class Fold(IntEnum):
    """Phone set to print: TIMIT's 61 as the model outputs them, or folded to 48 or 39."""

    PHONES_61 = 61
    PHONES_48 = 48
    PHONES_39 = 39


AudioArg = Annotated[
    list[Path],
    typer.Argument(help="Audio files (any format soundfile reads) or directories; with --stream, "
                   "- reads raw 16 kHz 16-bit mono PCM from stdin."),
]
RecursiveOpt = Annotated[
    bool,
    typer.Option("--recursive", "-r", help="Also decode files in subdirectories.",
                 rich_help_panel="Input"),
]
FoldOpt = Annotated[
    Fold | None,
    typer.Option("--fold", help="Print phones folded to 48 or 39 symbols (q dropped, sil runs "
                 "merged, as scoring does).", rich_help_panel="Output"),
]
FormatOpt = Annotated[
    OutputFormat,
    typer.Option("--format", help="text (id and phones), json (id, file, timings, scores) or ctm; "
                 "the id is the file's stem without whitespace.",
                 rich_help_panel="Output"),
]
AlignOpt = Annotated[
    bool,
    typer.Option("--align", help="Write an alignment PNG per file into --out.",
                 rich_help_panel="Output"),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Folder for the output file (decode.txt, .json or .ctm) and the "
                 "alignment PNGs; default: results to stdout, PNGs in the current folder.",
                 rich_help_panel="Output"),
]
StreamOpt = Annotated[
    bool,
    typer.Option("--stream", help="Feed the audio in chunks through a unidirectional model and "
                 "print phones as they are decided (the same phones as without it); latency and "
                 "RTF go to stderr.", rich_help_panel="Streaming"),
]
ChunkOpt = Annotated[
    int, typer.Option("--chunk-ms", help="Chunk size with --stream, in ms.",
                      rich_help_panel="Streaming"),
]
BatchSizeOpt = Annotated[
    int, typer.Option("--batch-size", min=1, help="Files per model call.",
                      rich_help_panel="Runtime"),
]


def _segments(hypothesis: Hypothesis, fold: Fold | None) -> list[PhoneSegment]:
    if fold is None:
        return list(hypothesis.segments)
    return fold_segments(hypothesis.segments, to=int(fold))


def _render(hypotheses: Sequence[Hypothesis], fmt: OutputFormat, fold: Fold | None) -> str:
    ids = utterance_ids([h.name for h in hypotheses])  # no whitespace: line formats split on it
    if fmt == OutputFormat.JSON:
        items = [
            {
                "id": uid,
                "file": h.name,
                "duration": round(h.duration, 4),
                "score": h.score,
                "phones": [
                    {"phone": s.phone, "start": round(s.start, 4), "end": round(s.end, 4),
                     "score": round(s.score, 4)}
                    for s in _segments(h, fold)
                ],
            }
            for uid, h in zip(ids, hypotheses, strict=True)
        ]
        return json.dumps(items, indent=2)
    lines = []
    for uid, h in zip(ids, hypotheses, strict=True):
        segments = _segments(h, fold)
        if fmt == OutputFormat.TEXT:
            lines.append(f"{uid} {' '.join(s.phone for s in segments)}".rstrip())
        else:  # ctm: <file> <channel> <start> <duration> <symbol> <confidence>
            lines.extend(
                f"{uid} 1 {s.start:.3f} {s.end - s.start:.3f} {s.phone} {s.score:.4f}"
                for s in segments
            )
    return "\n".join(lines)


def _write_results(
    result: RecognitionResult, fmt: OutputFormat, fold: Fold | None, out: Path | None, align: bool
) -> None:
    """Results to ``out``/decode.<format> or stdout; alignment PNGs when asked."""
    text = _render(result.hypotheses, fmt, fold)
    if out is not None:
        target = out / f"decode.{'txt' if fmt == OutputFormat.TEXT else fmt.value}"
        write_atomic(target, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
        err_console.print(f"wrote {target}", soft_wrap=True)
    elif text:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    if align:
        folder = out if out is not None else Path.cwd()
        ids = utterance_ids([h.name for h in result.hypotheses])
        for uid, h in zip(ids, result.hypotheses, strict=True):
            png = plot_alignment(h, folder / f"{uid}.align.png")
            err_console.print(f"wrote {png}", soft_wrap=True)


def decode(
    model: ModelArg,
    audio: AudioArg,
    recursive: RecursiveOpt = False,
    beam: BeamOpt = 1,
    lm: LmOpt = None,
    lm_weight: LmWeightOpt = None,
    insertion_bonus: InsertionBonusOpt = 0.0,
    transducer_search: TransducerSearchOpt = TransducerSearch.AUTO,
    max_symbols: MaxSymbolsOpt = DecodeOptions.max_symbols_per_frame,
    fold: FoldOpt = None,
    fmt: FormatOpt = OutputFormat.TEXT,
    align: AlignOpt = False,
    out: OutOpt = None,
    stream: StreamOpt = False,
    chunk_ms: ChunkOpt = 100,
    batch_size: BatchSizeOpt = 8,
) -> None:
    """Decode audio files into phone sequences with start/end times and posterior scores.

    Greedy by default; --beam K runs CTC prefix beam search or the transducer beam search,
    either optionally with a phone n-gram LM (shallow fusion: --lm, --lm-weight). Decoding is
    deterministic, so it takes no seed. Files that cannot be read are reported one line each
    and the others are still decoded; the exit code is 2 if any failed. The real-time factor is
    printed at the end (on stderr, so stdout stays clean for results).

    --stream decodes as the audio arrives (unidirectional models: recipes/*/*_stream.toml), e.g.
    live: arecord -f S16_LE -r 16000 -c 1 | seqkit decode RUN - --stream
    """
    recognizer = seqkit.load(model)
    check_search_flags(beam=beam, lm=lm, lm_weight=lm_weight, max_symbols=max_symbols)
    if stream or any(str(a) == STDIN for a in audio):
        if stream_sources(recognizer, audio, beam=beam, lm=lm, lm_weight=lm_weight,
                          insertion_bonus=insertion_bonus,
                          transducer_search=transducer_search.value, stream=stream,
                          chunk_ms=chunk_ms, fmt=fmt.value, fold=int(fold) if fold else None,
                          align=align, recursive=recursive):
            raise typer.Exit(USER_ERROR)
        return
    files = audio_files(audio, recursive=recursive)
    if not files:
        raise ConfigError(
            "no audio files found: pass files, or a directory with audio (add --recursive "
            "for subdirectories)"
        )
    with rich_progress(transient=True) as progress:
        result = recognizer.recognize(
            [str(f) for f in files], beam=beam, lm=lm, lm_weight=lm_weight,
            insertion_bonus=insertion_bonus, transducer_search=transducer_search.value,
            max_symbols_per_frame=max_symbols, batch_size=batch_size, keep_features=align,
            progress=progress)
    for _name, message in result.failures:
        err_console.print(
            f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True
        )
    _write_results(result, fmt, fold, out, align)
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
