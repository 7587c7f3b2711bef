"""Log-mel filterbank features, deltas and global mean/variance normalization (CMVN).

The default front end follows Graves, Mohamed & Hinton (2013), "Speech Recognition with Deep
Recurrent Neural Networks": 40 log-mel filterbank coefficients plus log energy, with first and
second temporal derivatives, 123 values per 10 ms frame. The filterbank is Kaldi's
(:func:`torchaudio.compliance.kaldi.fbank`), so features match Kaldi TIMIT recipes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from seqkit.atomic import write_atomic
from seqkit.errors import ConfigError

FEATURE_KINDS = ("fbank123", "fbank80")
# Default number of mel bands per kind: the kind's name gives its default feature dimension.
_DEFAULT_MELS = {"fbank123": 40, "fbank80": 80}


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes features; stored in ``stats.json`` and in every checkpoint.

    Attributes:
        kind: ``"fbank123"`` = log-mel + log energy with Δ and ΔΔ (Graves et al. 2013);
            ``"fbank80"`` = plain log-mel filterbank, no energy, no deltas.
        n_mels: mel bands; None takes the kind's default (40 for fbank123, 80 for fbank80).
        frame_length_ms: analysis window length (Kaldi's "povey" window), in ms.
        frame_shift_ms: hop between frames, in ms; 10 ms = 100 frames per second.
        sample_rate: rate of the waveforms given to :func:`compute_features`, in Hz.
        delta_window: frames on each side used by the Δ regression (2 -> a 5-frame window).
        low_freq: lowest filterbank edge in Hz.
        high_freq: highest filterbank edge in Hz; 0 or negative is relative to Nyquist (Kaldi).
        cmn: subtract each utterance's own mean from its log-mel and energy frames (cepstral
            mean normalization) before the deltas: a fixed channel (microphone, room, level,
            spectral tilt) is a constant offset on every log-mel frame, so it cancels. It
            needs the whole recording, so a model trained with it does not stream.
    """

    kind: str = "fbank123"
    n_mels: int | None = None
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    sample_rate: int = 16000
    delta_window: int = 2
    low_freq: float = 20.0
    high_freq: float = 0.0
    cmn: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ConfigError(
                f"unknown feature kind {self.kind!r}: choose one of {', '.join(FEATURE_KINDS)}"
            )
        if self.n_mels is None:
            object.__setattr__(self, "n_mels", _DEFAULT_MELS[self.kind])
        if not isinstance(self.n_mels, int) or not 1 <= self.n_mels <= 512:
            raise ConfigError(f"n_mels must be an integer in 1..512, found {self.n_mels!r}")
        if not isinstance(self.cmn, bool):
            raise ConfigError(f"cmn must be true or false, found {self.cmn!r}")
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be positive, found {self.sample_rate}")
        if not 0 < self.frame_shift_ms <= self.frame_length_ms:
            raise ConfigError(
                "expected 0 < frame_shift_ms <= frame_length_ms, found "
                f"frame_shift_ms={self.frame_shift_ms}, frame_length_ms={self.frame_length_ms}"
            )
        if self.delta_window < 1:
            raise ConfigError(f"delta_window must be at least 1, found {self.delta_window}")
        nyquist = self.sample_rate / 2
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not 0 <= self.low_freq < high <= nyquist:
            raise ConfigError(
                f"expected 0 <= low_freq < high_freq <= {nyquist:g} Hz (Nyquist), found "
                f"low_freq={self.low_freq}, high_freq={self.high_freq}"
            )

    @property
    def dim(self) -> int:
        """Feature dimension F of one frame."""
        assert self.n_mels is not None  # set in __post_init__
        if self.kind == "fbank123":
            return (self.n_mels + 1) * 3
        return self.n_mels

    @property
    def frame_shift_samples(self) -> int:
        """Hop between frames in samples."""
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (round-trips through :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Build from :meth:`to_dict` output.

        Raises:
            ConfigError: an unknown key or an invalid value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown feature option(s) {', '.join(unknown)}: expected some of "
                f"{', '.join(sorted(known))}"
            )
        return cls(**data)


def compute_features(wave: torch.Tensor, config: FeatureConfig | None = None) -> torch.Tensor:
    """Features of one waveform.

    Args:
        wave: (N,) float32 waveform at ``config.sample_rate`` (see
            :func:`seqkit.audio.load_audio`), at least one frame long.
        config: the front end. Default: ``FeatureConfig()`` (123-dim fbank + energy + Δ + ΔΔ).

    Returns:
        (T, F) float32 with F = ``config.dim`` and T = 1 + (N - window) // shift frames
        (Kaldi's ``snip_edges``).

    Raises:
        ConfigError: ``wave`` is not 1-D or is shorter than one analysis window.
    """
    config = config or FeatureConfig()
    if wave.dim() != 1:
        raise ConfigError(
            f"expected a mono waveform (N,), found shape {tuple(wave.shape)}: "
            "load it with seqkit.audio.load_audio"
        )
    window = int(config.sample_rate * config.frame_length_ms / 1000)
    if wave.numel() < window:
        raise ConfigError(
            f"waveform has {wave.numel()} samples, fewer than one {config.frame_length_ms:g} ms "
            f"window ({window} samples): expected a longer recording"
        )
    fbank = kaldi.fbank(
        wave.to(torch.float32).unsqueeze(0),  # (1, N)
        num_mel_bins=config.n_mels,
        frame_length=config.frame_length_ms,
        frame_shift=config.frame_shift_ms,
        sample_frequency=config.sample_rate,
        low_freq=config.low_freq,
        high_freq=config.high_freq,
        use_energy=config.kind == "fbank123",  # energy is column 0
        dither=0.0,  # deterministic: same audio, same features
    )  # (T, n_mels [+1])
    return add_deltas(utterance_mean_normalized(fbank, config), config)


def utterance_mean_normalized(static: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """(T, F0) static frames less their mean over time when ``config.cmn``; else unchanged."""
    return static - static.mean(dim=0, keepdim=True) if config.cmn else static


def add_deltas(static: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """(T, F0) static features -> (T, F) the features of ``config``: with Δ and ΔΔ appended for
    fbank123 (F = 3 * F0), unchanged for fbank80."""
    if config.kind == "fbank80":
        return static.contiguous()
    static = static.T  # (F0, T): compute_deltas runs along the last axis
    delta = AF.compute_deltas(static, win_length=2 * config.delta_window + 1)
    delta2 = AF.compute_deltas(delta, win_length=2 * config.delta_window + 1)
    return torch.cat([static, delta, delta2], dim=0).T.contiguous()  # (T, 3 * F0)


@dataclass(frozen=True)
class FeatureStats:
    """Global per-dimension mean and standard deviation of features (for CMVN).

    Attributes:
        mean: (F,) float32.
        std: (F,) float32, floored at ``STD_FLOOR`` so constant dimensions stay finite.
        frames: number of frames the statistics were computed on.
    """

    mean: torch.Tensor
    std: torch.Tensor
    frames: int

    STD_FLOOR = 1e-5

    @property
    def dim(self) -> int:
        """Feature dimension F."""
        return int(self.mean.numel())

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        """Mean/variance normalize features.

        Args:
            feats: (..., F) features from :func:`compute_features` with the same config.

        Returns:
            (..., F) float32, zero mean and unit variance on the statistics' data.

        Raises:
            ConfigError: the last axis of ``feats`` is not F.
        """
        if feats.shape[-1] != self.dim:
            raise ConfigError(
                f"expected features (..., {self.dim}) to match the statistics, found "
                f"{tuple(feats.shape)}: were they computed with another feature config?"
            )
        mean = self.mean.to(feats.device)
        std = self.std.to(feats.device)
        return ((feats - mean) / std).to(torch.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (round-trips through :meth:`from_dict`)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "frames": self.frames}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureStats:
        """Build from :meth:`to_dict` output.

        Raises:
            ConfigError: missing keys, lengths that differ, or non-positive std.
        """
        try:
            mean = torch.tensor(data["mean"], dtype=torch.float32)
            std = torch.tensor(data["std"], dtype=torch.float32)
            frames = int(data["frames"])
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(
                f"malformed feature statistics ({type(err).__name__}: {err}): expected "
                "{'mean': [...], 'std': [...], 'frames': N}; run `seqkit data prepare` again"
            ) from None
        if mean.dim() != 1 or mean.shape != std.shape or not bool((std > 0).all()):
            raise ConfigError(
                f"malformed feature statistics: expected mean and std of one length with std > 0, "
                f"found {len(data['mean'])} and {len(data['std'])} values; "
                "run `seqkit data prepare` again"
            )
        return cls(mean=mean, std=std, frames=frames)


def compute_stats(feature_stream: Iterable[torch.Tensor]) -> FeatureStats:
    """Global mean and std over all frames of a stream of utterances, in one pass.

    Accumulates in float64 and merges per-utterance moments (Chan et al.'s pairwise update), so
    hours of frames neither lose precision nor need to sit in memory together.

    Args:
        feature_stream: (T, F) feature tensors, all with the same F.

    Returns:
        The statistics (population std, floored at ``FeatureStats.STD_FLOOR``).

    Raises:
        ConfigError: the stream is empty, has no frames, or its feature dimensions differ.
    """
    count = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None  # sum of squared deviations from the mean
    for feats in feature_stream:
        if feats.dim() != 2:
            raise ConfigError(f"expected features (T, F), found shape {tuple(feats.shape)}")
        n = feats.shape[0]
        if n == 0:
            continue
        x = feats.detach().to("cpu", torch.float64)
        batch_mean = x.mean(dim=0)
        batch_m2 = ((x - batch_mean) ** 2).sum(dim=0)
        if mean is None or m2 is None:
            count, mean, m2 = n, batch_mean, batch_m2
            continue
        if x.shape[1] != mean.numel():
            raise ConfigError(
                f"feature dimensions differ within the stream: {mean.numel()} then {x.shape[1]}"
            )
        total = count + n
        delta = batch_mean - mean
        mean = mean + delta * (n / total)
        m2 = m2 + batch_m2 + delta**2 * (count * n / total)
        count = total
    if mean is None or m2 is None:
        raise ConfigError("cannot compute feature statistics: expected at least one frame, found 0")
    std = (m2 / count).sqrt().clamp_min(FeatureStats.STD_FLOOR)
    return FeatureStats(mean=mean.to(torch.float32), std=std.to(torch.float32), frames=count)


def merge_stats(parts: Sequence[FeatureStats]) -> FeatureStats:
    """The statistics of the union of the frames each of ``parts`` was computed on.

    Exact up to float rounding: Chan et al.'s pairwise merge of frame counts, means and summed
    squared deviations, in float64 (the update :func:`compute_stats` applies per utterance).

    Raises:
        ConfigError: no parts, or parts of different feature dimensions.
    """
    if not parts:
        raise ConfigError("cannot merge feature statistics: expected at least one part, found 0")
    if len({p.dim for p in parts}) > 1:
        raise ConfigError(f"cannot merge feature statistics of dimensions "
                          f"{sorted({p.dim for p in parts})}")
    count, mean, m2 = 0, None, None
    for part in parts:
        n = part.frames
        part_mean = part.mean.double()
        part_m2 = part.std.double() ** 2 * n
        if mean is None or m2 is None:
            count, mean, m2 = n, part_mean, part_m2
            continue
        total = count + n
        delta = part_mean - mean
        mean = mean + delta * (n / total)
        m2 = m2 + part_m2 + delta**2 * (count * n / total)
        count = total
    assert mean is not None and m2 is not None
    std = (m2 / count).sqrt().clamp_min(FeatureStats.STD_FLOOR)
    return FeatureStats(mean=mean.float(), std=std.float(), frames=count)


def write_stats(
    path: str | os.PathLike[str], config: FeatureConfig, stats: FeatureStats
) -> None:
    """Write ``{"features": config, "mean", "std", "frames"}`` as JSON, atomically."""
    path = Path(path)
    payload = {"features": config.to_dict(), **stats.to_dict()}
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1) + "\n",
                                                  encoding="utf-8"))


def read_stats(path: str | os.PathLike[str]) -> tuple[FeatureConfig, FeatureStats]:
    """Read a ``stats.json`` written by :func:`write_stats` (``seqkit data prepare``).

    Returns:
        The feature config the statistics were computed with, and the statistics.

    Raises:
        ConfigError: the file is missing, not JSON, or malformed; or config and stats disagree.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"feature statistics {path} not found: run `seqkit data prepare` to make them"
        ) from None
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot read feature statistics {path} ({err}): run `seqkit data prepare` again"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("features"), dict):
        raise ConfigError(
            f"feature statistics {path} lack a 'features' object: run `seqkit data prepare` again"
        )
    config = FeatureConfig.from_dict(data["features"])
    stats = FeatureStats.from_dict(data)
    if stats.dim != config.dim or not math.isfinite(float(stats.mean.sum())):
        raise ConfigError(
            f"feature statistics {path} have {stats.dim} dims (or non-finite values) but the "
            f"config gives {config.dim}: run `seqkit data prepare` again"
        )
    return config, stats


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded (feature extraction), then restore the thread count.

    One utterance's features are small work: on a busy 2-core machine two intra-op threads
    spinning against other processes made feature extraction 10-20x slower than one thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
