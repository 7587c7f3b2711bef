"""Streaming recognition: audio in chunks, phones out as soon as they are decided.

A unidirectional model's output at a frame depends on the past only, so a stream can be decoded
while it arrives: the front end keeps the samples and frames it still needs
(:class:`seqkit.audio.streaming.StreamingFeatures`), frames are stacked as the encoder stacks
them, the encoder's LSTM state is carried from chunk to chunk (:meth:`Encoder.forward_chunk`),
a transducer's encoder outputs are grouped ``joint_stride`` at a time as
:meth:`TransducerModel.encode` groups them, and the search advances a chunk at a time. Every
piece computes what the whole-file decode computes, so the phones are the same; a greedy search
decides a phone when it emits it, a beam search when every kept hypothesis agrees on it.

Algorithmic latency (audio that must arrive before a frame's phone can be decided) = the chunk
+ the front end's lookahead (15 ms rest of window + 40 ms of Δ/ΔΔ context for fbank123) + up to
``output_stride - 1`` frames waiting to complete an output frame (``stack`` x ``joint_stride``
input frames).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqkit.audio.streaming import StreamingFeatures
from seqkit.decoding.beam import CTCPrefixBeamSearch, FusionScorer, TransducerBeamSearch
from seqkit.decoding.greedy import CTCGreedySearch, TransducerGreedySearch
from seqkit.decoding.recognize import DecodeOptions, TransducerSearch, check_acoustic_model
from seqkit.errors import ConfigError
from seqkit.models.checkpoint import LoadedModel
from seqkit.models.config import ModelKind
from seqkit.models.encoder import StreamStacker


def check_streamable(loaded: LoadedModel, options: DecodeOptions, chunk_ms: float = 100) -> None:
    """Raise ConfigError unless ``loaded`` can be streamed with ``options`` in ``chunk_ms`` chunks.

    Raises:
        ConfigError: the model is bidirectional, the options do not stream, or the chunk is
            shorter than one feature frame (it could not complete a single frame).
        CheckpointError: the model is not an acoustic model.
    """
    check_acoustic_model(loaded)
    assert loaded.features is not None  # check_acoustic_model
    shift = loaded.features.frame_shift_ms
    if chunk_ms < shift:
        raise ConfigError(
            f"expected a chunk of at least {shift:g} ms (one frame), found {chunk_ms:g} ms"
        )
    if loaded.config.encoder.bidirectional:
        raise ConfigError(
            f"{loaded.path} is a bidirectional model: its first output needs the whole "
            "recording, so it cannot stream; train a unidirectional recipe "
            "(recipes/synth/ctc_lstm_stream.toml or transducer_stream.toml) or decode whole files"
        )
    batched = options.transducer_search == TransducerSearch.BATCHED
    if loaded.kind == ModelKind.TRANSDUCER and options.beam > 1 and batched:
        raise ConfigError(
            "a stream is searched with Graves's transducer beam search, found transducer_search "
            "batched (whole files only): use graves or auto"
        )


@dataclass(frozen=True)
class StreamStats:
    """Timing of one stream (public: ``seqkit.StreamStats``).

    Attributes:
        audio_seconds: audio received.
        chunk_seconds: compute time of each chunk (front end + model + search), in order.
        finish_seconds: compute time of the end of stream (last frames, final search step).
        latency_ms: algorithmic latency: chunk + front-end lookahead + the wait for an output
            frame's input frames (frame stacking and the transducer's ``joint_stride``).
    """

    audio_seconds: float
    chunk_seconds: tuple[float, ...]
    finish_seconds: float
    latency_ms: float

    @property
    def rtf(self) -> float:
        """Compute seconds per second of audio (0 if no audio)."""
        total = sum(self.chunk_seconds) + self.finish_seconds
        return total / self.audio_seconds if self.audio_seconds > 0 else 0.0

    def chunk_ms(self, quantile: float) -> float:
        """Compute time per chunk at ``quantile`` (0.5 = median, 0.95 = p95), in ms."""
        if not self.chunk_seconds:
            return 0.0
        ordered = sorted(self.chunk_seconds)
        if quantile == 0.5:
            return 1000 * statistics.median(ordered)
        return 1000 * ordered[min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))]


@dataclass(frozen=True)
class StreamResult:
    """The outcome of one stream (public: ``seqkit.StreamResult``, from
    :attr:`seqkit.PhoneStream.result`).

    Attributes:
        labels: recognized label indices (blank excluded).
        phones: the same as symbols of the model's phone set.
        score: the search's log-probability; None for greedy search, which keeps no score.
        decided_at: per phone, seconds of audio received when it was decided.
        stats: timing.
    """

    labels: tuple[int, ...]
    phones: tuple[str, ...]
    score: float | None
    decided_at: tuple[float, ...]
    stats: StreamStats


class StreamingRecognizer:
    """Decode one audio stream chunk by chunk with a unidirectional CTC or transducer model.

    Args:
        loaded: the model (:func:`seqkit.models.checkpoint.load_model`).
        options: search options; ``beam`` 1 = greedy, K > 1 = CTC prefix beam search (with the
            LM if given) or Graves's transducer beam search.
        chunk_ms: the chunk size callers feed (at least one feature frame), for the latency
            figure and :attr:`samples_per_chunk`. Default 100.

    Raises:
        ConfigError: the model is bidirectional, the options do not stream, or the chunk is
            shorter than one frame.
        CheckpointError: the model is not an acoustic model.
    """

    def __init__(
        self, loaded: LoadedModel, options: DecodeOptions | None = None, *, chunk_ms: float = 100
    ) -> None:
        options = options or DecodeOptions()
        check_streamable(loaded, options, chunk_ms)
        assert loaded.features is not None  # check_acoustic_model
        shift = loaded.features.frame_shift_ms
        self.loaded = loaded
        self.model = loaded.model
        self.front = StreamingFeatures(loaded.features, loaded.stats)
        # input frames -> stacked steps -> encoder -> (transducer) joint_stride groups
        self.stacker = StreamStacker(loaded.config.encoder.stack, loaded.input_dim)
        joint_stride = loaded.config.joint_stride if loaded.kind == ModelKind.TRANSDUCER else 1
        self.joint_stacker = StreamStacker(joint_stride, self.model.encoder.output_dim)
        self.states: list[Any] | None = None
        self.search = _make_search(loaded, options)
        self.beam = options.beam
        self.rate = loaded.features.sample_rate
        self.samples_in = 0
        self.emitted = 0
        self.decided_at: list[float] = []
        self.chunk_seconds: list[float] = []
        self.finish_seconds = 0.0
        self.samples_per_chunk = int(self.rate * chunk_ms / 1000)
        self.latency_ms = (chunk_ms + self.front.lookahead_ms
                           + (self.model.output_stride - 1) * shift)

    def _advance(self, frames: torch.Tensor, final: bool) -> list[str]:
        """Stack the new frames, run the encoder and the search; the newly decided phones."""
        stacked = self.stacker.push(frames, final=final)  # (T_enc, stack * F)
        with torch.no_grad():
            h = stacked.new_zeros(0, self.model.encoder.output_dim)  # (0, H_enc)
            if stacked.shape[0]:
                h, self.states = self.model.encoder.forward_chunk(stacked[None], self.states)
                h = h[0]  # (T_enc, H_enc)
            h = self.joint_stacker.push(h, final=final)  # (T', joint_stride * H_enc)
            if h.shape[0]:
                _step(self.model, self.search, h)  # (T', H)
        new = _decided_since(self.search, self.emitted, final)
        self.emitted += len(new)
        self.decided_at.extend([self.samples_in / self.rate] * len(new))
        return [self.loaded.vocab[k] for k in new]

    def accept(self, samples: torch.Tensor) -> list[str]:
        """Feed the next samples ((N,) float32 in [-1, 1]); return the phones now decided."""
        started = time.perf_counter()
        self.samples_in += int(samples.shape[0])
        phones = self._advance(self.front.accept(samples), final=False)
        self.chunk_seconds.append(time.perf_counter() - started)
        return phones

    def finish(self) -> tuple[list[str], StreamResult]:
        """End of stream: the last decided phones and the whole result.

        Raises:
            AudioError: the stream was shorter than one analysis window.
        """
        started = time.perf_counter()
        phones = self._advance(self.front.finish(), final=True)
        self.finish_seconds = time.perf_counter() - started
        labels, score = _final(self.search)
        stats = StreamStats(
            audio_seconds=self.samples_in / self.rate,
            chunk_seconds=tuple(self.chunk_seconds),
            finish_seconds=self.finish_seconds,
            latency_ms=self.latency_ms,
        )
        result = StreamResult(
            labels=tuple(labels),
            phones=tuple(self.loaded.vocab[k] for k in labels),
            score=score,
            decided_at=tuple(self.decided_at),
            stats=stats,
        )
        return phones, result


def _make_search(loaded: LoadedModel, options: DecodeOptions) -> Any:
    if loaded.kind == ModelKind.CTC and options.beam == 1:
        return CTCGreedySearch()
    vocab = len(loaded.vocab)
    if loaded.kind == ModelKind.CTC:
        return CTCPrefixBeamSearch(
            beam=options.beam,
            lm=options.label_lm(loaded.vocab),
            lm_weight=options.lm_weight,
            insertion_bonus=options.insertion_bonus,
            top_k=min(vocab, options.beam + 1),  # as ctc_beam_search's default
        )
    if options.beam == 1:
        return TransducerGreedySearch(
            loaded.model, max_symbols_per_frame=options.max_symbols_per_frame
        )
    fusion = FusionScorer(options.label_lm(loaded.vocab), options.lm_weight,
                          options.insertion_bonus, vocab)
    return TransducerBeamSearch(loaded.model, beam=options.beam, fusion=fusion)


def _step(model: Any, search: Any, h: torch.Tensor) -> None:
    """Advance ``search`` over (T', H) encoder output."""
    if isinstance(search, CTCGreedySearch | CTCPrefixBeamSearch):
        log_probs = model.output(h).float().log_softmax(dim=-1)  # (T', V), as CTCModel.log_probs
        if isinstance(search, CTCGreedySearch):
            search.step(log_probs)
        else:
            search.step(np.ascontiguousarray(log_probs.numpy()))
    else:
        search.step(h)


def _decided_since(search: Any, start: int, final: bool) -> Sequence[int]:
    """The labels ``search`` has decided from label ``start`` on (all of the best at the end)."""
    if isinstance(search, CTCGreedySearch | TransducerGreedySearch):
        return search.labels[start:]
    return search.results()[0].labels[start:] if final else search.decided_since(start)


def _final(search: Any) -> tuple[list[int], float | None]:
    if isinstance(search, CTCGreedySearch | TransducerGreedySearch):
        return list(search.labels), None
    best = search.results()[0]
    return list(best.labels), best.score
