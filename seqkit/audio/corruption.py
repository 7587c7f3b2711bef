"""Making clean speech sound recorded: reverberation, babble-like noise at an SNR, a random gain.

The synthesized corpus (:mod:`seqkit.synth.corpus`) runs every non-clean utterance through
:func:`corrupt`, so that a model trained on it meets something closer to real recordings than
espeak-ng's dry output. Every random draw comes from the generator passed in, in a fixed order,
so a seeded generator gives byte-identical audio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqkit.audio.load import SAMPLE_RATE

# labels whose spans are not speech when measuring the speech level
_NON_SPEECH = ("h#", "pau")


@dataclass(frozen=True)
class Corruption:
    """How far an utterance departs from the clean signal.

    Attributes:
        snr_db: additive noise SNR range in dB, drawn uniformly per utterance.
        gain_db: level range of the result, dB relative to a 0.1 RMS speech level.
        reverb_probability: chance that an utterance is reverberated.
        rt60_s: reverberation time range (seconds) of the synthetic impulse response.
    """

    snr_db: tuple[float, float] = (15.0, 35.0)
    gain_db: tuple[float, float] = (-12.0, 3.0)
    reverb_probability: float = 0.5
    rt60_s: tuple[float, float] = (0.1, 0.35)


def fast_fft_size(n: int) -> int:
    """The power of two >= n: signal lengths are arbitrary, and an FFT of a length with a large
    prime factor is many times slower."""
    return 1 << max(n - 1, 1).bit_length()


def babble_noise(
    rng: np.random.Generator, n: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """(n,) coloured noise with a speech-like spectrum and syllable-rate loudness changes, unit RMS.
    """
    size = fast_fft_size(n + 512)
    white = rng.standard_normal(size)
    # Speech-shaped: a 1/f-ish tilt from cascaded one-pole low-passes mixed with a bit of white.
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    tilt = 1.0 / np.sqrt(1.0 + (freqs / 500.0) ** 2) + 0.05
    colored = np.fft.irfft(spectrum * tilt, size)[:n]
    # Several "talkers" each modulated at a syllable rate of 3-6 Hz.
    t = np.arange(n) / sample_rate
    envelope = np.zeros(n)
    for _ in range(4):
        f, phase = rng.uniform(3.0, 6.0), rng.uniform(0, 2 * math.pi)
        envelope += 1.0 + 0.8 * np.sin(2 * math.pi * f * t + phase)
    noise = colored * envelope
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def reverberate(
    rng: np.random.Generator, audio: np.ndarray, rt60: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """``audio`` (n,) convolved with a synthetic exponentially decaying impulse response that
    falls by 60 dB in ``rt60`` seconds; same length."""
    length = int(rt60 * sample_rate)
    decay = np.exp(-6.9 * np.arange(length) / length)  # -60 dB at rt60
    response = rng.standard_normal(length) * decay * 0.25
    response[0] = 1.0
    response /= np.sqrt(np.sum(response**2))
    size = fast_fft_size(len(audio) + length - 1)
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(response, size), size)
    return wet[: len(audio)]


def speech_level(audio: np.ndarray, segments: Sequence[tuple[int, int, str]]) -> float:
    """RMS of ``audio`` over the labelled segments that are speech (not ``h#`` or ``pau``)."""
    voiced = [audio[s:e] for s, e, label in segments if label not in _NON_SPEECH]
    speech = np.concatenate(voiced) if voiced else audio
    return float(np.sqrt(np.mean(speech**2)) + 1e-12)


def corrupt(
    rng: np.random.Generator,
    audio: np.ndarray,
    segments: Sequence[tuple[int, int, str]],
    corruption: Corruption,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Reverberate (with its probability), add babble noise at a random SNR, set a random gain.

    Args:
        rng: the utterance's generator; draws: reverb or not, its RT60 and response, the SNR,
            the noise, the gain (in this order).
        audio: (n,) float64 clean speech in [-1, 1].
        segments: ``(start, end, label)`` in samples; the speech level is measured on the
            segments that are speech, before and after.
        corruption: the ranges to draw from.
        sample_rate: of ``audio``. Default 16 kHz.

    Returns:
        (n,) float64, speech at ``0.1 * 10 ** (gain / 20)`` RMS; not clipped.
    """
    level = speech_level(audio, segments)
    if rng.random() < corruption.reverb_probability:
        audio = reverberate(rng, audio, rng.uniform(*corruption.rt60_s), sample_rate)
    snr = rng.uniform(*corruption.snr_db)
    audio = audio + babble_noise(rng, len(audio), sample_rate) * level * 10 ** (-snr / 20)
    target = 0.1 * 10 ** (rng.uniform(*corruption.gain_db) / 20)
    return audio * (target / speech_level(audio, segments))
