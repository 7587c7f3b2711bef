"""Streaming speed: latency and real-time factor per chunk size, CTC and transducer.

About 10 s of espeak speech is fed to :class:`~seqkit.decoding.streaming.StreamingRecognizer`
chunk by chunk, as a live source would deliver it, with models of the ``synth/*_stream`` recipes'
shapes (random weights unless trained runs are given). The peer is the whole-file decode of the
same model on the same audio (``seqkit decode`` without ``--stream``): ``ratio`` = streaming RTF
/ whole-file RTF, the price of deciding phones while the audio arrives.

:func:`run_long` feeds the same speech over and over as one long live stream to the beam searches
(with a trigram LM, so that the LM's memo tables fill too) and reports, per pass, the compute per
chunk, the search's memo entries and the labels its longest hypothesis holds: flat when the
search forgets what no live hypothesis can use.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
from pathlib import Path

from seqkit.audio import load_audio
from seqkit.bench.decode import random_model, speech, time_decode
from seqkit.decoding.ngram import PhoneNgram, estimate_ngram
from seqkit.decoding.recognize import DecodeOptions
from seqkit.decoding.streaming import StreamingRecognizer, StreamResult
from seqkit.models.checkpoint import LoadedModel, load_model

CHUNKS_MS = (10, 40, 100, 320)
_MODELS = (("ctc", "synth/ctc_lstm_stream"), ("transducer", "synth/transducer_stream"))


def _stream_once(loaded: LoadedModel, audio: Path, options: DecodeOptions,
                 chunk_ms: int) -> StreamResult:
    wave = load_audio(audio)
    step = int(16000 * chunk_ms / 1000)
    recognizer = StreamingRecognizer(loaded, options, chunk_ms=chunk_ms)
    for start in range(0, wave.shape[0], step):
        recognizer.accept(wave[start : start + step])
    return recognizer.finish()[1]


def run(
    repeats: int = 3,
    *,
    ctc_checkpoint: str | os.PathLike[str] | None = None,
    transducer_checkpoint: str | os.PathLike[str] | None = None,
    chunks_ms: tuple[int, ...] = CHUNKS_MS,
    seed: int = 0,
) -> list[dict]:
    """Latency, per-chunk compute time and RTF of streaming greedy decoding, per chunk size.

    Args:
        repeats: timed repeats per row; the median run (by RTF) is kept. Default 3.
        ctc_checkpoint: a trained unidirectional CTC run; default a random synth-recipe model.
        transducer_checkpoint: a trained unidirectional transducer; default random weights.
        chunks_ms: chunk sizes in ms. Default (10, 40, 100, 320).
        seed: seed for the random models.

    Returns:
        One row per (model, chunk): ``model``, ``weights``, ``chunk_ms``, ``latency_ms``
        (algorithmic), ``chunk_median_ms`` and ``chunk_p95_ms`` (compute per chunk), ``rtf``,
        ``whole_file_rtf`` and ``ratio`` (streaming / whole file).
    """
    rows: list[dict] = []
    options = DecodeOptions()
    with tempfile.TemporaryDirectory(prefix="seqkit-bench-stream-") as tmp:
        audio = speech(Path(tmp))
        given = {"ctc": ctc_checkpoint, "transducer": transducer_checkpoint}
        for kind, recipe in _MODELS:
            checkpoint = given[kind]
            loaded = load_model(checkpoint) if checkpoint else random_model(
                kind, recipe, audio, seed)
            whole = time_decode(loaded, audio, options, repeats)["rtf"]
            for chunk_ms in chunks_ms:
                _stream_once(loaded, audio, options, chunk_ms)  # warm-up
                runs = sorted((_stream_once(loaded, audio, options, chunk_ms)
                               for _ in range(repeats)), key=lambda r: r.stats.rtf)
                stats = runs[len(runs) // 2].stats
                rows.append({
                    "model": kind, "weights": "trained" if checkpoint else "random",
                    "chunk_ms": chunk_ms, "latency_ms": stats.latency_ms,
                    "chunk_median_ms": stats.chunk_ms(0.5), "chunk_p95_ms": stats.chunk_ms(0.95),
                    "rtf": stats.rtf, "whole_file_rtf": whole, "ratio": stats.rtf / whole,
                })
    return rows


def run_long(
    passes: int = 6,
    *,
    beam: int = 4,
    chunk_ms: int = 100,
    ctc_checkpoint: str | os.PathLike[str] | None = None,
    transducer_checkpoint: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> list[dict]:
    """One long stream (the ~10 s speech ``passes`` times) through the streaming beam searches.

    Args:
        passes: times the speech is fed, one after the other. Default 6 (about a minute).
        beam: hypotheses kept (CTC prefix beam search, Graves's transducer search). Default 4.
        chunk_ms: chunk size in ms. Default 100.
        ctc_checkpoint, transducer_checkpoint, seed: as for :func:`run` (``seed`` also draws
            the phone strings the trigram LM is estimated on: its scores do not matter here,
            only that the search consults it).

    Returns:
        One row per (model, pass): ``model``, ``weights``, ``beam``, ``stream_s`` (audio fed by
        the pass's end), ``chunk_median_ms`` (compute per chunk in the pass), ``phones``
        (decided so far), ``memo_entries`` and ``held_labels`` (the search's memo tables and
        longest hypothesis at the pass's end).
    """
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="seqkit-bench-stream-") as tmp:
        audio = speech(Path(tmp))
        wave = load_audio(audio)
        step = int(16000 * chunk_ms / 1000)
        given = {"ctc": ctc_checkpoint, "transducer": transducer_checkpoint}
        for kind, recipe in _MODELS:
            checkpoint = given[kind]
            loaded = load_model(checkpoint) if checkpoint else random_model(
                kind, recipe, audio, seed)
            options = DecodeOptions(beam=beam, transducer_search="graves",
                                    lm=_random_trigram(loaded.vocab[1:], seed), lm_weight=0.5,
                                    insertion_bonus=1.0)
            recognizer = StreamingRecognizer(loaded, options, chunk_ms=chunk_ms)
            phones = 0
            for index in range(passes):
                first = len(recognizer.chunk_seconds)
                for start in range(0, wave.shape[0], step):
                    phones += len(recognizer.accept(wave[start : start + step]))
                search = recognizer.search
                rows.append({
                    "model": kind, "weights": "trained" if checkpoint else "random",
                    "beam": beam, "stream_s": round((index + 1) * wave.shape[0] / 16000, 1),
                    "chunk_median_ms": 1000 * statistics.median(recognizer.chunk_seconds[first:]),
                    "phones": phones, "memo_entries": search.memo_size(),
                    "held_labels": search.held_labels(),
                })
    return rows


def _random_trigram(phones: list[str], seed: int) -> PhoneNgram:
    """A trigram LM over ``phones`` estimated on seeded random phone strings."""
    rng = random.Random(seed)
    return estimate_ngram([[rng.choice(phones) for _ in range(20)] for _ in range(500)], phones,
                          order=3)
