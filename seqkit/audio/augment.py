"""SpecAugment: frequency and time masking of feature frames.

Park et al. (2019), "SpecAugment: A Simple Data Augmentation Method for Automatic Speech
Recognition". Time warping is left out (the paper found it the least useful part). Masks are
set to zero, which is the mean after global CMVN, so apply this to normalized features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqkit.errors import ConfigError


def _mask_spans(
    length: int, count: int, max_width: int, generator: torch.Generator | None
) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for _ in range(count):
        width = int(torch.randint(0, min(max_width, length) + 1, (1,), generator=generator))
        start = int(torch.randint(0, length - width + 1, (1,), generator=generator))
        spans.append((start, start + width))
    return spans


def spec_augment(
    feats: torch.Tensor,
    *,
    freq_masks: int = 2,
    freq_width: int = 15,
    time_masks: int = 2,
    time_width: int = 40,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero random bands of feature dimensions and random runs of frames.

    Each mask draws its width uniformly from 0..max width (capped at the axis length) and its
    start uniformly among the positions where it fits, so masks never run past the edges.

    Args:
        feats: (T, F) normalized features; not modified.
        freq_masks: number of frequency masks. Default: 2.
        freq_width: maximum width of a frequency mask in feature dimensions. Default: 15.
        time_masks: number of time masks. Default: 2.
        time_width: maximum width of a time mask in frames. Default: 40.
        generator: random source; a seeded generator gives the same masks every time.
            Default: torch's global generator.

    Returns:
        (T, F) a masked copy of ``feats`` (same dtype and device).

    Raises:
        ConfigError: ``feats`` is not 2-D, or a count or width is negative.
    """
    if feats.dim() != 2:
        raise ConfigError(f"expected features (T, F), found shape {tuple(feats.shape)}")
    for name, value in (
        ("freq_masks", freq_masks),
        ("freq_width", freq_width),
        ("time_masks", time_masks),
        ("time_width", time_width),
    ):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, found {value}")
    T, F = feats.shape
    out = feats.clone()
    if T == 0 or F == 0:
        return out
    for start, end in _mask_spans(F, freq_masks, freq_width, generator):
        out[:, start:end] = 0
    for start, end in _mask_spans(T, time_masks, time_width, generator):
        out[start:end, :] = 0
    return out


@dataclass(frozen=True)
class SpecAugment:
    """How many masks of what widths :func:`spec_augment` sets, per utterance.

    Attributes:
        freq_masks: frequency masks.
        freq_width: maximum frequency mask width (feature dimensions).
        time_masks: time masks.
        time_width: maximum time mask width (frames).
    """

    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 2
    time_width: int = 40

    def apply(self, feats: torch.Tensor, generator: torch.Generator | None = None
              ) -> torch.Tensor:
        """(T, F) a masked copy of normalized ``feats`` (see :func:`spec_augment`)."""
        return spec_augment(feats, freq_masks=self.freq_masks, freq_width=self.freq_width,
                            time_masks=self.time_masks, time_width=self.time_width,
                            generator=generator)
