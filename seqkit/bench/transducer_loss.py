"""Transducer loss speed: seqkit's ``transducer_loss`` against torchaudio's ``rnnt_loss``.

Both run forward + backward (fused log-softmax, mean reduction) on the same float32 inputs,
alternating, and the median of the repeats is kept. On CPU ours is the vectorized PyTorch path;
on CUDA it is the Triton kernels (the peer is then torchaudio's CUDA loss).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from seqkit.bench.timing import loss_device, time_loss_on_shapes
from seqkit.errors import BackendUnavailableError
from seqkit.losses.transducer import transducer_loss

PEER = "torchaudio.functional.rnnt_loss"

# (B, T, U, V): TIMIT-like phone transducers (61 phones + blank) and a larger-vocabulary case.
SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (8, 150, 40, 62),
    (8, 200, 60, 62),
    (4, 300, 80, 500),
)


def _make_inputs(
    batch: int, frames: int, labels: int, classes: int, device: torch.device, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random logits (B, T, U+1, V), int32 targets (B, U) and lengths (B,), mixed lengths."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, labels + 1, classes, generator=generator)
    targets = torch.randint(1, classes, (batch, labels), generator=generator, dtype=torch.int32)
    # Lengths between 80% and 100% of the maximum; the first sequence is full length.
    logit_lengths = frames - torch.randint(0, frames // 5 + 1, (batch,), generator=generator)
    target_lengths = labels - torch.randint(0, labels // 5 + 1, (batch,), generator=generator)
    logit_lengths[0], target_lengths[0] = frames, labels
    return (
        logits.to(device),
        targets.to(device),
        logit_lengths.to(device, torch.int32),
        target_lengths.to(device, torch.int32),
    )


def run(
    repeats: int = 5,
    device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
    *,
    shapes: Sequence[tuple[int, int, int, int]] = SHAPES,
    backend: str | None = None,
    memory: bool = False,
) -> list[dict]:
    """Time forward + backward of our transducer loss and torchaudio's on realistic shapes.

    Args:
        repeats: timed repeats per shape and implementation (after one warm-up); the median is
            reported.
        device: "cpu" or "cuda" (our Triton kernels against torchaudio's CUDA loss).
        progress: optional callback ``progress(description, completed, total)``.
        shapes: the shapes to time (default :data:`SHAPES`).
        backend: our backend instead of the device's (``"triton"`` on CPU tensors needs
            ``TRITON_INTERPRET=1``: how the GPU check's kernel timing is tested without a GPU).
        memory: also measure each side's peak CUDA memory (``ours_peak_mib``,
            ``peer_peak_mib``; None on CPU).

    Returns:
        One row per shape: {"loss": "transducer", "shape": "B=.. T=.. U=.. V=..", "backend": str,
        "ours_ms": float, "peer": str, "peer_ms": float, "ratio": ours_ms / peer_ms,
        "threads": CPU threads each side may use (None on CUDA)}.

    Raises:
        BackendUnavailableError: ``device`` is "cuda" but no CUDA device is available, or
            torchaudio (the peer) is not installed.
    """
    target, device_backend = loss_device(device)
    backend = backend or device_backend
    try:
        from torchaudio.functional import rnnt_loss
    except ImportError as error:
        raise BackendUnavailableError(
            f"the transducer benchmark compares against torchaudio, which failed to import "
            f"({error}): pip install torchaudio"
        ) from error
    return time_loss_on_shapes(
        functools.partial(transducer_loss, blank=0, backend=backend),
        functools.partial(rnnt_loss, blank=0), _make_inputs, shapes, loss="transducer",
        axes="B T U V", peer_name=PEER, device=target, backend=backend, repeats=repeats,
        progress=progress, memory=memory,
    )
