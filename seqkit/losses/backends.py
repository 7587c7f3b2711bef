"""What the CTC and transducer losses share: their options, dtypes and the choice of backend.

Both losses run our Triton kernels on CUDA tensors and a native path on CPU tensors; the kernels
also run on CPU tensors under ``TRITON_INTERPRET=1``, which is how the tests check them on
machines without a GPU. Keeping the choice here makes the two losses agree on it by construction.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch

from seqkit.errors import BackendUnavailableError, LossInputError

REDUCTIONS = ("none", "sum", "mean")
BACKENDS = ("auto", "cpu", "triton")
HALF_DTYPES = (torch.float16, torch.bfloat16)

# A log-probability at or below this counts as log(0). Masking sentinels such as -1e30 or
# torch.finfo(float32).min stand for "impossible"; kept finite they give a finite cost of ~1e30
# for an impossible alignment (torch's behaviour) instead of inf.
LOG_ZERO_THRESHOLD = -1e20


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the recursions run in: float64 for float64 input, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_reduction(reduction: str) -> None:
    """Raise unless ``reduction`` is one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise LossInputError(
            f"expected reduction one of {', '.join(REDUCTIONS)}, found {reduction!r}"
        )


def choose_backend(backend: str, data: torch.Tensor) -> str:
    """Resolve ``backend`` for tensors like ``data``: "auto" is triton on CUDA, cpu otherwise.

    Raises:
        LossInputError: ``backend`` is not one of :data:`BACKENDS`.
        BackendUnavailableError: "cpu" with CUDA tensors, or "triton" with CPU tensors and no
            ``TRITON_INTERPRET=1``.
    """
    if backend not in BACKENDS:
        raise LossInputError(f"expected backend one of {', '.join(BACKENDS)}, found {backend!r}")
    on_cuda = data.is_cuda
    if backend == "auto":
        return "triton" if on_cuda else "cpu"
    if backend == "cpu" and on_cuda:
        raise BackendUnavailableError(
            f"backend 'cpu' needs CPU tensors, found them on {data.device}: "
            "use backend='auto' or 'triton', or move the tensors with .cpu()"
        )
    if backend == "triton" and not on_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise BackendUnavailableError(
            "backend 'triton' needs CUDA tensors or TRITON_INTERPRET=1 (found CPU tensors "
            "without it): use backend='cpu', or set TRITON_INTERPRET=1 before importing seqkit "
            "(slow, for testing)"
        )
    return backend


def triton_kernels(loss: str) -> ModuleType:
    """Import ``seqkit.losses.kernels.<loss>`` lazily, turning a missing Triton into a sentence."""
    try:
        return importlib.import_module(f"seqkit.losses.kernels.{loss}")
    except ImportError as error:
        raise BackendUnavailableError(
            f"backend 'triton' needs the triton package, which failed to import ({error}): "
            "pip install triton, or use backend='cpu'"
        ) from error
