"""Samples given in memory (numpy arrays, torch tensors) as the front end takes them.

A file is read by :func:`seqkit.audio.load_audio`: mono float32 in [-1, 1], resampled with
:func:`torchaudio.functional.resample`. Samples handed over from Python go through the same
conversion here, so an array and the file it came from decode alike. :class:`StreamResampler`
does the same resampling chunk by chunk for a stream: it computes the very filter sums the
whole-signal resampler computes, only as soon as their inputs have arrived.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF
from torchaudio.functional.functional import _get_sinc_resample_kernel

from seqkit.errors import AudioError, ConfigError

# Integer PCM scales as soundfile reads it (dtype="float32"): full scale maps to [-1, 1).
_INT_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


def samples_of(samples: Any, *, what: str = "samples") -> torch.Tensor:
    """A 1-D numpy array or torch tensor as (N,) float32 on the CPU.

    Float samples are taken as they are (expected in [-1, 1]); int16 and int32 PCM are scaled
    to [-1, 1) as soundfile scales them when it reads a file.

    Raises:
        AudioError: not 1-D, empty, or of a dtype other than float or int16 / int32 PCM.
    """
    if isinstance(samples, torch.Tensor):
        array = samples.detach().cpu().numpy()
    elif isinstance(samples, np.ndarray):
        array = samples
    else:
        raise AudioError(
            f"{what}: expected a path, a 1-D numpy array or a torch tensor, found "
            f"{type(samples).__name__}"
        )
    if array.ndim != 1:
        raise AudioError(
            f"{what}: expected 1-D mono samples, found shape {tuple(array.shape)}: pass one "
            "channel, or the mean of the channels (e.g. x.mean(axis=0) for (channels, N))"
        )
    if array.shape[0] == 0:
        raise AudioError(f"{what} has no samples: expected a non-empty recording")
    if np.issubdtype(array.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    scale = _INT_SCALE.get(array.dtype)
    if scale is None:
        raise AudioError(
            f"{what}: expected float samples in [-1, 1] or int16 / int32 PCM, found dtype "
            f"{array.dtype}"
        )
    return torch.from_numpy((array.astype(np.float64) / scale).astype(np.float32))


def check_sample_rate(sample_rate: Any) -> int:
    """``sample_rate`` as a positive int (ConfigError otherwise)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or (
            sample_rate <= 0):
        raise ConfigError(f"expected sample_rate a positive int (Hz), found {sample_rate!r}")
    return int(sample_rate)


def waveform_at(samples: Any, sample_rate: int, rate: int, *, what: str = "samples"
                ) -> torch.Tensor:
    """In-memory samples at ``sample_rate`` as (N',) float32 at ``rate``, resampled as files are.

    Raises:
        AudioError: see :func:`samples_of`.
    """
    wave = samples_of(samples, what=what)
    if sample_rate != rate:
        wave = AF.resample(wave, orig_freq=sample_rate, new_freq=rate)
    return wave.contiguous()


class StreamResampler:
    """Resample a stream chunk by chunk to the samples :func:`torchaudio.functional.resample`
    gives for the whole signal.

    The whole-signal resampler pads ``width`` zeros before the signal and ``width + orig``
    after it, then takes one windowed-sinc sum per output block every ``orig`` input samples
    (``orig`` and ``new`` are the rates over their gcd). Here the same sums are taken as soon as
    the inputs they cover have arrived; :meth:`finish` pads the end and cuts the output to
    ``ceil(new * N / orig)`` samples, as the whole-signal resampler does.

    Args:
        orig_freq: the rate of the samples fed in.
        new_freq: the rate wanted out.
    """

    def __init__(self, orig_freq: int, new_freq: int) -> None:
        self.identity = orig_freq == new_freq
        gcd = math.gcd(orig_freq, new_freq)
        self.orig, self.new = orig_freq // gcd, new_freq // gcd
        if not self.identity:
            # torchaudio.functional.resample's defaults: width 6, rolloff 0.99, Hann window
            self.kernel, self.width = _get_sinc_resample_kernel(
                orig_freq, new_freq, gcd, 6, 0.99, "sinc_interp_hann", None,
                torch.device("cpu"), torch.float32)
            self.pending = torch.zeros(self.width)  # the start's zero padding
        self.samples_in = 0
        self.samples_out = 0

    def _blocks(self, signal: torch.Tensor) -> torch.Tensor:
        """The output of every block whose inputs ``self.pending`` + ``signal`` hold."""
        self.pending = torch.cat([self.pending, signal])
        size = self.kernel.shape[-1]  # 2 * width + orig
        if self.pending.shape[0] < size:
            return self.pending.new_zeros(0)
        blocks = (self.pending.shape[0] - size) // self.orig + 1
        used = self.pending[: (blocks - 1) * self.orig + size]
        out = torch.nn.functional.conv1d(used[None, None], self.kernel, stride=self.orig)
        self.pending = self.pending[blocks * self.orig:]
        return out[0].T.reshape(-1)  # (blocks * new,): block by block, as torchaudio orders it

    def accept(self, samples: torch.Tensor) -> torch.Tensor:
        """The next input samples ((N,) float32); returns the output samples now complete."""
        self.samples_in += int(samples.shape[0])
        if self.identity:
            out = samples
        else:
            out = self._blocks(samples)
        self.samples_out += int(out.shape[0])
        return out

    def finish(self) -> torch.Tensor:
        """End of stream: the last output samples."""
        if self.identity:
            return torch.zeros(0)
        out = self._blocks(torch.zeros(self.width + self.orig))
        total = math.ceil(self.new * self.samples_in / self.orig)
        out = out[: max(0, total - self.samples_out)]
        self.samples_out += int(out.shape[0])
        return out
