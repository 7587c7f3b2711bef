"""Stop closures read off the audio: the burst after the quiet stretch splits a stop's span."""

from __future__ import annotations

import numpy as np

from seqkit.synth.closures import split_closures

SR = 16000


def _noise(rng: np.random.Generator, seconds: float, level: float) -> np.ndarray:
    return level * rng.standard_normal(int(seconds * SR))


def test_a_stop_splits_at_its_burst_and_other_segments_stay() -> None:
    rng = np.random.default_rng(0)
    vowel, hold, burst = _noise(rng, 0.08, 0.3), _noise(rng, 0.06, 0.001), _noise(rng, 0.03, 0.2)
    audio = np.concatenate([vowel, hold, burst, _noise(rng, 0.08, 0.3)])
    a, b, c = len(vowel), len(vowel) + len(hold) + len(burst), len(audio)
    segments = split_closures(audio, [(0, a, "aa"), (a, b, "t"), (b, c, "aa")], SR)
    assert [s[2] for s in segments] == ["aa", "tcl", "t", "aa"]
    cut = segments[1][1]
    assert abs(cut - (a + len(hold))) <= 0.004 * SR  # the burst starts within 4 ms of the cut
    assert segments[0] == (0, a, "aa") and segments[-1] == (b, c, "aa")


def test_a_stop_without_a_quiet_stretch_stays_one_segment() -> None:
    audio = np.random.default_rng(1).standard_normal(int(0.2 * SR)) * 0.3
    segments = [(0, 1600, "ae"), (1600, 2400, "d"), (2400, 3200, "ae")]
    assert split_closures(audio, segments, SR) == segments


def test_affricates_get_their_closure_and_fricatives_none() -> None:
    rng = np.random.default_rng(2)
    audio = np.concatenate([_noise(rng, 0.05, 0.001), _noise(rng, 0.06, 0.2),
                            _noise(rng, 0.05, 0.001), _noise(rng, 0.06, 0.2)])
    half = len(audio) // 2
    labels = [s[2] for s in split_closures(audio, [(0, half, "ch"), (half, len(audio), "s")], SR)]
    assert labels == ["tcl", "ch", "s"]
