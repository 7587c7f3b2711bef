"""What decoding returns: per-utterance search results, timed phones, recognition results.

Typed records instead of tuples, and ``None`` (not NaN) where a search has no score of its own,
so that a caller cannot mistake "greedy, no score" for a number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePath

import torch

from seqkit.data.phones import ScoringFolder
from seqkit.decoding.align import Alignment


@dataclass(frozen=True)
class DecodedUtterance:
    """The search result and forced alignment of one utterance, in label indices.

    Attributes:
        labels: label indices, blank excluded.
        score: the search's log-probability of ``labels``; None for greedy search, which keeps
            no score (the alignment's best path scores it instead).
        alignment: forced alignment of ``labels`` (frames in model output frames).
    """

    labels: tuple[int, ...]
    score: float | None
    alignment: Alignment


@dataclass(frozen=True)
class PhoneSegment:
    """One recognized phone with its time span (public: ``seqkit.PhoneSegment``).

    Example:
        >>> seg = seqkit.PhoneSegment("ae", start=0.12, end=0.2, score=0.93)
        >>> f"{seg.phone} {seg.end - seg.start:.2f} s"
        'ae 0.08 s'

    Attributes:
        phone: the symbol.
        start: start time in seconds.
        end: end time in seconds (the next phone's start; the last ends at the audio's end).
        score: posterior probability of the phone at its emission frame, in [0, 1].
    """

    phone: str
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class Hypothesis:
    """The recognition result of one input (public: ``seqkit.Hypothesis``).

    What :meth:`seqkit.Recognizer.decode` returns per input, in input order.

    Example:
        >>> [hyp] = seqkit.load("runs/ctc").decode(["a.wav"])
        >>> hyp.name, hyp.segments[0].start, hyp.segments[-1].end == hyp.duration
        ('a.wav', 0.0, True)
        >>> len(hyp.phones) == len(hyp.segments)
        True

    Attributes:
        name: the audio path as given, the utterance id (evaluation), or ``<array i>`` for the
            i-th input (from 0) given as samples.
        phones: recognized phones, in the model's phone set.
        segments: one per phone, times monotone and covering [0, duration].
        duration: audio length in seconds.
        score: log-probability of the phone sequence: the search's score, or for greedy search
            the best path's.
        frame_shift: seconds per model output frame (feature shift × model.output_stride).
        features: (T, F) normalized features, kept only when asked (for alignment plots).
        path: per model output frame, the symbol index of the best path (blank = 0).
    """

    name: str
    phones: tuple[str, ...]
    segments: tuple[PhoneSegment, ...]
    duration: float
    score: float
    frame_shift: float
    features: torch.Tensor | None = field(default=None, repr=False, compare=False)
    path: tuple[int, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class RecognitionResult:
    """Hypotheses of every input that could be decoded, and the failures (public:
    ``seqkit.RecognitionResult``, from :meth:`seqkit.Recognizer.recognize`).

    Attributes:
        hypotheses: in input order, without the inputs that failed.
        failures: ``(name, message)`` for each input that could not be decoded.
        audio_seconds: total duration of the decoded audio.
        elapsed: wall-clock seconds spent (front end + model + search + alignment).
    """

    hypotheses: tuple[Hypothesis, ...]
    failures: tuple[tuple[str, str], ...]
    audio_seconds: float
    elapsed: float

    @property
    def rtf(self) -> float:
        """The real-time factor, processing seconds per second of audio (0 if no audio)."""
        return self.elapsed / self.audio_seconds if self.audio_seconds > 0 else 0.0


def fold_segments(segments: Sequence[PhoneSegment], to: int) -> list[PhoneSegment]:
    """Timed phones folded to ``to`` (61, 48 or 39) symbols, the way scoring folds them.

    Folding drops ``q``: its span goes to the phone before it (a leading ``q``'s to the first
    phone kept). Runs of ``sil`` become one segment with the best score of the run. The segments
    still cover the same time span, and the labels are
    :func:`seqkit.data.phones.fold_for_scoring` of the phones (one :class:`ScoringFolder`).

    Raises:
        ConfigError: ``to`` is not 61, 48 or 39, or a phone is not a TIMIT symbol.
    """
    folder = ScoringFolder(to)
    out: list[PhoneSegment] = []
    pending: float | None = None  # start of a leading q, given to the first kept phone
    for seg in segments:
        kept = folder.push(seg.phone)
        if kept is not None:
            start = seg.start if pending is None else pending
            pending = None
            out.append(PhoneSegment(kept, start, seg.end, seg.score))
        elif out:  # a q joins the phone before it; a sil joins the sil run with its best score
            last = out[-1]
            merged = folder.symbol(seg.phone) is not None
            score = max(last.score, seg.score) if merged else last.score
            out[-1] = replace(last, end=seg.end, score=score)
        elif pending is None:
            pending = seg.start
    return out


def utterance_ids(names: Sequence[str]) -> list[str]:
    """One id per decoded file for line formats (text, CTM): the file's stem, without whitespace,
    unique.

    CTM and text lines split on whitespace, so a file named ``my talk.wav`` written as is put
    ``my`` in the id field and shifted every other field (#20). Whitespace runs become ``_``;
    a stem met again (``a/x.wav``, ``b/x.wav``, or ``a b`` beside ``a_b``) gets ``-2``, ``-3``, ...
    JSON output keeps the file beside its id.

    Args:
        names: the decoded files, in output order.

    Returns:
        Their ids, in the same order.
    """
    ids: list[str] = []
    taken: set[str] = set()
    for name in names:
        base = re.sub(r"\s+", "_", PurePath(name).stem.strip()) or "utterance"
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        taken.add(candidate)
        ids.append(candidate)
    return ids
