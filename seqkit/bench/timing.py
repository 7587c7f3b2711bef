"""Side-by-side timing shared by the loss benchmarks.

Ours and the peer run forward + backward on the same inputs, alternating (so drifting machine
load hits both alike), after one warm-up call each; the median of the repeats is kept.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from seqkit.errors import BackendUnavailableError


def loss_device(device: str) -> tuple[torch.device, str]:
    """The torch device to benchmark on and our backend for it (triton on CUDA, cpu otherwise).

    Raises:
        BackendUnavailableError: ``device`` is "cuda" but no CUDA device is available.
    """
    target = torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "expected a CUDA device for --device cuda, found none: use --device cpu"
        )
    return target, "triton" if target.type == "cuda" else "cpu"


def cpu_threads(device: torch.device) -> int | None:
    """Threads both sides may use on CPU: torch's intra-op count (``torch.set_num_threads`` or
    OMP_NUM_THREADS). torch's losses parallelize over the batch with it, and so does ours."""
    return torch.get_num_threads() if device.type == "cpu" else None


def _time_ms(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000.0


def _forward_backward(
    loss_fn: Callable[..., torch.Tensor], args: tuple[torch.Tensor, ...]
) -> Callable[[], None]:
    """``loss_fn(*args).backward()`` as a call, the leaf ``args[0]``'s gradient reset first."""
    leaf = args[0]

    def call() -> None:
        leaf.grad = None
        loss_fn(*args).backward()

    return call


def compare_forward_backward(
    ours: Callable[..., torch.Tensor],
    peer: Callable[..., torch.Tensor],
    args: tuple[torch.Tensor, ...],
    *,
    device: torch.device,
    repeats: int,
) -> tuple[float, float]:
    """Median milliseconds of ``loss(*args).backward()`` for ours and the peer.

    ``args[0]`` is the leaf tensor that receives the gradient (reset before every call).
    """
    ours_step, peer_step = _forward_backward(ours, args), _forward_backward(peer, args)
    ours_step()
    peer_step()
    ours_ms, peer_ms = [], []
    for _ in range(repeats):
        ours_ms.append(_time_ms(ours_step, device))
        peer_ms.append(_time_ms(peer_step, device))
    return statistics.median(ours_ms), statistics.median(peer_ms)


def peak_memory_mib(fn: Callable[[], None], device: torch.device,
                    leaf: torch.Tensor | None = None) -> float | None:
    """CUDA memory ``fn`` allocates at its peak beyond what was allocated before it, in MiB.

    ``torch.cuda.max_memory_allocated`` after a reset of the peak: the inputs are already
    allocated, so this is the loss's own working memory plus the gradient of ``leaf``, whose
    gradient from the warm-up call is dropped before the count starts (left allocated, the
    gradient would be counted as an input). None off CUDA (the CPU allocator keeps no peak).
    """
    if device.type != "cuda":
        return None
    fn()  # a first call allocates what is cached between calls (workspace, kernels)
    if leaf is not None:
        leaf.grad = None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def time_loss_on_shapes(
    ours: Callable[..., torch.Tensor],
    peer: Callable[..., torch.Tensor],
    make_inputs: Callable[..., tuple[torch.Tensor, ...]],
    shapes: Sequence[tuple[int, ...]],
    *,
    loss: str,
    axes: str,
    peer_name: str,
    device: torch.device,
    backend: str,
    repeats: int,
    progress: Callable[[str, int, int], None] | None,
    memory: bool = False,
) -> list[dict]:
    """One row per shape of :func:`compare_forward_backward` on ``make_inputs(*shape, device,
    seed=index)``, whose first tensor gets the gradient.

    With ``memory`` each row also gets ``ours_peak_mib`` and ``peer_peak_mib``
    (:func:`peak_memory_mib`: None off CUDA), measured after the timing.

    Returns:
        Rows {"loss", "shape": "B=.. T=.." (``axes`` letters), "backend", "ours_ms", "peer",
        "peer_ms", "ratio": ours_ms / peer_ms, "threads": CPU threads each side may use}.
    """
    description = f"{loss} loss"
    rows: list[dict] = []
    for index, shape in enumerate(shapes):
        if progress is not None:
            progress(description, index, len(shapes))
        args = make_inputs(*shape, device, seed=index)
        args = (args[0].requires_grad_(), *args[1:])
        ours_median, peer_median = compare_forward_backward(
            ours, peer, args, device=device, repeats=repeats
        )
        rows.append({
            "loss": loss,
            "shape": " ".join(f"{a}={n}" for a, n in zip(axes.split(), shape, strict=True)),
            "backend": backend,
            "ours_ms": ours_median,
            "peer": peer_name,
            "peer_ms": peer_median,
            "ratio": ours_median / peer_median,
            "threads": cpu_threads(device),
        })
        if memory:
            rows[-1]["ours_peak_mib"] = peak_memory_mib(_forward_backward(ours, args), device,
                                                        args[0])
            rows[-1]["peer_peak_mib"] = peak_memory_mib(_forward_backward(peer, args), device,
                                                        args[0])
        del args
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next shape's peak starts from its own inputs
    if progress is not None:
        progress(description, len(shapes), len(shapes))
    return rows
