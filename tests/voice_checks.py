"""Checks every phone-driven voice engine's output must pass (shared by the engines' tests).

An engine's segments must say what the engine was asked after its voice's phone map, and their
times must match the audio: pauses are quiet and the fricative ``s`` is brighter (more of its
energy above 4 kHz) than the vowels, which would fail if the times were shifted or stretched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqkit.synth.phone_maps import PhoneMap
from seqkit.synth.voices import Spoken, check_segments

CLOSURES = frozenset({"bcl", "dcl", "gcl", "pcl", "tcl", "kcl"})
VOWELS = frozenset({"iy", "ih", "eh", "ae", "aa", "ao", "ah", "uh", "uw", "ey", "ay", "oy",
                    "aw", "ow", "er"})

# A short sentence with a pause, several s and full vowels, and allophones every voice maps
# ("the sun sets, so she sees a little water"): ix, el, dx, axr.
SENTENCE: tuple[str, ...] = tuple(
    "dh ax s ah n s eh t s pau s ow sh iy s iy z ix l ih dx el w ao dx axr".split()
)


def said_labels(phone_map: PhoneMap, phones: Sequence[str]) -> list[str]:
    """The labels a voice must report for ``phones``: its phone map's phones, pauses left out."""
    return [said for said, _ in phone_map.apply(phones) if said != "pau"]


def assert_says(spoken: Spoken, expected: Sequence[str], where: str) -> None:
    """Audio that is not silent, in [-1, 1], with valid segments that say ``expected``."""
    audio = spoken.audio
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0 and np.sqrt(np.mean(audio**2)) > 0.01
    check_segments(spoken.phones, len(audio), where)
    labels = [label for _, _, label in spoken.phones]
    assert labels[0] == "h#" and labels[-1] == "h#"
    assert [x for x in labels if x not in CLOSURES | {"h#", "pau"}] == list(expected)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def high_frequency_share(x: np.ndarray, sample_rate: int) -> float:
    """Fraction of the energy of ``x`` above 4 kHz."""
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    return float(power[freqs >= 4000].sum() / max(power.sum(), 1e-20))


def assert_timings_match_audio(spoken: Spoken) -> None:
    """Pauses are quiet next to vowels; ``s`` is brighter than every vowel on average."""
    rate, audio = spoken.sample_rate, spoken.audio
    # The middle half of each segment: a boundary a few ms off still passes, a shifted one not.
    def middle(start: int, end: int) -> np.ndarray:
        quarter = (end - start) // 4
        return audio[start + quarter:end - quarter]

    by_label: dict[str, list[np.ndarray]] = {}
    for start, end, label in spoken.phones:
        by_label.setdefault(label, []).append(middle(start, end))
    vowels = [x for label, xs in by_label.items() if label in VOWELS for x in xs]
    vowel_rms = float(np.mean([_rms(x) for x in vowels]))
    for pause in by_label.get("pau", []) + by_label["h#"]:
        assert _rms(pause) < 0.1 * vowel_rms
    s_share = np.mean([high_frequency_share(x, rate) for x in by_label["s"]])
    vowel_share = np.mean([high_frequency_share(x, rate) for x in vowels])
    assert s_share > 0.3 and vowel_share < 0.1, (s_share, vowel_share)
