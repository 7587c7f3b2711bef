"""The loss backends every loss test body runs on (torchaudio's ``*_impl.py`` pattern).

A property of a loss (matches brute force, passes gradcheck, equals torch, zero gradient on
padding, ...) is written once and parametrized by :data:`BACKENDS`: the native CPU path, and the
Triton kernels, on CUDA when there is a GPU and otherwise on CPU tensors through Triton's
interpreter (``TRITON_INTERPRET=1``, set by ``conftest.py``). A :class:`LossBackend` takes CPU
tensors, runs the loss on its device and returns the result on the CPU; ``Tensor.to`` is
differentiable, so gradients reach the caller's CPU leaves and a test body never names a device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from seqkit.losses.ctc import ctc_loss
from seqkit.losses.transducer import transducer_loss

CUDA = torch.cuda.is_available()


@dataclass(frozen=True)
class LossBackend:
    """One backend of the losses: its ``backend=`` name and the device its tensors live on."""

    name: str
    device: str

    @property
    def interpreted(self) -> bool:
        """Triton's interpreter: the kernels run, slowly; tests keep to tiny shapes there."""
        return self.name == "triton" and self.device == "cpu"

    def _to(self, value: Any) -> Any:
        return value.to(self.device) if isinstance(value, torch.Tensor) else value

    def ctc_loss(self, log_probs, targets, input_lengths, target_lengths, **options):
        """:func:`seqkit.losses.ctc_loss` on this backend, the result on the CPU."""
        args = (log_probs, targets, input_lengths, target_lengths)
        return ctc_loss(*map(self._to, args), backend=self.name, **options).cpu()

    def transducer_loss(self, logits, targets, logit_lengths, target_lengths, **options):
        """:func:`seqkit.losses.transducer_loss` on this backend, the result on the CPU."""
        args = (logits, targets, logit_lengths, target_lengths)
        return transducer_loss(*map(self._to, args), backend=self.name, **options).cpu()


CPU = LossBackend("cpu", "cpu")
TRITON = LossBackend("triton", "cuda" if CUDA else "cpu")

BACKENDS = [
    pytest.param(CPU, id="cpu"),
    pytest.param(TRITON, id="triton-cuda" if CUDA else "triton-interpreter"),
]
