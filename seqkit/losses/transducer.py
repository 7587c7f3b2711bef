"""The RNN-transducer loss (Graves 2012): public op, input checks and backend choice.

``transducer_loss`` mirrors ``torchaudio.functional.rnnt_loss`` (same argument order, same
"mean" = batch mean of per-sequence costs, same gradient clamping), except that ``blank``
defaults to 0 as in every seqkit API. Two backends compute it: our Triton kernels
(``seqkit.losses.kernels.transducer``, for CUDA tensors, or CPU tensors under
``TRITON_INTERPRET=1``) and a vectorized PyTorch path for CPU tensors
(``seqkit.losses.cpu_transducer``). Both compute the gradient in closed form (softmax minus
occupancy), so autograd never stores a log-softmax of the (B, T, U+1, V) logits.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

from seqkit.errors import LossInputError
from seqkit.losses import cpu_transducer
from seqkit.losses.backends import HALF_DTYPES, check_reduction, choose_backend, triton_kernels

_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = _CPU_DTYPES + HALF_DTYPES


def transducer_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    *,
    blank: int = 0,
    reduction: str = "mean",
    fused_log_softmax: bool = True,
    clamp: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """RNN-transducer loss from *Sequence Transduction with Recurrent Neural Networks*.

    Graves 2012. The cost of sequence b is ``-log p(targets[b, :U_b] | logits[b, :T_b, :U_b+1])``
    summed over every monotone alignment of the lattice; the joint output at (t, u) predicts
    label u+1 or blank.

    .. devices:: CPU CUDA

    .. properties:: Autograd

    Args:
        logits: (B, T, U+1, V) joint-network outputs, unnormalized (``fused_log_softmax=True``)
            or log-probabilities (False). float32 or float64; float16 / bfloat16 on CUDA
            (accumulated in float32).
        targets: (B, U) integer labels, padded with anything past ``target_lengths``; no valid
            label may equal ``blank``.
        logit_lengths: (B,) integers in [1, T], the frames of each sequence.
        target_lengths: (B,) integers in [0, U], the labels of each sequence.
        blank: index of the blank class in [0, V). Default 0.
        reduction: ``"none"`` | ``"sum"`` | ``"mean"`` (batch mean of per-sequence costs, not
            divided by target length; as torchaudio). Default ``"mean"``.
        fused_log_softmax: apply log-softmax over V inside the loss (True, default; the
            gradient is then softmax minus occupancy) or take ``logits`` as log-probabilities
            (False; the gradient is minus the move occupancies, as torchaudio).
        clamp: clip each sequence's gradient with respect to ``logits`` to [-clamp, clamp]
            before the reduction scales it (as torchaudio). None (default) means no clipping.
        backend: ``"auto"`` (Triton for CUDA tensors, CPU otherwise), ``"cpu"`` or
            ``"triton"`` (CPU tensors only with ``TRITON_INTERPRET=1``). Default ``"auto"``.

    A move whose log-prob is -inf or at or below -1e20 (a masking sentinel) is impossible, as in
    :func:`seqkit.losses.ctc_loss`. A sequence none of whose paths is possible costs +inf and
    gets gradient exactly 0 on both backends (the sum over paths is 0: the brute-force cost is
    +inf too, with a NaN gradient; torchaudio returns NaN). The CPU backend floors finite move
    log-probs at -1e4 for its prefix-sum scans, so only there does a path through a move of
    log-prob -2e4 cost about 1e4 instead of 2e4.

    Returns:
        (B,) costs for ``reduction="none"``, a scalar otherwise; in the logits dtype (float32
        for float16 / bfloat16 logits).

    Raises:
        LossInputError: a shape, dtype, device, length, label or option is wrong.
        BackendUnavailableError: the requested backend cannot run these tensors.
    """
    check_reduction(reduction)
    if clamp is not None and not clamp > 0:
        raise LossInputError(
            f"expected clamp > 0 or None, found {clamp!r}: pass None to leave gradients unclipped"
        )
    _check_shapes(logits, targets, logit_lengths, target_lengths, blank)
    module = (
        cpu_transducer
        if choose_backend(backend, logits) == "cpu"
        else triton_kernels("transducer")
    )
    targets64, logit_lengths64, target_lengths64 = _checked_values(
        logits, targets, logit_lengths, target_lengths, blank
    )
    costs = _TransducerLossFunction.apply(
        logits.contiguous(),
        targets64,
        logit_lengths64,
        target_lengths64,
        module,
        blank,
        bool(fused_log_softmax),
        None if clamp is None else float(clamp),
    )
    if reduction == "mean":
        return costs.mean()
    if reduction == "sum":
        return costs.sum()
    return costs


class _TransducerLossFunction(torch.autograd.Function):
    """Per-sequence costs with a closed-form backward supplied by the chosen backend."""

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        targets: torch.Tensor,
        logit_lengths: torch.Tensor,
        target_lengths: torch.Tensor,
        module: ModuleType,
        blank: int,
        fused_log_softmax: bool,
        clamp: float | None,
    ) -> torch.Tensor:
        costs, lattice = module.transducer_forward(
            logits,
            targets,
            logit_lengths,
            target_lengths,
            blank=blank,
            fused_log_softmax=fused_log_softmax,
        )
        ctx.module = module
        ctx.options = (blank, fused_log_softmax, clamp)
        ctx.lattice_type = type(lattice)
        ctx.save_for_backward(logits, targets, logit_lengths, target_lengths, *lattice)
        return costs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_costs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        logits, targets, logit_lengths, target_lengths, *saved = ctx.saved_tensors
        blank, fused_log_softmax, clamp = ctx.options
        grad = None
        if ctx.needs_input_grad[0]:
            grad = ctx.module.transducer_gradient(
                logits,
                targets,
                logit_lengths,
                target_lengths,
                ctx.lattice_type(*saved),
                grad_costs,
                blank=blank,
                fused_log_softmax=fused_log_softmax,
                clamp=clamp,
            )
        return grad, None, None, None, None, None, None, None


def _check_shapes(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
) -> None:
    """Reject wrong ranks, sizes, dtypes and devices with expected-vs-found messages."""
    for name, value in (
        ("logits", logits),
        ("targets", targets),
        ("logit_lengths", logit_lengths),
        ("target_lengths", target_lengths),
    ):
        if not isinstance(value, torch.Tensor):
            raise LossInputError(f"expected {name} to be a torch.Tensor, found {type(value)}")
    shape = tuple(logits.shape)
    if logits.dim() != 4:
        hint = ": CTC log-probs passed to the transducer loss?" if logits.dim() == 3 else ""
        raise LossInputError(f"expected logits (B, T, U+1, V), found {shape}{hint}")
    B, T, U1, V = shape
    if min(shape) == 0:
        raise LossInputError(f"expected logits (B, T, U+1, V) with every size >= 1, found {shape}")
    allowed = _CUDA_DTYPES if logits.is_cuda else _CPU_DTYPES
    if logits.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise LossInputError(
            f"expected logits dtype {names} on {logits.device.type}, found {logits.dtype}"
        )
    if targets.dim() != 2 or tuple(targets.shape) != (B, U1 - 1):
        raise LossInputError(
            f"expected targets (B, U) = ({B}, {U1 - 1}) to match logits {shape}, "
            f"found {tuple(targets.shape)}: pad targets to U = logits.shape[2] - 1"
        )
    for name, value in (
        ("targets", targets),
        ("logit_lengths", logit_lengths),
        ("target_lengths", target_lengths),
    ):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise LossInputError(f"expected {name} of an integer dtype, found {value.dtype}")
    for name, value in (("logit_lengths", logit_lengths), ("target_lengths", target_lengths)):
        if tuple(value.shape) != (B,):
            raise LossInputError(
                f"expected {name} of shape (B,) = ({B},), found {tuple(value.shape)}"
            )
    if targets.device != logits.device:
        raise LossInputError(
            f"expected targets on the logits device {logits.device}, found {targets.device}"
        )
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < V:
        raise LossInputError(f"expected blank in [0, V) = [0, {V}), found {blank!r}")


def _checked_values(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check lengths and labels; return int64 copies on the logits device, padding made valid."""
    B, T, U1, V = logits.shape
    U = U1 - 1
    logit_lengths_cpu = logit_lengths.detach().to("cpu", torch.int64)
    target_lengths_cpu = target_lengths.detach().to("cpu", torch.int64)
    bad = (logit_lengths_cpu < 1) | (logit_lengths_cpu > T)
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        raise LossInputError(
            f"expected logit_lengths in [1, T] = [1, {T}], found {int(logit_lengths_cpu[b])} "
            f"for sequence {b}: drop empty utterances or pad logits to the longest one"
        )
    bad = (target_lengths_cpu < 0) | (target_lengths_cpu > U)
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        raise LossInputError(
            f"expected target_lengths in [0, U] = [0, {U}], found {int(target_lengths_cpu[b])} "
            f"for sequence {b}: logits.shape[2] must be at least max(target_lengths) + 1"
        )
    device = logits.device
    targets64 = targets.detach().to(torch.int64)
    valid = torch.arange(U, device=device)[None, :] < target_lengths_cpu.to(device)[:, None]
    wrong = valid & ((targets64 < 0) | (targets64 >= V) | (targets64 == blank))
    if bool(wrong.any()):
        b, u = (int(i) for i in wrong.nonzero()[0])
        raise LossInputError(
            f"expected target labels in [0, V) = [0, {V}) other than blank={blank}, found "
            f"{int(targets64[b, u])} at targets[{b}, {u}]: check the label map and blank index"
        )
    targets64 = torch.where(valid, targets64, 0)  # any class: padded labels are never read
    return (
        targets64.contiguous(),
        logit_lengths_cpu.to(device),
        target_lengths_cpu.to(device),
    )
