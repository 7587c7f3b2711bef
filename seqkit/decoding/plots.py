"""Alignment pictures: the filterbank of an utterance with phone boundaries and labels."""

from __future__ import annotations

import os
from pathlib import Path

from seqkit.atomic import write_atomic
from seqkit.decoding.results import Hypothesis
from seqkit.errors import ConfigError


def plot_alignment(
    hypothesis: Hypothesis,
    path: str | os.PathLike[str],
    *,
    mel_bands: int = 40,
    title: str | None = None,
) -> Path:
    """Write a PNG: log-mel features over time, a line at every phone boundary, phone labels.

    Args:
        hypothesis: a result of :func:`seqkit.decoding.recognize.recognize_files` decoded with
            ``keep_features=True``.
        path: the PNG to write (atomically: temp file in the same folder + os.replace).
        mel_bands: leading feature dimensions drawn (the static log-mel bands). Default 40.
        title: figure title. Default: the hypothesis name.

    Returns:
        The written path.

    Raises:
        ConfigError: the hypothesis carries no features.
    """
    if hypothesis.features is None:
        raise ConfigError(
            f"no features kept for {hypothesis.name}: decode with keep_features=True to plot"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feats = hypothesis.features[:, :mel_bands].float().cpu().numpy()  # (T, F')
    frame_shift = hypothesis.duration / max(feats.shape[0], 1)
    width = min(max(6.0, hypothesis.duration * 4.0), 40.0)
    fig, ax = plt.subplots(figsize=(width, 3.2), dpi=100)
    ax.imshow(
        feats.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0.0, feats.shape[0] * frame_shift, 0, feats.shape[1]),
    )
    for i, seg in enumerate(hypothesis.segments):
        if i:
            ax.axvline(seg.start, color="white", linewidth=0.8)
        ax.text(
            (seg.start + seg.end) / 2,
            feats.shape[1] * 1.02,
            seg.phone,
            ha="center",
            va="bottom",
            fontsize=8,
            rotation=90 if seg.end - seg.start < 0.05 else 0,
        )
    ax.set_xlim(0.0, hypothesis.duration)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    ax.set_title(title or Path(hypothesis.name).name, pad=18, fontsize=10)
    fig.tight_layout()
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
