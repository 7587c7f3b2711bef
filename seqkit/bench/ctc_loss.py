"""CTC loss speed: seqkit's ``ctc_loss`` against ``torch.nn.functional.ctc_loss``.

Both run forward + backward on the same inputs, alternating, and the median of the repeats is
kept. On CPU ours is the compiled loop of :mod:`seqkit.losses.cpu_ctc` and both sides use
``torch.get_num_threads()`` threads; on CUDA ours is the Triton kernels (the peer is then torch's
CUDA / cuDNN loss).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from seqkit.bench.timing import loss_device, time_loss_on_shapes
from seqkit.losses.ctc import ctc_loss

PEER = "torch.nn.functional.ctc_loss"

# (B, T, S, C): TIMIT-like utterances (61 phones + blank), and one long-sequence case.
SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (32, 150, 30, 62),
    (16, 200, 60, 62),
    (16, 400, 60, 62),
    (8, 400, 80, 62),
    (8, 1000, 200, 32),
)


def _make_inputs(
    batch: int, frames: int, labels: int, classes: int, device: torch.device, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random log-probs (T, B, C), padded targets (B, S) and lengths (B,), mixed lengths."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(frames, batch, classes, generator=generator)  # (T, B, C)
    log_probs = logits.log_softmax(dim=-1)
    targets = torch.randint(1, classes, (batch, labels), generator=generator)  # (B, S)
    # Lengths between 80% and 100% of the maximum; the first sequence is full length.
    input_lengths = frames - torch.randint(0, frames // 5 + 1, (batch,), generator=generator)
    target_lengths = labels - torch.randint(0, labels // 5 + 1, (batch,), generator=generator)
    input_lengths[0], target_lengths[0] = frames, labels
    return (
        log_probs.to(device),
        targets.to(device),
        input_lengths.to(device),
        target_lengths.to(device),
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
    """Time forward + backward of our CTC loss and torch's on TIMIT-like shapes.

    Args:
        repeats: timed repeats per shape and implementation (after one warm-up); the median is
            reported.
        device: "cpu" or "cuda" (our Triton kernels against torch's CUDA loss).
        progress: optional callback ``progress(description, completed, total)``.
        shapes: the shapes to time (default :data:`SHAPES`).
        backend: our backend instead of the device's (``"triton"`` on CPU tensors needs
            ``TRITON_INTERPRET=1``: how the GPU check's kernel timing is tested without a GPU).
        memory: also measure each side's peak CUDA memory (``ours_peak_mib``,
            ``peer_peak_mib``; None on CPU).

    Returns:
        One row per shape: {"loss": "ctc", "shape": "B=.. T=.. S=.. C=..", "backend": str,
        "ours_ms": float, "peer": str, "peer_ms": float, "ratio": ours_ms / peer_ms,
        "threads": CPU threads each side may use (None on CUDA)}.

    Raises:
        BackendUnavailableError: ``device`` is "cuda" but no CUDA device is available.
    """
    target, device_backend = loss_device(device)
    backend = backend or device_backend
    return time_loss_on_shapes(
        functools.partial(ctc_loss, backend=backend), torch.nn.functional.ctc_loss, _make_inputs,
        shapes, loss="ctc", axes="B T S C", peer_name=PEER, device=target, backend=backend,
        repeats=repeats, progress=progress, memory=memory,
    )
