"""Connectionist temporal classification (CTC) loss with our own CPU and Triton backends.

Graves, Fernández, Gomez, Schmidhuber 2006, "Connectionist Temporal Classification: Labelling
Unsegmented Sequence Data with Recurrent Neural Networks". The signature mirrors
``torch.nn.functional.ctc_loss`` so switching costs one import; torch's loss is a benchmark peer,
never the implementation behind this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from seqkit.errors import LossInputError
from seqkit.losses.backends import HALF_DTYPES, check_reduction, choose_backend, triton_kernels
from seqkit.losses.cpu_ctc import ctc_forward_backward_cpu, scale_occupancy

LengthsLike = torch.Tensor | Sequence[int]


def _as_lengths(value: LengthsLike, name: str, batch: int, device: torch.device) -> torch.Tensor:
    """Validate a lengths argument and return it as an int64 (B,) tensor on ``device``."""
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise LossInputError(
                f"expected {name} as an integer tensor, found dtype {value.dtype}: "
                "pass frame/label counts as torch.long"
            )
        lengths = value.reshape(-1) if value.dim() == 0 else value
    else:
        try:
            lengths = torch.as_tensor(list(value), dtype=torch.long)
        except (TypeError, ValueError) as error:
            raise LossInputError(
                f"expected {name} as a tensor or a list of ints, found {type(value).__name__}"
            ) from error
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise LossInputError(
            f"expected {name} of shape ({batch},) (one per sequence in the batch), "
            f"found {tuple(lengths.shape)}"
        )
    lengths = lengths.to(device=device, dtype=torch.long)
    if batch and int(lengths.min()) < 0:
        raise LossInputError(f"expected {name} >= 0, found {int(lengths.min())}")
    return lengths


def _padded_targets(
    targets: torch.Tensor, target_lengths: torch.Tensor, batch: int
) -> torch.Tensor:
    """Return targets as (B, S) int64, unpacking concatenated 1-D targets."""
    if not isinstance(targets, torch.Tensor):
        raise LossInputError(f"expected targets as a tensor, found {type(targets).__name__}")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise LossInputError(
            f"expected integer targets, found dtype {targets.dtype}: pass class indices as long"
        )
    targets = targets.to(device=target_lengths.device, dtype=torch.long)
    max_target = int(target_lengths.max()) if batch else 0
    if targets.dim() == 2:
        if targets.shape[0] != batch:
            raise LossInputError(
                f"expected padded targets (B, S) with B={batch}, found {tuple(targets.shape)}"
            )
        if targets.shape[1] < max_target:
            raise LossInputError(
                f"expected padded targets with at least {max_target} columns (the largest target "
                f"length), found {tuple(targets.shape)}"
            )
        return targets[:, :max_target]
    if targets.dim() == 1:
        total = int(target_lengths.sum())
        if targets.shape[0] != total:
            raise LossInputError(
                f"expected concatenated 1-D targets of length sum(target_lengths)={total}, "
                f"found {targets.shape[0]}"
            )
        starts = torch.cumsum(target_lengths, 0) - target_lengths  # (B,)
        positions = torch.arange(max_target, device=targets.device)
        inside = positions[None, :] < target_lengths[:, None]  # (B, S)
        index = (starts[:, None] + positions[None, :]).clamp(max=max(total - 1, 0))
        if total == 0:
            return torch.zeros((batch, max_target), dtype=torch.long, device=targets.device)
        return torch.where(inside, targets[index], 0)
    raise LossInputError(
        f"expected targets padded (B, S) or concatenated (sum(target_lengths),), "
        f"found {targets.dim()}-D {tuple(targets.shape)}"
    )


def _checked_targets(
    targets: torch.Tensor, target_lengths: torch.Tensor, num_classes: int, blank: int
) -> torch.Tensor:
    """Raise unless every valid label lies in [0, C) and differs from the blank.

    Returns the (B, S) targets with the padding beyond each target length set to ``blank``, so
    backends may index with it freely.
    """
    positions = torch.arange(targets.shape[1], device=targets.device)
    inside = positions[None, :] < target_lengths[:, None]  # (B, S)
    labels = targets[inside]
    if labels.numel() == 0:
        return targets.masked_fill(~inside, blank)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise LossInputError(
            f"expected target labels in [0, {num_classes}) (C from log_probs), "
            f"found values from {low} to {high}"
        )
    if bool((labels == blank).any()):
        raise LossInputError(
            f"expected targets without the blank index {blank}, found it inside a target: "
            "remove blanks from the label sequences or pass the right blank="
        )
    return targets.masked_fill(~inside, blank)


class _CTCLossFunction(torch.autograd.Function):
    """Per-sequence CTC negative log-likelihood; gradient w.r.t. log_probs as a free input."""

    @staticmethod
    def forward(
        ctx: Any,
        log_probs: torch.Tensor,
        targets: torch.Tensor,
        input_lengths: torch.Tensor,
        target_lengths: torch.Tensor,
        blank: int,
        zero_infinity: bool,
        backend: str,
    ) -> torch.Tensor:
        need_grad = bool(ctx.needs_input_grad[0])
        ctx.backend = backend
        if backend == "cpu":
            nll, occupancy = ctc_forward_backward_cpu(
                log_probs, targets, input_lengths, target_lengths, blank, need_grad
            )
            if need_grad:
                ctx.save_for_backward(occupancy)
        else:
            kernels = triton_kernels("ctc")
            nll, alpha = kernels.ctc_alpha(
                log_probs, targets, input_lengths, target_lengths, blank
            )
            if need_grad:
                ctx.blank = blank
                ctx.save_for_backward(log_probs, targets, input_lengths, target_lengths, alpha, nll)
        if zero_infinity:
            nll = torch.where(torch.isinf(nll), torch.zeros_like(nll), nll)
        return nll

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_nll: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.backend == "cpu":
            (occupancy,) = ctx.saved_tensors
            # d nll_b / d log_probs[t, b, c] = -occupancy[t, b, c]
            grad_log_probs = scale_occupancy(occupancy, grad_nll)
        else:
            log_probs, targets, input_lengths, target_lengths, alpha, nll = ctx.saved_tensors
            grad_log_probs = triton_kernels("ctc").ctc_beta_grad(
                log_probs, targets, input_lengths, target_lengths, ctx.blank, alpha, nll, grad_nll
            )
        return grad_log_probs, None, None, None, None, None, None


def ctc_loss(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: LengthsLike,
    target_lengths: LengthsLike,
    *,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Connectionist temporal classification loss (Graves et al. 2006).

    .. devices:: CPU CUDA
    .. properties:: Autograd

    Same arguments and results as ``torch.nn.functional.ctc_loss``, computed by seqkit's own
    backends. The gradient is the exact derivative with respect to ``log_probs`` treated as a
    free input (minus the state occupancies; ``gradcheck`` on ``log_probs`` passes). torch
    instead returns ``exp(log_probs)`` minus the occupancies, which is the gradient with respect
    to the logits; after ``log_softmax`` (the normal use) both give identical gradients for the
    logits. Sequences with an impossible alignment get gradient exactly 0, never NaN, and frames
    ``t >= input_lengths[b]`` get exactly 0. Log-probabilities at or below -1e20 (masking
    sentinels such as -1e30) count as probability 0.

    Args:
        log_probs: (T, B, C) log-probabilities (normally ``log_softmax`` over C), float32 or
            float64; float16/bfloat16 accepted on CUDA (accumulated in float32).
        targets: (B, S) padded labels, S >= max(target_lengths), or (sum(target_lengths),)
            concatenated labels; integer, in [0, C), never ``blank``.
        input_lengths: (B,) valid frames per sequence, each <= T; tensor or list of ints.
        target_lengths: (B,) labels per sequence (0 allowed); tensor or list of ints.
        blank: index of the blank class. Default 0.
        reduction: "none" | "sum" | "mean". "mean" divides each sequence's loss by
            max(target_length, 1), then averages over the batch (as torch does). Default "mean".
        zero_infinity: replace infinite losses (input too short for the target) by 0. Their
            gradient is 0 either way. Default False.
        backend: "auto" (triton for CUDA tensors, cpu otherwise) | "cpu" (CPU tensors) |
            "triton" (CUDA, or CPU tensors when TRITON_INTERPRET=1). Default "auto".

    Returns:
        "none": (B,) per-sequence negative log-likelihoods; "sum" and "mean": a scalar. dtype of
        ``log_probs`` (float32 for float16/bfloat16 input).

    Raises:
        LossInputError: wrong shape, dtype, device, lengths, label values, reduction or backend.
        BackendUnavailableError: backend="triton" cannot run here (no CUDA and no
            TRITON_INTERPRET=1, or triton missing), or backend="cpu" with CUDA tensors.
    """
    _check_log_probs(log_probs, blank)
    check_reduction(reduction)
    num_frames, batch, num_classes = log_probs.shape
    chosen = choose_backend(backend, log_probs)
    device = log_probs.device
    input_lengths = _as_lengths(input_lengths, "input_lengths", batch, device)
    target_lengths = _as_lengths(target_lengths, "target_lengths", batch, device)
    if batch and int(input_lengths.max()) > num_frames:
        raise LossInputError(
            f"expected input_lengths <= T={num_frames} (log_probs is (T, B, C)), found "
            f"{int(input_lengths.max())}: is log_probs batch-first? pass it as (T, B, C)"
        )
    padded = _padded_targets(targets, target_lengths, batch)
    padded = _checked_targets(padded, target_lengths, num_classes, blank)

    nll = _CTCLossFunction.apply(
        log_probs, padded, input_lengths, target_lengths, blank, zero_infinity, chosen
    )
    return _reduce(nll, target_lengths, reduction)


def _check_log_probs(log_probs: torch.Tensor, blank: int) -> None:
    """Raise LossInputError unless log_probs is (T, B, C) floats this device takes and blank < C."""
    if not isinstance(log_probs, torch.Tensor) or log_probs.dim() != 3:
        found = tuple(log_probs.shape) if isinstance(log_probs, torch.Tensor) else type(log_probs)
        raise LossInputError(
            f"expected log_probs (T, B, C), found {found}: transducer logits (B, T, U+1, V) "
            "belong to transducer_loss; add a batch axis for a single sequence"
        )
    dtype = log_probs.dtype
    if dtype not in (torch.float32, torch.float64) + HALF_DTYPES:
        raise LossInputError(
            f"expected float32 or float64 log_probs, found {dtype}: apply log_softmax to floats"
        )
    if dtype in HALF_DTYPES and not log_probs.is_cuda:
        raise LossInputError(
            f"expected float32 or float64 log_probs on CPU, found {dtype} (half precision is "
            "accepted on CUDA only): call .float() first"
        )
    num_classes = log_probs.shape[2]
    if not 0 <= blank < num_classes:
        raise LossInputError(
            f"expected blank in [0, {num_classes}) (C={num_classes} classes), found {blank}"
        )


def _reduce(nll: torch.Tensor, target_lengths: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B,) losses reduced as torch's ctc_loss: "mean" divides by max(target length, 1) first."""
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    return (nll / target_lengths.clamp(min=1).to(nll.dtype)).mean()
