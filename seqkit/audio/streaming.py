"""The front end in pieces: samples arrive in chunks, normalized feature frames leave as soon as
they are final, equal to :func:`~seqkit.audio.features.compute_features` on the whole waveform.

Each Kaldi filterbank frame depends only on its own 25 ms window, so a frame is computed once its
window has arrived. The Δ of frame t is a regression over frames t-2..t+2 (``delta_window`` = 2)
and ΔΔ the same regression over the Δs, so a fbank123 frame is final 2 x 2 = 4 frames (40 ms)
after its own window: that is the front end's algorithmic lookahead. At the end of the stream
the last frames are repeated, as :func:`torchaudio.functional.compute_deltas` pads them.
"""

from __future__ import annotations

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from seqkit.audio.features import FeatureConfig, FeatureStats
from seqkit.errors import AudioError, ConfigError


class _DeltaStage:
    """Δ of a frame stream with ``d`` frames of lookahead (replicate padding at both ends)."""

    def __init__(self, d: int) -> None:
        self.d = d
        self.buffer: torch.Tensor | None = None  # (2d + pending, F): context + frames to finish

    def _interior(self, buffer: torch.Tensor) -> torch.Tensor:
        centers = buffer.shape[0] - 2 * self.d
        if centers <= 0:
            self.buffer = buffer
            return buffer.new_zeros(0, buffer.shape[1])
        # compute_deltas runs along the last axis: (F, rows) in, interior columns out
        deltas = AF.compute_deltas(buffer.T, win_length=2 * self.d + 1).T  # (rows, F)
        self.buffer = buffer[centers:]  # the 2d rows of context the next centre needs
        return deltas[self.d : self.d + centers]

    def accept(self, frames: torch.Tensor) -> torch.Tensor:
        """(n, F) new frames -> (m, F) Δ of the frames whose right context is now complete."""
        if frames.shape[0] == 0:
            return frames
        if self.buffer is None:  # left edge: the first frame repeated, as compute_deltas pads
            self.buffer = torch.cat([frames[:1].expand(self.d, -1), frames])
        else:
            self.buffer = torch.cat([self.buffer, frames])
        return self._interior(self.buffer)

    def finish(self, dim: int) -> torch.Tensor:
        """(m, F) Δ of the frames still waiting (right edge: the last frame repeated)."""
        if self.buffer is None:
            return torch.zeros(0, dim)
        buffer = torch.cat([self.buffer, self.buffer[-1:].expand(self.d, -1)])
        out = self._interior(buffer)
        self.buffer = None
        return out


class StreamingFeatures:
    """Incremental :func:`compute_features` + CMVN: push samples, get the frames now final.

    Args:
        config: the model's front end.
        stats: normalization statistics; None returns unnormalized features.

    Raises:
        ConfigError: the front end normalizes by the utterance's mean (``config.cmn``).

    Attributes:
        lookahead_ms: audio a frame waits for beyond its own 10 ms hop: the rest of its window
            (15 ms) plus the Δ/ΔΔ context (40 ms for fbank123, 0 for fbank80).
    """

    def __init__(self, config: FeatureConfig, stats: FeatureStats | None = None) -> None:
        if config.cmn:
            raise ConfigError(
                "this model subtracts each recording's mean from its features (features.cmn), "
                "which needs the whole recording: decode the file without streaming, or stream "
                "a model trained with features.cmn = false"
            )
        self.config = config
        self.stats = stats
        self.window = int(config.sample_rate * config.frame_length_ms / 1000)
        self.shift = config.frame_shift_samples
        self.samples = torch.zeros(0)
        self.frames_out = 0
        self.static_count = 0  # filterbank frames computed so far
        self.with_deltas = config.kind == "fbank123"
        self.delta = _DeltaStage(config.delta_window)
        self.delta2 = _DeltaStage(config.delta_window)
        self.pending_static: list[torch.Tensor] = []  # frames waiting for their Δ and ΔΔ
        self.pending_delta: list[torch.Tensor] = []
        delta_frames = 2 * config.delta_window if self.with_deltas else 0
        self.lookahead_ms = (
            config.frame_length_ms - config.frame_shift_ms + delta_frames * config.frame_shift_ms
        )

    def _static(self) -> torch.Tensor:
        """Filterbank frames of every complete window in the buffer; the buffer moves on."""
        count = 0 if self.samples.numel() < self.window else (
            1 + (self.samples.numel() - self.window) // self.shift
        )
        if count == 0:
            return torch.zeros(0, self.config.n_mels + (1 if self.with_deltas else 0))
        used = (count - 1) * self.shift + self.window
        fbank = kaldi.fbank(
            self.samples[:used].unsqueeze(0),  # (1, N)
            num_mel_bins=self.config.n_mels,
            frame_length=self.config.frame_length_ms,
            frame_shift=self.config.frame_shift_ms,
            sample_frequency=self.config.sample_rate,
            low_freq=self.config.low_freq,
            high_freq=self.config.high_freq,
            use_energy=self.with_deltas,
            dither=0.0,
        )  # (count, n_mels [+1]), same settings as compute_features
        self.samples = self.samples[count * self.shift :]
        self.static_count += count
        return fbank

    def _combine(self, static: torch.Tensor, delta: torch.Tensor, delta2: torch.Tensor,
                 ) -> torch.Tensor:
        """Pair the ΔΔ frames with their waiting static and Δ frames, normalize."""
        if self.with_deltas:
            self.pending_static.append(static)
            self.pending_delta.append(delta)
            statics = torch.cat(self.pending_static)
            deltas = torch.cat(self.pending_delta)
            n = delta2.shape[0]
            self.pending_static, self.pending_delta = [statics[n:]], [deltas[n:]]
            frames = torch.cat([statics[:n], deltas[:n], delta2], dim=1)  # (n, 3 * F0)
        else:
            frames = static
        self.frames_out += frames.shape[0]
        return self.stats.normalize(frames) if self.stats is not None else frames

    def accept(self, samples: torch.Tensor) -> torch.Tensor:
        """Add samples; return the frames that became final.

        Args:
            samples: (N,) float32 at ``config.sample_rate``, in [-1, 1], any N >= 0.

        Returns:
            (n, F) float32 normalized frames, the continuation of earlier calls' frames.

        Raises:
            AudioError: ``samples`` is not 1-D.
        """
        if samples.dim() != 1:
            raise AudioError(
                f"expected mono samples (N,), found shape {tuple(samples.shape)}: "
                "mix the channels down first"
            )
        self.samples = torch.cat([self.samples, samples.to(torch.float32)])
        static = self._static()
        if not self.with_deltas:
            return self._combine(static, static, static)
        delta = self.delta.accept(static)
        return self._combine(static, delta, self.delta2.accept(delta))

    def finish(self) -> torch.Tensor:
        """End of the stream: the remaining frames (samples short of a window are dropped).

        Raises:
            AudioError: the whole stream was shorter than one analysis window.
        """
        static = self._static()
        if self.static_count == 0:
            raise AudioError(
                f"the audio stream ended after {self.samples.numel()} samples, fewer than one "
                f"{self.config.frame_length_ms:g} ms window ({self.window} samples): "
                "expected a longer recording"
            )
        dim = self.config.n_mels + 1
        if not self.with_deltas:
            return self._combine(static, static, static)
        delta = torch.cat([self.delta.accept(static), self.delta.finish(dim)])
        delta2 = torch.cat([self.delta2.accept(delta), self.delta2.finish(dim)])
        return self._combine(static, delta, delta2)
