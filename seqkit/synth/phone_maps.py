"""What a voice is asked to say, in its own phones, and the segments it reports back.

flite's and festival's US English voices all speak phones named like TIMIT's (the CMU / "radio"
phone sets are TIMIT's symbols less the allophones), so a voice's phone map takes TIMIT-61 phones
to other TIMIT phones: a phone the voice has stays itself, an allophone it lacks becomes the phones
nearest to it (``axr`` -> ``er``, ``el`` -> ``ax l``), and anything else is refused with
:class:`~seqkit.synth.voices.VoiceError` before synthesis. Neither program can be trusted to refuse
a phone itself (flite's clustergen voices say unknown phones as something; festival's diphone
voices silently put ``ax-ax`` or ``pau-pau`` where a diphone is missing), so the map is the only
guard. Because the substitutes are themselves TIMIT phones, the labels of the corpus are what the
voice was asked to say after mapping: the audio and the labels say the same thing.

A diphone voice also lacks some phone *pairs*; its map lists them, says a pair it lacks in
another way where the map has a repair for it (the labels follow), and refuses the rest.
:func:`segments_from_ends` turns the end times a program reports into the ``(start, end, label)``
segments of :class:`~seqkit.synth.voices.Spoken`, and :func:`spoken_from_ends` checks them and
returns what the voice said.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from seqkit.errors import CorpusError
from seqkit.synth.closures import split_closures
from seqkit.synth.voices import Spoken, VoiceError, check_segments

# The CMU phone set (39 phonemes, as in CMUdict, plus the pause) that flite's voices and
# festival's US voices were recorded and labelled with.
CMU_PHONES: frozenset[str] = frozenset(
    "aa ae ah ao aw ax ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh "
    "uw v w y z zh pau".split()
)

# TIMIT phones outside the CMU set, each said as the CMU phones nearest to it. The syllabic
# consonants become schwa + consonant, as CMUdict writes "little" (l ih t ax l) and "button"
# (b ah t ax n); the flap is said as the voiced stop it sounds like; a stop closure on its own is
# espeak-ng's glottalized /t/ ("button", see seqkit.synth.espeak_phones), said as a plain t.
CMU_SUBSTITUTES: Mapping[str, tuple[str, ...]] = {
    "ix": ("ih",), "ax-h": ("ax",), "ux": ("uw",), "axr": ("er",),
    "el": ("ax", "l"), "em": ("ax", "m"), "en": ("ax", "n"), "eng": ("ax", "ng"),
    "hv": ("hh",), "nx": ("n",), "dx": ("d",), "tcl": ("t",),
}

# TIMIT phones said without a full vowel of their own (reduced vowels, syllabic consonants):
# an engine that builds syllables gives them no stress.
REDUCED_PHONES: frozenset[str] = frozenset({"ax", "ix", "ax-h", "axr", "el", "em", "en", "eng"})

PAUSE = "pau"


@dataclass(frozen=True)
class PhoneMap:
    """The phones one voice says, and what it says for the TIMIT phones it lacks.

    Attributes:
        voice: engine and voice, e.g. ``"flite kal16"`` (named in every error).
        phones: the TIMIT symbols the voice says as themselves (``pau`` included).
        substitutes: TIMIT phone -> the voice's phones said in its place.
        missing_pairs: ``(left, right)`` phone pairs the voice cannot join (diphones it lacks).
        repairs: a missing pair -> what to say for its left and its right phone instead (e.g.
            ``("hh", "er")`` -> ``(("hh",), ("ax", "r"))``: "her" said as [hər]); a missing
            pair without repair is refused.
    """

    voice: str
    phones: frozenset[str]
    substitutes: Mapping[str, tuple[str, ...]]
    missing_pairs: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    repairs: Mapping[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict
    )

    def said(self, phone: str) -> tuple[str, ...]:
        """The phones the voice says for TIMIT ``phone``.

        Raises:
            VoiceError: the voice lacks ``phone`` and has no substitute for it.
        """
        if phone in self.substitutes:
            return self.substitutes[phone]
        if phone in self.phones:
            return (phone,)
        known = sorted(self.phones | set(self.substitutes))
        raise VoiceError(f"{self.voice} cannot say {phone!r} (no mapping for it): expected one "
                         f"of {' '.join(known)}; map it in the pronunciation or use another voice")

    def apply(self, phones: Sequence[str]) -> list[tuple[str, str]]:
        """Map a pronunciation onto the voice, with one pause at each end.

        Args:
            phones: TIMIT-61 phones, ``pau`` between phrases; pauses at the ends and repeated
                pauses are allowed (they become one).

        Returns:
            ``(said, asked)`` per phone to say: the voice's phone (a TIMIT symbol, the label) and
            the TIMIT phone of ``phones`` it stands for; the first and last are pauses.

        Raises:
            VoiceError: a phone the voice lacks with no substitute, a phone pair it cannot join
                and no repair for it, or nothing but pauses to say.
        """
        out: list[tuple[str, str]] = [(PAUSE, PAUSE)]
        for asked in phones:
            for said in self.said(asked):
                if not (said == PAUSE and out[-1][0] == PAUSE):
                    out.append((said, asked))
        if out[-1][0] != PAUSE:
            out.append((PAUSE, PAUSE))
        out = self._repair(out)
        if len(out) < 3:
            raise VoiceError(f"{self.voice}: nothing to say in {' '.join(phones)!r}: expected "
                             "at least one phone other than pau")
        for (left, _), (right, _) in zip(out, out[1:], strict=False):
            if (left, right) in self.missing_pairs:
                raise VoiceError(f"{self.voice} lacks the diphone {left}-{right} (it would "
                                 "silently say another sound there): use another voice for this "
                                 "sentence")
        return out

    def _repair(self, plan: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``plan`` with each missing pair that has a repair said as the repair says."""
        out = plan[:1]
        for said, asked in plan[1:]:
            left = out[-1]
            if (left[0], said) in self.missing_pairs and (left[0], said) in self.repairs:
                new_left, new_right = self.repairs[(left[0], said)]
                out[-1:] = [(phone, left[1]) for phone in new_left]
                out.extend((phone, asked) for phone in new_right)
            else:
                out.append((said, asked))
        return out


def segments_from_ends(
    labels: Sequence[str], ends: Sequence[float], length: int, sample_rate: int, where: str
) -> list[tuple[int, int, str]]:
    """Contiguous segments from the end time of each phone, the end pauses labelled ``h#``.

    Args:
        labels: the phones said, a pause first and last.
        ends: each phone's end in seconds, as the program reports it.
        length: samples in the audio; the last segment (a pause) ends there, whatever its
            reported end.
        sample_rate: the audio's rate.
        where: engine and voice, for errors.

    Returns:
        ``(start, end, label)`` in samples from 0 to ``length``.

    Raises:
        CorpusError: the times are not increasing, a phone ends after the audio, or the audio
            goes on past the last reported end (the program said other than it reports).
    """
    if len(labels) != len(ends) or len(labels) < 2:
        raise CorpusError(f"{where}: {len(ends)} end times for {len(labels)} phones")
    bounds = [round(end * sample_rate) for end in ends[:-1]] + [length]
    # The final pause may come out shorter than reported (flite's kal16 drops the last half
    # diphone), but audio past the last reported end would be speech nobody labelled.
    if length > (ends[-1] + 0.05) * sample_rate:
        raise CorpusError(f"{where}: phones end at {ends[-1]:.3f} s but the audio at "
                          f"{length / sample_rate:.3f} s")
    segments: list[tuple[int, int, str]] = []
    start = 0
    for i, (label, end) in enumerate(zip(labels, bounds, strict=True)):
        if end <= start:
            raise CorpusError(f"{where}: phone {i} {label!r} ends at sample {end}, not after "
                              f"its start {start}")
        edge = i in (0, len(labels) - 1)
        segments.append((start, end, "h#" if edge and label == PAUSE else label))
        start = end
    return segments


def spoken_from_ends(
    audio: np.ndarray, sample_rate: int, labels: Sequence[str], ends: Sequence[float], where: str
) -> Spoken:
    """What a program said: its audio and segments from the end times it reported, stop
    closures split off where the audio shows them (:func:`~seqkit.synth.closures.split_closures`),
    checked.

    Args:
        audio: (N,) float32 in [-1, 1].
        sample_rate: the audio's rate.
        labels: the phones said (TIMIT symbols), a pause first and last.
        ends: each phone's end in seconds.
        where: engine and voice, for errors.

    Raises:
        CorpusError: the segments break the rules of :func:`check_segments`.
    """
    segments = segments_from_ends(labels, ends, len(audio), sample_rate, where)
    # The voices time a stop as one unit: its closure is read off the audio, as TIMIT labels it.
    segments = split_closures(audio, segments, sample_rate)
    check_segments(segments, len(audio), where)
    return Spoken(audio, sample_rate, segments)
