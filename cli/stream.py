"""``seqkit decode --stream``: feed audio in chunks, print phones as they are decided.

Files are read whole and fed chunk by chunk (what a live source would deliver); ``-`` reads raw
16 kHz 16-bit mono little-endian PCM from stdin, chunk by chunk, as it arrives.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.markup import escape

from seqkit.audio import SAMPLE_RATE, load_audio
from seqkit.audio.features import one_torch_thread
from seqkit.cli.progress import err_console
from seqkit.data.phones import ScoringFolder
from seqkit.decoding.recognize import audio_files
from seqkit.decoding.results import utterance_ids
from seqkit.decoding.streaming import StreamResult
from seqkit.errors import ConfigError, SeqkitError
from seqkit.recognizer import PhoneStream, Recognizer

STDIN = "-"


def _pcm_chunks(samples_per_chunk: int) -> Iterator[torch.Tensor]:
    """Raw s16le mono PCM from stdin, ``samples_per_chunk`` samples at a time (the last shorter)."""
    stream = sys.stdin.buffer
    need = 2 * samples_per_chunk
    buffer = b""
    ended = False
    while not ended:
        while len(buffer) < need:  # a pipe may deliver less than asked: read until full or EOF
            data = stream.read(need - len(buffer))
            if not data:
                ended = True
                break
            buffer += data
        usable = len(buffer) - len(buffer) % 2
        if usable:
            pcm = np.frombuffer(buffer[:usable], dtype="<i2").astype(np.float32) / 32768.0
            yield torch.from_numpy(pcm)
        buffer = buffer[usable:]
    if buffer:  # an odd byte count: the last sample is cut, and cannot be decoded
        err_console.print(
            f"[bold yellow]warning:[/bold yellow] stdin ended inside a sample: {len(buffer)} "
            "trailing byte dropped (expected 16-bit samples, an even number of bytes)",
            highlight=False, soft_wrap=True)


def _file_chunks(path: str, samples_per_chunk: int, rate: int) -> Iterator[torch.Tensor]:
    wave = load_audio(path, sample_rate=rate)
    for start in range(0, wave.shape[0], samples_per_chunk):
        yield wave[start : start + samples_per_chunk]


def _echo(text: str) -> None:
    """Write to stdout at once (phones must show while the audio is still arriving)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def _stream_one(stream: PhoneStream, source: str, uid: str, fmt: str, fold: int | None
                ) -> StreamResult:
    """Decode one source, printing phones as they come in text mode."""
    per_chunk = stream.samples_per_chunk
    chunks = (_pcm_chunks(per_chunk) if source == STDIN
              else _file_chunks(source, per_chunk, stream.sample_rate))
    folder = ScoringFolder(fold) if fold is not None else None
    if fmt == "text":
        _echo(uid)
    for chunk in chunks:
        phones = stream.accept(chunk)
        phones = folder.fold(phones) if folder is not None else phones
        if fmt == "text" and phones:
            _echo(" " + " ".join(phones))
    last = stream.finish()
    if fmt == "text":
        last = folder.fold(last) if folder is not None else last
        _echo((" " + " ".join(last) if last else "") + "\n")
    return stream.result


def _stats_line(source: str, result: StreamResult) -> str:
    s = result.stats
    return (
        f"{source}: {s.audio_seconds:.2f} s of audio; algorithmic latency {s.latency_ms:.0f} ms "
        f"(chunk + front-end lookahead + frame stacking); compute per chunk median "
        f"{s.chunk_ms(0.5):.2f} ms, p95 {s.chunk_ms(0.95):.2f} ms; RTF {s.rtf:.4f}"
    )


def _json_item(source: str, uid: str, result: StreamResult) -> dict[str, Any]:
    s = result.stats
    return {
        "id": uid,
        "file": source,
        "duration": round(s.audio_seconds, 4),
        "score": result.score,
        "phones": [
            {"phone": p, "decided_at": round(t, 4)}
            for p, t in zip(result.phones, result.decided_at, strict=True)
        ],
        "latency_ms": round(s.latency_ms, 1),
        "chunk_compute_ms_median": round(s.chunk_ms(0.5), 3),
        "chunk_compute_ms_p95": round(s.chunk_ms(0.95), 3),
        "rtf": round(s.rtf, 5),
    }


def _sources(audio: list[Path], recursive: bool) -> list[str]:
    """``-`` as is, directories expanded into their audio files."""
    if sum(str(a) == STDIN for a in audio) > 1:
        raise ConfigError("'-' (stdin) can be given once")
    out: list[str] = []
    for a in audio:
        found = [STDIN] if str(a) == STDIN else audio_files([a], recursive=recursive)
        out.extend(str(p) for p in found)
    return out


def stream_sources(
    recognizer: Recognizer, audio: list[Path], *, beam: int, lm: Path | None,
    lm_weight: float | None, insertion_bonus: float, transducer_search: str, stream: bool,
    chunk_ms: int, fmt: str, fold: int | None, align: bool, recursive: bool,
) -> int:
    """Stream every source; print results and stats; return how many failed."""
    if not stream:
        raise ConfigError("'-' (raw PCM on stdin) is decoded as a stream: add --stream")
    if align:
        raise ConfigError("--align needs the whole file's forced alignment: drop --stream")
    if fmt not in ("text", "json"):
        raise ConfigError(
            f"--stream prints text or json, found --format {fmt}: ctm needs the forced "
            "alignment of the whole file, so drop --stream for ctm"
        )
    if beam > 1 and recognizer.kind == "transducer" and transducer_search == "batched":
        raise ConfigError(
            f"--stream (--chunk-ms {chunk_ms}): a stream is searched with Graves's transducer "
            "beam search, found --transducer-search batched (whole files only): use graves or "
            "auto"
        )

    def start() -> PhoneStream:
        try:
            return recognizer.stream(SAMPLE_RATE, beam=beam, lm=lm, lm_weight=lm_weight,
                                     insertion_bonus=insertion_bonus, chunk_ms=chunk_ms)
        except ConfigError as err:  # the library says what is wrong; the flag is ours to name
            raise ConfigError(f"--stream (--chunk-ms {chunk_ms}): {err}") from None

    start()  # a model or options that cannot stream fail before any source is read
    sources = _sources(audio, recursive)
    failures = 0
    items = []
    for source, uid in zip(sources, utterance_ids(sources), strict=True):
        try:
            with one_torch_thread():  # many tiny per-chunk ops: one thread is fastest
                result = _stream_one(start(), source, uid, fmt, fold)
        except SeqkitError as err:
            if fmt == "text":
                _echo("\n")
            err_console.print(f"[bold red]error:[/bold red] {escape(str(err))}", highlight=False,
                              soft_wrap=True)
            failures += 1
            continue
        err_console.print(_stats_line(source, result), highlight=False, soft_wrap=True)
        items.append(_json_item(source, uid, result))
    if fmt == "json":
        _echo(json.dumps(items, indent=2) + "\n")
    return failures
