"""Recognition pipeline: audio files or manifest utterances in, phone sequences with timings out.

Front end (:func:`seqkit.audio.load_audio` → :func:`seqkit.audio.compute_features` →
``stats.normalize``) → model → search (greedy or beam) → forced alignment of the result for
per-phone start/end times and posterior scores. Utterances are sorted by length and decoded in
batches; a file that cannot be read is reported in :attr:`RecognitionResult.failures` and the
others are still decoded.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import soundfile
import torch

from seqkit.audio import compute_features, load_audio
from seqkit.audio.features import one_torch_thread
from seqkit.data.manifest import Utterance
from seqkit.decoding.align import (
    ctc_align,
    ctc_path_alignment,
    transducer_align,
    transducer_lattice,
)
from seqkit.decoding.beam import (
    ctc_beam_search,
    transducer_beam_search,
    transducer_beam_search_batched,
)
from seqkit.decoding.greedy import check_max_symbols, ctc_greedy, transducer_greedy
from seqkit.decoding.ngram import LabelScorer, PhoneNgram
from seqkit.decoding.protocol import CTCLike, TransducerAcoustic
from seqkit.decoding.results import DecodedUtterance, Hypothesis, PhoneSegment, RecognitionResult
from seqkit.errors import AudioError, CheckpointError, ConfigError, SeqkitError
from seqkit.models.checkpoint import LoadedModel
from seqkit.models.config import ModelKind
from seqkit.progress import ProgressFn

# Shallow fusion's LM weight when an LM is given without a weight (0 would ignore the LM): the
# value ``seqkit decode/evaluate --lm`` and the CTC demo have always used; tune it per model.
DEFAULT_LM_WEIGHT = 0.5

# What one input to a recognition is: an audio file's path, a waveform at the model's rate, or
# a function that returns such a waveform (raising AudioError), called when its turn comes.
Source = str | torch.Tensor | Callable[[], torch.Tensor]

# above this many encoder frames (60 s at 10 ms, no stacking), "auto" uses the batched search
_LONG_FRAMES = 6000


class TransducerSearch(StrEnum):
    """Which transducer beam search runs (see :mod:`seqkit.decoding.beam`)."""

    AUTO = "auto"  # batched above 60 s of frames, else graves
    GRAVES = "graves"  # Graves 2012: any number of labels per frame, exact when nothing is pruned
    BATCHED = "batched"  # all utterances and hypotheses at once, frame by frame: fast on long files


@dataclass(frozen=True)
class DecodeOptions:
    """How to search.

    Attributes:
        beam: 1 = greedy; K > 1 = beam search keeping K hypotheses.
        lm: phone n-gram LM for shallow fusion in CTC or transducer beam search (beam > 1).
        lm_weight: weight of the LM log-probability; None (the default) takes
            :data:`DEFAULT_LM_WEIGHT` with an LM and 0 without. It changes results, so its
            default lives here and every caller (CLI, demo, scripts) gets the same one.
        insertion_bonus: score added per phone with an LM (balances its bias to short outputs).
        transducer_search: which transducer beam search (:class:`TransducerSearch`; a plain
            string is accepted and converted).
        max_symbols_per_frame: cap on labels the greedy and the batched transducer searches emit
            at one frame.
        batch_size: utterances per model call.
    """

    beam: int = 1
    lm: PhoneNgram | None = None
    lm_weight: float | None = None
    insertion_bonus: float = 0.0
    transducer_search: TransducerSearch = TransducerSearch.AUTO
    max_symbols_per_frame: int = 5
    batch_size: int = 8

    def label_lm(self, vocab: Sequence[str]) -> LabelScorer | None:
        """The LM over the model's label indices (``vocab``: its symbols, 0 the blank), or None."""
        return self.lm.label_scorer(vocab) if self.lm is not None else None

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ConfigError(f"expected beam >= 1, found {self.beam}: use 1 for greedy")
        if self.batch_size < 1:
            raise ConfigError(f"expected batch size >= 1, found {self.batch_size}")
        check_max_symbols(self.max_symbols_per_frame)
        if self.transducer_search not in set(TransducerSearch):
            raise ConfigError(
                f"unknown transducer search {self.transducer_search!r}: choose one of "
                f"{', '.join(TransducerSearch)}"
            )
        object.__setattr__(self, "transducer_search", TransducerSearch(self.transducer_search))
        if self.lm_weight is None:
            object.__setattr__(self, "lm_weight", DEFAULT_LM_WEIGHT if self.lm is not None else 0.0)
        if self.lm_weight != 0.0 and self.lm is None:
            raise ConfigError(
                f"lm_weight {self.lm_weight:g} needs an LM: give an lm, or set lm_weight to 0"
            )
        if self.lm is not None and self.beam == 1:
            raise ConfigError(
                "an LM is only used by beam search, found beam 1: set beam to K > 1 (e.g. 8)"
            )


def check_acoustic_model(loaded: LoadedModel) -> None:
    """Raise CheckpointError unless ``loaded`` is a CTC or transducer model with a front end."""
    if loaded.kind not in (ModelKind.CTC, ModelKind.TRANSDUCER):
        raise CheckpointError(
            f"{loaded.path} holds a {loaded.kind} model, expected a ctc or transducer acoustic "
            "model: pass a run trained with a ctc or transducer recipe"
        )
    if loaded.features is None or loaded.stats is None:
        raise CheckpointError(
            f"{loaded.path} has no feature config or statistics: it cannot decode audio; "
            "use a checkpoint written by seqkit train"
        )


def audio_files(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = False) -> list[Path]:
    """Expand directories into the audio files they hold (by extension), keep files as given.

    Missing paths are kept, so that decoding reports them by name. A directory contributes the
    files whose extension soundfile knows (``.wav``, ``.flac``, ``.ogg``, ``.sph``, ...); with
    ``recursive``, from its subdirectories too, sorted.
    """
    extensions = {f".{ext.lower()}" for ext in soundfile.available_formats()} | {".sph"}
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = path.rglob("*") if recursive else path.iterdir()
            out.extend(sorted(p for p in found if p.is_file() and p.suffix.lower() in extensions))
        else:
            out.append(path)
    return out


def _front_end(loaded: LoadedModel, source: str | torch.Tensor, name: str
               ) -> tuple[torch.Tensor, float]:
    """Normalized (T, F) features of a file or of a waveform at the model's rate, and its
    duration in seconds (AudioError)."""
    assert loaded.features is not None and loaded.stats is not None  # check_acoustic_model
    rate = loaded.features.sample_rate
    wave = load_audio(source, sample_rate=rate) if isinstance(source, str) else source
    window = int(rate * loaded.features.frame_length_ms / 1000)
    if wave.shape[0] < window:
        what = f"audio file {source}" if isinstance(source, str) else name
        raise AudioError(
            f"{what} is {wave.shape[0] / rate * 1000:.1f} ms long: expected at least "
            f"one {loaded.features.frame_length_ms:g} ms frame; remove it or record it again"
        )
    feats = loaded.stats.normalize(compute_features(wave, loaded.features))
    return feats, wave.shape[0] / rate


@dataclass(frozen=True)
class _Searched:
    """What a search found in one batch, with the model outputs that alignment needs.

    Attributes:
        labels: per utterance, label indices (blank excluded).
        scores: per utterance, the search's log-probability; None for greedy.
        outputs: (B, T', V) log-probs (CTC) or (B, T', H) encoder output (transducer).
        lengths: (B,) valid output frames.
    """

    labels: list[tuple[int, ...]]
    scores: list[float | None]
    outputs: torch.Tensor
    lengths: torch.Tensor


def _search_ctc(
    model: CTCLike, feats: torch.Tensor, lengths: torch.Tensor, options: DecodeOptions,
    vocab: list[str],
) -> _Searched:
    log_probs, out_lengths = model.log_probs(feats, lengths)  # (B, T', V), (B,)
    if options.beam == 1:
        labels = [tuple(lab) for lab in ctc_greedy(log_probs, out_lengths)]
        return _Searched(labels, [None] * len(labels), log_probs, out_lengths)
    lm = options.label_lm(vocab)
    hyps = ctc_beam_search(
        log_probs,
        out_lengths,
        beam=options.beam,
        lm=lm,
        lm_weight=options.lm_weight,
        insertion_bonus=options.insertion_bonus,
    )
    return _Searched([h[0].labels for h in hyps], [h[0].score for h in hyps], log_probs,
                     out_lengths)


def _search_transducer(
    model: TransducerAcoustic, feats: torch.Tensor, lengths: torch.Tensor, options: DecodeOptions,
    vocab: list[str],
) -> _Searched:
    f, out_lengths = model.encode(feats, lengths)  # (B, T', H), (B,)
    if options.beam == 1:
        greedy = transducer_greedy(
            model, f, out_lengths, max_symbols_per_frame=options.max_symbols_per_frame
        )
        labels = [tuple(lab) for lab in greedy]
        return _Searched(labels, [None] * len(labels), f, out_lengths)
    batched = options.transducer_search == TransducerSearch.BATCHED or (
        options.transducer_search == TransducerSearch.AUTO and f.shape[1] > _LONG_FRAMES
    )
    lm = options.label_lm(vocab)
    if batched:
        hyps = transducer_beam_search_batched(
            model, f, out_lengths, beam=options.beam, lm=lm, lm_weight=options.lm_weight,
            insertion_bonus=options.insertion_bonus,
            max_symbols_per_frame=options.max_symbols_per_frame,
        )
    else:
        hyps = transducer_beam_search(model, f, out_lengths, beam=options.beam, lm=lm,
                                      lm_weight=options.lm_weight,
                                      insertion_bonus=options.insertion_bonus)
    return _Searched([h[0].labels for h in hyps], [h[0].score for h in hyps], f, out_lengths)


def decode_features(
    loaded: LoadedModel,
    features: Sequence[torch.Tensor],
    *,
    options: DecodeOptions | None = None,
) -> list[DecodedUtterance]:
    """Search and align a batch of normalized feature matrices.

    Args:
        loaded: a CTC or transducer model (:func:`seqkit.models.checkpoint.load_model`).
        features: (T_i, F) normalized features per utterance.
        options: search options. Default greedy.

    Returns:
        Per utterance: the labels, the search score (None for greedy) and the forced alignment
        of the labels.

    Raises:
        CheckpointError: the model is not an acoustic model.
    """
    options = options or DecodeOptions()
    check_acoustic_model(loaded)
    model = loaded.model
    lengths = torch.tensor([x.shape[0] for x in features], dtype=torch.long)
    feats = torch.nn.utils.rnn.pad_sequence(list(features), batch_first=True)  # (B, T, F)
    feats = feats.to(next(model.parameters()).device)
    with torch.no_grad():
        if loaded.kind == ModelKind.CTC:
            found = _search_ctc(model, feats, lengths, options, loaded.vocab)
        else:
            found = _search_transducer(model, feats, lengths, options, loaded.vocab)
        decoded = []
        for b, (labels, score) in enumerate(zip(found.labels, found.scores, strict=True)):
            out = found.outputs[b, : int(found.lengths[b])]  # (T', V) or (T', H)
            if loaded.kind == ModelKind.CTC and options.beam == 1:
                alignment = ctc_path_alignment(out, out.argmax(dim=-1).tolist())
            elif loaded.kind == ModelKind.CTC:
                alignment = ctc_align(out, labels)
            else:
                alignment = transducer_align(transducer_lattice(model, out, labels), labels)
            decoded.append(DecodedUtterance(labels, score, alignment))
    return decoded


def _hypothesis(
    loaded: LoadedModel,
    name: str,
    decoded: DecodedUtterance,
    duration: float,
    feats: torch.Tensor | None,
) -> Hypothesis:
    assert loaded.features is not None
    alignment = decoded.alignment
    stride = int(getattr(loaded.model, "output_stride", 1))
    frame_shift = loaded.features.frame_shift_ms / 1000 * stride
    segments = []
    for i, seg in enumerate(alignment.segments):
        start = min(seg.start * frame_shift, duration)
        last = i == len(alignment.segments) - 1
        end = duration if last else min(seg.end * frame_shift, duration)
        segments.append(PhoneSegment(loaded.vocab[seg.label], start, end, math.exp(seg.log_prob)))
    return Hypothesis(
        name=name,
        phones=tuple(loaded.vocab[k] for k in decoded.labels),
        segments=tuple(segments),
        duration=duration,
        score=alignment.log_prob if decoded.score is None else decoded.score,
        frame_shift=frame_shift,
        features=feats,
        path=alignment.path,
    )


def recognize_sources(
    loaded: LoadedModel,
    items: Sequence[tuple[str, Source]],
    *,
    options: DecodeOptions | None = None,
    keep_features: bool = False,
    progress: ProgressFn | None = None,
) -> RecognitionResult:
    """Decode named inputs: files, waveforms at the model's rate, or functions giving those.

    Args:
        loaded: a CTC or transducer model from :func:`seqkit.models.checkpoint.load_model`.
        items: ``(name, source)`` per input (see :data:`Source`); a source that raises a
            SeqkitError is reported under its name, and the others are still decoded.
        options: search options. Default greedy.
        keep_features: keep each input's features in its hypothesis (for alignment plots).
        progress: optional ``progress(description, done, total)`` callback.

    Returns:
        The hypotheses, in input order, and one ``(name, message)`` per input that failed.

    Raises:
        CheckpointError: the model is not an acoustic model.
    """
    options = options or DecodeOptions()
    check_acoustic_model(loaded)
    started = time.perf_counter()
    loaded_items: list[tuple[int, str, torch.Tensor, float]] = []
    failures: dict[int, tuple[str, str]] = {}
    total = len(items)
    for i, (name, source) in enumerate(items):
        try:
            with one_torch_thread():  # small per-file work: one thread beats two on a busy CPU
                feats, duration = _front_end(loaded, source() if callable(source) else source,
                                             name)
            loaded_items.append((i, name, feats, duration))
        except SeqkitError as err:
            failures[i] = (name, str(err))
        if progress is not None:
            progress("features", i + 1, total)
    # longest first, so that padded batches hold similar lengths
    order = sorted(loaded_items, key=lambda item: -item[2].shape[0])
    results: dict[int, Hypothesis] = {}
    done = 0
    for start in range(0, len(order), options.batch_size):
        batch = order[start : start + options.batch_size]
        decoded = decode_features(loaded, [feats for _, _, feats, _ in batch], options=options)
        for (i, name, feats, duration), dec in zip(batch, decoded, strict=True):
            results[i] = _hypothesis(loaded, name, dec, duration, feats if keep_features else None)
        done += len(batch)
        if progress is not None:
            progress("decode", done, len(order))
    elapsed = time.perf_counter() - started
    return RecognitionResult(
        hypotheses=tuple(results[i] for i in sorted(results)),
        failures=tuple(failures[i] for i in sorted(failures)),
        audio_seconds=sum(item[3] for item in loaded_items),
        elapsed=elapsed,
    )


def recognize_files(
    loaded: LoadedModel,
    paths: Sequence[str | os.PathLike[str]],
    *,
    options: DecodeOptions | None = None,
    keep_features: bool = False,
    progress: ProgressFn | None = None,
) -> RecognitionResult:
    """Decode audio files (any format, rate and channel count soundfile reads).

    Args:
        loaded: a CTC or transducer model from :func:`seqkit.models.checkpoint.load_model`.
        paths: audio files (see :func:`audio_files` to expand directories).
        options: search options. Default greedy.
        keep_features: keep each file's features in its hypothesis (for alignment plots).
        progress: optional ``progress(description, done, total)`` callback.

    Returns:
        The hypotheses, in input order, and one ``(path, message)`` per file that failed
        (missing, empty, corrupt, not audio, too short).

    Raises:
        CheckpointError: the model is not an acoustic model.
        ConfigError: bad options.
    """
    items: list[tuple[str, Source]] = [(str(p), str(p)) for p in paths]
    return recognize_sources(loaded, items, options=options, keep_features=keep_features,
                             progress=progress)


def recognize_utterances(
    loaded: LoadedModel,
    utterances: Sequence[Utterance],
    *,
    options: DecodeOptions | None = None,
    progress: ProgressFn | None = None,
) -> RecognitionResult:
    """Decode manifest utterances; hypotheses are named by utterance id.

    Args and Raises: as :func:`recognize_files`.
    """
    items: list[tuple[str, Source]] = [(u.id, u.audio) for u in utterances]
    return recognize_sources(loaded, items, options=options, progress=progress)
