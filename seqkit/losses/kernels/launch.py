"""What every loss-kernel launch shares: its device, its warps and its argument layout.

Triton launches on the *current* CUDA device, whatever device the tensors are on, so a launch
for ``cuda:1`` tensors while device 0 is current would run on the wrong device. The kernels read
their (B,) per-sequence arguments as ``ptr + b``, so those must be contiguous (a strided view or
an expanded length tensor would be read out of bounds). This module imports no triton.
"""

from __future__ import annotations

import contextlib

import torch

# Lanes per thread the sequential-lattice programs (CTC, transducer alpha/beta) aim for: each
# lane keeps about a dozen vectors live, and more lanes per thread than this spills registers.
_LANES_PER_THREAD = 4
_MAX_WARPS = 16


def on_device(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """A context in which Triton launches on ``tensor``'s CUDA device (a no-op on the CPU)."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


def num_warps_for(lanes: int) -> int:
    """Warps for a program ``lanes`` wide: about four lanes a thread, 1 to 16 warps (powers of 2).

    The CTC and alpha/beta programs walk their lattice one frame (or diagonal) at a time with a
    barrier between steps, so a wider program gets more warps rather than more lanes a thread.
    """
    warps = 1
    while warps < _MAX_WARPS and warps * 32 * _LANES_PER_THREAD < lanes:
        warps *= 2
    return warps

