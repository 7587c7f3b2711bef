"""One interface for the engines that speak the synthesized corpus from a phone sequence.

The corpus must say what its labels say, so every engine is driven with the phones we chose
(a sentence's pronunciation in TIMIT's 61 symbols, :mod:`seqkit.synth.pronounce`) and reports
when it spoke each one. An engine maps those phones onto its own phone set; a phone a voice
lacks is mapped by a table the engine documents or refused with :class:`VoiceError` *before*
synthesis, never silently swapped for another sound. The timings an engine reports become the
``.PHN`` boundaries; :func:`check_segments` holds every engine to the same rules.

Engines made from recordings of people (piper, flite, festival) are what lets a model trained on
the corpus hear people: espeak-ng's rule-based phoneme realizations are the errors no espeak
setting removes (#17).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from seqkit.data.phones import PHONES_61
from seqkit.errors import CorpusError


class VoiceError(CorpusError):
    """A voice cannot say what it was asked (a phone it lacks and no mapping for it)."""


@dataclass(frozen=True)
class Spoken:
    """What a voice said: audio and the TIMIT phone segments inside it.

    Attributes:
        audio: (N,) float32 mono in [-1, 1], at ``sample_rate``.
        sample_rate: the engine's output rate (it is resampled to 16 kHz by the corpus writer).
        phones: ``(start, end, label)`` in samples at ``sample_rate``: contiguous, from 0 to N,
            labels from TIMIT's 61 (``h#`` for the silence at both ends, ``pau`` inside;
            stop closures ``bcl dcl gcl pcl tcl kcl`` where the engine's timing shows them).
    """

    audio: np.ndarray
    sample_rate: int
    phones: list[tuple[int, int, str]]


class VoiceEngine(Protocol):
    """A speech synthesizer driven by phones.

    Attributes:
        name: the engine's name as ``seqkit data synth --engines`` spells it.
        voices: the voices it offers (each a recording of one person, or a rule set).
    """

    name: str
    voices: tuple[str, ...]

    def speak(self, phones: Sequence[str], voice: str, *, rate: float = 1.0) -> Spoken:
        """Say ``phones`` (TIMIT-61, no closures, ``pau`` between phrases) with ``voice``.

        Args:
            phones: the pronunciation to say; closures are not given, the engine's timing of
                each stop decides them.
            voice: one of :attr:`voices`.
            rate: speaking rate relative to the voice's own (1.0); 1.2 is 20% faster.

        Raises:
            VoiceError: a phone the voice lacks and no mapping for it; an unknown voice.
        """
        ...


def check_segments(segments: Sequence[tuple[int, int, str]], length: int, where: str) -> None:
    """Refuse segments that are out of order, leave gaps, leave the audio or use unknown labels.

    Raises:
        CorpusError: naming ``where`` (engine and voice) and the first bad segment.
    """
    position = 0
    for start, end, label in segments:
        if start != position or end <= start:
            raise CorpusError(f"{where}: segment {start}-{end} {label} does not follow the one "
                              f"before (ends at {position}) or is empty")
        if label not in PHONES_61:
            raise CorpusError(f"{where}: {label!r} is not a TIMIT phone")
        position = end
    if position != length:
        raise CorpusError(f"{where}: segments end at {position}, the audio at {length} samples")
