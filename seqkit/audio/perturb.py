"""On-the-fly perturbation of filterbank features: vocal-tract length, speed and channel.

A recognizer trained on a few synthetic voices through one clean channel meets people with other
vocal tracts, speaking rates and microphones. These perturbations draw a new speaker and channel
for every utterance of every epoch, in the log-mel domain, where each is cheap:

- **VTLP** (Jaitly & Hinton 2013, "Vocal Tract Length Perturbation improves speech
  recognition"): the spectrum is warped along frequency, ``S'(f) = S(f / alpha)``, which moves
  every formant by ``alpha``; band energies are read off the original bands by interpolation on
  the mel axis.
- **Speed** (Ko et al. 2015, "Audio augmentation for speech recognition"): resampling the audio
  by ``r`` makes it ``r`` times faster *and* moves the spectrum up by ``r``; here frames are
  interpolated in time and the bands warped by ``r``.
- **Channel**: a microphone, room coloration or telephone line multiplies the power spectrum by
  a smooth gain, which adds a constant per band to log-mel features: a random spectral tilt plus
  two random cosine ripples over the bands, and optionally a low-pass edge (telephone-like to
  wideband). Attenuated bands stop at the utterance's own noise floor, as a recording's would.

Work on raw (unnormalized) static features ``(T, bands)``; :func:`seqkit.audio.features.
add_deltas` recomputes the deltas afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from seqkit.errors import ConfigError

_DB_TO_LOG_POWER = math.log(10.0) / 10.0


def _mel(hz: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(hz / 700.0)  # Kaldi's mel scale


def mel_band_centers(n_mels: int, low_freq: float, high_freq: float) -> torch.Tensor:
    """(n_mels,) centre frequencies in Hz of Kaldi's mel filterbank between the two edges."""
    low, high = _mel(torch.tensor(float(low_freq))), _mel(torch.tensor(float(high_freq)))
    mels = low + (high - low) * torch.arange(1, n_mels + 1, dtype=torch.float64) / (n_mels + 1)
    return 700.0 * torch.expm1(mels / 1127.0)


def warp_bands(logmel: torch.Tensor, alpha: float, centers: torch.Tensor) -> torch.Tensor:
    """Log-mel bands of the spectrum warped by ``alpha``: ``S'(f) = S(f / alpha)``.

    Args:
        logmel: (T, M) log band energies.
        alpha: warp factor; > 1 moves formants up (a shorter vocal tract).
        centers: (M,) band centre frequencies in Hz (:func:`mel_band_centers`).

    Returns:
        (T, M) warped log band energies; sources outside the filterbank read its edge bands.
    """
    M = logmel.shape[1]
    mel_centers = _mel(centers)
    step = (mel_centers[-1] - mel_centers[0]) / max(M - 1, 1)
    source = (_mel(centers / alpha) - mel_centers[0]) / step  # fractional band index
    source = source.clamp(0, M - 1).to(logmel.dtype)
    below = source.floor().long()
    above = (below + 1).clamp(max=M - 1)
    weight = source - below
    return logmel[:, below] * (1 - weight) + logmel[:, above] * weight


def stretch_time(feats: torch.Tensor, rate: float) -> torch.Tensor:
    """(T, F) frames resampled to ``round(T / rate)`` by linear interpolation (``rate`` > 1 is
    faster speech)."""
    T = feats.shape[0]
    new_T = max(1, round(T / rate))
    if T < 2 or new_T == T:
        return feats
    position = torch.linspace(0, T - 1, new_T, dtype=feats.dtype)
    below = position.floor().long().clamp(max=T - 2)
    weight = (position - below).unsqueeze(1)
    return feats[below] * (1 - weight) + feats[below + 1] * weight


def channel_gain_db(
    centers: torch.Tensor,
    max_db: float,
    lowpass_hz: float | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(M,) a random smooth channel response in dB at the band centres.

    Tilt uniform in +-``max_db`` from the lowest to the highest band, plus two cosine ripples of
    up to +-``max_db / 2``; with ``lowpass_hz``, bands above it fall 24 dB per octave.
    """
    M = centers.numel()
    x = torch.linspace(-0.5, 0.5, M, dtype=torch.float64)

    def uniform(scale: float) -> float:
        return float((torch.rand((), generator=generator, dtype=torch.float64) * 2 - 1) * scale)

    gain = uniform(max_db) * x
    for cycles in (1.0, 2.0):
        phase = uniform(math.pi)
        gain = gain + uniform(max_db / 2) * torch.cos(2 * math.pi * cycles * (x + 0.5) + phase)
    if lowpass_hz is not None:
        octaves = torch.log2((centers / lowpass_hz).clamp(min=1.0))
        gain = gain - 24.0 * octaves
    return gain


def apply_channel(logmel: torch.Tensor, gain_db: torch.Tensor) -> torch.Tensor:
    """(T, M) log band energies through a channel of ``gain_db`` (M,), floored at each band's
    quietest frame in the utterance (the recording's noise floor)."""
    floor = logmel.min(dim=0).values
    gained = logmel + (gain_db * _DB_TO_LOG_POWER).to(logmel.dtype)
    return torch.logaddexp(gained, floor - 3.0)  # floor 3 nepers (13 dB) below the quietest


@dataclass(frozen=True)
class Perturbation:
    """How far features are perturbed (every part 0 = off).

    Attributes:
        vtlp: VTLP warp factors are drawn uniformly in ``1 +- vtlp`` (0.1 in Jaitly & Hinton).
        speed: speed factors are drawn uniformly in ``1 +- speed`` (Ko et al. used 0.9/1.0/1.1).
        channel_db: channel tilt range in dB (+-), ripples up to half of it.
        lowpass_probability: chance that the channel also has a low-pass edge, drawn
            log-uniformly from 3.4 kHz (telephone) to the top of the filterbank.
    """

    vtlp: float = 0.0
    speed: float = 0.0
    channel_db: float = 0.0
    lowpass_probability: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vtlp", "speed"):
            value = getattr(self, name)
            if not 0 <= value < 0.5:
                raise ConfigError(f"{name} must be in [0, 0.5), found {value}")
        if not 0 <= self.channel_db <= 40:
            raise ConfigError(f"channel_db must be in [0, 40], found {self.channel_db}")
        if not 0 <= self.lowpass_probability <= 1:
            raise ConfigError(
                f"lowpass_probability must be in [0, 1], found {self.lowpass_probability}"
            )

    @property
    def active(self) -> bool:
        """Whether anything is perturbed."""
        return bool(self.vtlp or self.speed or self.channel_db or self.lowpass_probability)


def perturb_static(
    static: torch.Tensor,
    perturbation: Perturbation,
    centers: torch.Tensor,
    *,
    energy: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random speaker and channel applied to one utterance's static features.

    Args:
        static: (T, F0) raw static features: log-mel bands, after a log-energy column 0 when
            ``energy``.
        perturbation: the ranges to draw from.
        centers: (M,) band centre frequencies in Hz (:func:`mel_band_centers`).
        energy: column 0 is log frame energy (fbank123); it follows the channel's total gain.
        generator: random source. Default: torch's global generator.

    Returns:
        (T', F0) perturbed static features (T' differs from T with ``speed``).
    """
    p = perturbation

    def draw(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    bands = static[:, 1:] if energy else static
    level = static[:, :1]  # log energy (empty when not ``energy``)
    alpha = draw(1 - p.vtlp, 1 + p.vtlp) if p.vtlp else 1.0
    rate = draw(1 - p.speed, 1 + p.speed) if p.speed else 1.0
    if alpha * rate != 1.0:
        bands = warp_bands(bands, alpha * rate, centers)
    if p.channel_db or p.lowpass_probability:
        lowpass = None
        if p.lowpass_probability and draw(0, 1) < p.lowpass_probability:
            lowpass = math.exp(draw(math.log(3400.0), math.log(float(centers[-1]))))
        changed = apply_channel(bands, channel_gain_db(centers, p.channel_db, lowpass, generator))
        level = level + (torch.logsumexp(changed, 1) - torch.logsumexp(bands, 1)).unsqueeze(1)
        bands = changed
    out = torch.cat([level, bands], dim=1) if energy else bands
    return stretch_time(out, rate) if rate != 1.0 else out
