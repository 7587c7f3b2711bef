"""From espeak-ng phoneme events to TIMIT's 61 phone labels, accent by accent.

The synthesized corpus labels each utterance with what espeak-ng actually spoke: the phoneme
events of the synthesis (mnemonic + sample position), mapped here onto TIMIT's 61 symbols
(:data:`seqkit.data.phones.PHONES_61`) so that the usual 61 -> 39 folding applies unchanged.

The same espeak-ng mnemonic is not the same sound in every accent (``aI`` is [aɪ] in en-us but
[ɔɪ] in West Midlands, ``3`` is r-coloured [ɚ] in en-us but plain [ə] in RP), so the table is a
base mapping plus per-accent overrides. Both were made by synthesizing the whole shipped
vocabulary in every accent below, once with mnemonic events and once with IPA events, and reading
the IPA each mnemonic produced (noted in the comments). Rules:

* One espeak phoneme may become several TIMIT phones when TIMIT writes the sound as a sequence
  (rhotic ``A@`` [ɑːɹ] -> ``aa r``); the event's span is then divided, the first phone taking
  60% and the rest sharing what is left.
* Stops and affricates become closure + release (``pcl p``, ``dcl jh``) as TIMIT transcribes
  them. espeak-ng emits a stop's event at its release and synthesizes the closure as digital
  silence *before* the event, at the end of the previous phoneme's span (or, for a prevoiced
  stop, as a low-energy voice bar at the start of its own span); :func:`label_segments` finds
  that silence or voice bar in the clean audio and labels it as the closure. A stop straight
  after a pause has no closure of its own (the pause is the closure), as in TIMIT.
* espeak's pauses (``_``, ``_:``, ``_!``, ``_|``) become ``pau``; silence at either end of an
  utterance is ``h#``. Modifier events without a sound of their own (``;``, palatalization)
  add their span to the phone before them.
* The glottal stop ``q`` is never produced: en-us ``?`` (a glottalized /t/, "button") is
  labelled as the closure ``tcl`` it replaces, which is silence after folding, as ``q`` is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqkit.data.phones import PHONES_61
from seqkit.errors import CorpusError
from seqkit.synth.closures import CLOSURES
from seqkit.synth.espeak import PhonemeEvent


@dataclass(frozen=True)
class Accent:
    """An English espeak-ng voice standing for one TIMIT dialect region.

    Attributes:
        region: TIMIT dialect region directory, ``"DR1"`` .. ``"DR8"``.
        voice: espeak-ng voice name (language), e.g. ``"en-us"``.
        name: what the accent is.
        rhotic: whether the accent pronounces /r/ after vowels.
    """

    region: str
    voice: str
    name: str
    rhotic: bool


# Dialect regions of the synthesized corpus: TIMIT's DR1..DR8 are US regions; ours are the eight
# English accents espeak-ng 1.52 ships (en-shaw is an alphabet, not an accent).
ACCENTS: tuple[Accent, ...] = (
    Accent("DR1", "en-us", "General American", True),
    Accent("DR2", "en-us-nyc", "New York City", True),
    Accent("DR3", "en", "British English (Great Britain)", False),
    Accent("DR4", "en-gb-x-rp", "Received Pronunciation", False),
    Accent("DR5", "en-gb-scotland", "Scottish English", True),
    Accent("DR6", "en-gb-x-gbclan", "Lancastrian English", False),
    Accent("DR7", "en-gb-x-gbcwmd", "West Midlands English", False),
    Accent("DR8", "en-029", "Caribbean English", False),
)
ACCENT_BY_VOICE: dict[str, Accent] = {a.voice: a for a in ACCENTS}

PAUSES = frozenset({"_", "_:", "_!", "_|"})
_SILENT_MODIFIERS = frozenset({";"})
_STRESS_MARKS = "',="

# Base mapping (General American readings); IPA as espeak-ng en-us reports it.
_BASE: dict[str, tuple[str, ...]] = {
    # vowels
    "0": ("aa",),  # [ɑː] lot
    "3": ("axr",),  # [ɚ] letter
    "3:": ("er",),  # [ɜː] nurse
    "@": ("ax",), "@2": ("ax",), "@-": ("ax",),  # [ə]
    "@L": ("el",),  # [əl] syllabic l
    "A:": ("aa",),  # [ɑː] palm
    "A@": ("aa", "r"),  # [ɑːɹ] start
    "E": ("eh",),  # [ɛ]
    "I": ("ih",), "I2": ("ih",),  # [ɪ]
    "I#": ("ix",),  # [ᵻ] reduced i, "roses"
    "i": ("iy",),  # [i] happY
    "i:": ("iy",),  # [iː]
    "i@": ("iy", "ax"),  # [iə] "idea"
    "i@3": ("ih", "r"),  # [ɪɹ] near
    "O2": ("ao",), "O:": ("ao",),  # [ɔ], [ɔː]
    "O@": ("ao", "r"), "o@": ("ao", "r"),  # [ɔːɹ] north, force
    "OI": ("oy",),  # [ɔɪ]
    "U": ("uh",),  # [ʊ]
    "U@": ("uh", "r"),  # [ʊɹ] cure
    "V": ("ah",),  # [ʌ]
    "VR": ("ah", "r"),  # [ʌɹ] (Scottish "hurry")
    "IR": ("ih", "r"),  # [ɪɹ] (Scottish "bird")
    "a": ("ae",), "aa": ("ae",),  # [æ] trap, bath
    "a#": ("ax",),  # [ɐ] reduced a, "about"
    "aI": ("ay",), "aI2": ("ay",),  # [aɪ]
    "aI@": ("ay", "ax"),  # [aɪə] "fire" non-rhotic
    "aI3": ("ay", "axr"),  # [aɪɚ] "fire"
    "aU": ("aw",),  # [aʊ]
    "e@": ("eh", "r"),  # [ɛɹ] square
    "eI": ("ey",),  # [eɪ]
    "oU": ("ow",),  # [oʊ]
    "u:": ("uw",),  # [uː]
    # consonants
    "b": ("b",), "d": ("d",), "g": ("g",), "p": ("p",), "t": ("t",), "k": ("k",),
    "t2": ("t",), "t[": ("t",),  # [t], dental [t̪] (Caribbean "think")
    "t#": ("dx",),  # [ɾ] flap
    "?": ("tcl",),  # [ʔ] glottalized /t/, see the module docstring
    "dZ": ("jh",), "tS": ("ch",),
    "D": ("dh",), "T": ("th",), "S": ("sh",), "Z": ("zh",),
    "f": ("f",), "v": ("v",), "s": ("s",), "z": ("z",), "h": ("hh",),
    "m": ("m",), "n": ("n",), "N": ("ng",), "n-": ("en",), "m-": ("em",),
    "l": ("l",), "r": ("r",), "r-": ("r",), "w": ("w",), "w#": ("w",), "j": ("y",),
}

# Non-rhotic accents: centring diphthongs end in schwa, not /r/; "letter" is plain [ə].
_NON_RHOTIC: dict[str, tuple[str, ...]] = {
    "3": ("ax",), "A@": ("aa",), "i@3": ("ih", "ax"), "O@": ("ao",), "o@": ("ao",),
    "U@": ("uh", "ax"), "e@": ("eh", "ax"),
}

_OVERRIDES: dict[str, dict[str, tuple[str, ...]]] = {
    "en-us": {},
    "en-us-nyc": {
        "3": ("ax",),  # [ə] (r-dropping)
        "3:": ("oy",),  # [əɪ] "boid" for bird
        "A@": ("aa",), "O@": ("ao",), "o@": ("ao",),  # [ɑː], [ɔː]
        "U@": ("uh", "ax"), "i@3": ("ih", "ax"), "e@": ("eh", "ax"),  # [ʊə], [iə], [eə]
        "aa": ("ae",),  # [ɛə] tensed bath: the nearest TIMIT vowel is still ae
    },
    "en": {**_NON_RHOTIC},
    "en-gb-x-rp": {**_NON_RHOTIC,
                   "aa": ("aa",),  # [ɑː] bath
                   "i": ("ih",),  # [ɪ] happY
                   "U@": ("ao",)},  # [ɔː] cure
    "en-gb-scotland": {
        "3": ("ax",),  # [ɜ] unstressed, /r/ is a separate event
        "3:": ("eh",),  # [e] nurse vowel before its own /r/
        "A@": ("aa",), "aa": ("aa",),  # [aː]
        "O@": ("ao",), "o@": ("ow",),  # [ɔ], [o] (the /r/ is a separate event)
        "U": ("ux",), "u:": ("ux",),  # [ʉ], [ʉː]
        "U@": ("ux", "r"),  # [ʉɹ]
        "aU": ("aw",),  # [ʌʉ]
        "e@": ("eh",),  # [e]
        "eI": ("ey",),  # [eː]
        "i": ("ey",),  # [e] happY
        "i@3": ("ih",),  # [ɪ]
        "oU": ("ow",),  # [oː]
    },
    "en-gb-x-gbclan": {**_NON_RHOTIC,
                       "V": ("uh",)},  # [ʊ] strut = foot
    "en-gb-x-gbcwmd": {**_NON_RHOTIC,
                       "V": ("uh",),  # [ʊ]
                       "aI": ("oy",),  # [ɔɪ] price
                       "e@": ("er",),  # [ɜː] square = nurse
                       "i:": ("ey",),  # [ei] fleece
                       "u:": ("ow",),  # [əu] goose
                       "oU": ("ow",)},  # [ʌʊ] goat
    "en-029": {**_NON_RHOTIC,
               "a#": ("ah",),  # [a] full vowel for reduced a
               "A@": ("aa", "ax"), "O@": ("ao", "ax"),  # [ɑə], [ɔə]
               "o@": ("ow", "ax")},  # [oə]
}

_VOICED_RELEASES = frozenset({"b", "d", "g", "jh"})
_FIRST_SHARE = 0.6  # share of an event's span given to the first of several TIMIT phones


def _check_table() -> None:
    phones = set(PHONES_61)
    for accent, table in (("base", _BASE), *_OVERRIDES.items()):
        for mnemonic, labels in table.items():
            bad = [p for p in labels if p not in phones]
            if bad:  # a programming error in this module, caught at import
                raise RuntimeError(f"espeak_phones {accent} {mnemonic!r} -> {bad}: not TIMIT")


_check_table()


def timit_phones(mnemonic: str, voice: str) -> tuple[str, ...]:
    """The TIMIT phones an espeak-ng phoneme stands for in one accent.

    Args:
        mnemonic: espeak-ng mnemonic as reported in a phoneme event; stress marks
            (``'``, ``,``, ``=``) are ignored.
        voice: the accent's espeak-ng voice name (one of :data:`ACCENTS`), without variant.

    Returns:
        The TIMIT 61-set phones in order (``("pau",)`` for a pause, ``()`` for a modifier
        without a sound of its own).

    Raises:
        CorpusError: unknown accent or a phoneme the table does not cover.
    """
    if voice not in _OVERRIDES:
        raise CorpusError(f"no phone table for espeak voice {voice!r}: expected one of "
                          f"{', '.join(_OVERRIDES)}")
    name = mnemonic.lstrip(_STRESS_MARKS)
    if name in PAUSES:
        return ("pau",)
    if name in _SILENT_MODIFIERS:
        return ()
    table = _OVERRIDES[voice]
    if name in table:
        return table[name]
    if name in _BASE:
        return _BASE[name]
    raise CorpusError(f"espeak-ng phoneme {mnemonic!r} ({voice}) has no TIMIT mapping: "
                      "add it to seqkit/synth/espeak_phones.py")


def _silence_run_before(audio: np.ndarray, start: int, end: int, *, floor: int) -> int:
    """First index of the run of near-zero samples that ends at ``end`` (>= start)."""
    quiet = np.abs(audio[start:end].astype(np.int32)) <= floor
    loud = np.flatnonzero(~quiet)
    return start + (int(loud[-1]) + 1 if loud.size else 0)


def _voice_bar_end(audio: np.ndarray, start: int, end: int, sample_rate: int) -> int:
    """Where a prevoiced stop's release begins inside ``[start, end)`` (``start`` if none).

    The voice bar is quiet, low-frequency voicing; the release is the first 2.5 ms frame whose
    RMS exceeds twice the voice bar's median RMS, searched after the first 10 ms.
    """
    frame = max(1, sample_rate // 400)
    seg = audio[start:end].astype(np.float64)
    n = len(seg) // frame
    if n < 6:
        return start
    rms = np.sqrt(np.mean(seg[: n * frame].reshape(n, frame) ** 2, axis=1))
    first = 4
    bar = float(np.median(rms[:first])) + 1.0
    jump = np.flatnonzero(rms[first:] > 2.0 * bar)
    return start + (first + int(jump[0])) * frame if jump.size else start


def label_segments(
    phonemes: Sequence[PhonemeEvent],
    audio: np.ndarray,
    voice: str,
    *,
    sample_rate: int,
    speech_start: int = 0,
    min_closure_s: float = 0.004,
    silence_floor: int = 4,
) -> list[tuple[int, int, str]]:
    """TIMIT phone segments of one clean espeak-ng synthesis.

    Args:
        phonemes: the synthesis' phoneme events, positions relative to the synthesized audio.
        audio: (N,) int16 clean audio: the synthesis placed at ``speech_start`` with leading
            and trailing silence (so that ``h#`` has room at both ends).
        voice: espeak-ng voice name of the accent (no variant).
        sample_rate: rate of ``audio`` and of the event positions.
        speech_start: offset of the synthesis inside ``audio``, in samples.
        min_closure_s: shortest silence before a stop taken as its closure, in seconds.
        silence_floor: largest absolute int16 value counted as silence.

    Returns:
        ``(start, end, label)`` triples at ``sample_rate``: contiguous, starting at 0, ending
        at ``len(audio)``, ``h#`` first and last, every label in the 61 set.

    Raises:
        CorpusError: a phoneme without a TIMIT mapping.
    """
    total = len(audio)
    spans = _event_spans(phonemes, voice, total, speech_start)
    if not spans:
        return [(0, total, "h#")]
    head, tail = spans[0][0], spans[-1][1]
    if tail >= total:  # no trailing silence inside the last span: end speech at the last sound
        loud = np.flatnonzero(np.abs(audio[spans[-1][0]:].astype(np.int32)) > silence_floor)
        tail = spans[-1][0] + (int(loud[-1]) + 1 if loud.size else 1)
        spans[-1] = (spans[-1][0], tail, spans[-1][2])

    min_closure = max(1, int(round(min_closure_s * sample_rate)))
    segments: list[tuple[int, int, str]] = [(0, head, "h#")] if head > 0 else []
    for start, end, labels in spans:
        first = labels[0]
        if first in CLOSURES and segments and segments[-1][2] not in ("h#", "pau"):
            p_start, p_end, p_label = segments[-1]
            quiet = _silence_run_before(audio, p_start, p_end, floor=silence_floor)
            if p_end - quiet >= min_closure and quiet > p_start:
                segments[-1] = (p_start, quiet, p_label)
                segments.append((quiet, p_end, CLOSURES[first]))
            elif first in _VOICED_RELEASES:
                release = _voice_bar_end(audio, start, end, sample_rate)
                if release - start >= min_closure:
                    segments.append((start, release, CLOSURES[first]))
                    start = release
        if len(labels) == 1:
            segments.append((start, end, first))
            continue
        cut = start + int(round((end - start) * _FIRST_SHARE))
        segments.append((start, cut, first))
        rest = labels[1:]
        for j, label in enumerate(rest):
            a = cut + (end - cut) * j // len(rest)
            b = cut + (end - cut) * (j + 1) // len(rest)
            segments.append((a, b, label))
    segments = [s for s in segments if s[1] > s[0]]
    segments.append((tail, total, "h#"))
    return _merge_pauses(segments)


def _event_spans(
    phonemes: Sequence[PhonemeEvent], voice: str, total: int, speech_start: int
) -> list[tuple[int, int, tuple[str, ...]]]:
    """Each event's span in audio coordinates with its TIMIT phones; a modifier's span joins the
    phone before, and pauses at either end are dropped (they become h#)."""
    spans: list[tuple[int, int, tuple[str, ...]]] = []
    for i, event in enumerate(phonemes):
        start = speech_start + event.sample
        end = speech_start + phonemes[i + 1].sample if i + 1 < len(phonemes) else total
        start, end = min(max(start, 0), total), min(max(end, 0), total)
        labels = timit_phones(event.phoneme, voice)
        if end <= start:
            continue
        if not labels and spans:  # a modifier: its span belongs to the phone before
            s, _, prev = spans[-1]
            spans[-1] = (s, end, prev)
            continue
        spans.append((start, end, labels or ("pau",)))
    while spans and spans[0][2] == ("pau",):
        spans.pop(0)
    while spans and spans[-1][2] == ("pau",):
        spans.pop()
    return spans


def _merge_pauses(segments: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Neighbouring pau segments as one (pau pau; h# pau at the edges never occur)."""
    merged: list[tuple[int, int, str]] = []
    for seg in segments:
        if merged and merged[-1][2] == seg[2] == "pau":
            merged[-1] = (merged[-1][0], seg[1], "pau")
        else:
            merged.append(seg)
    return [s for s in merged if s[1] > s[0]]
