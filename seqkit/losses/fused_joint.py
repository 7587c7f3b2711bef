"""Joint network, log-softmax and transducer loss in one op, a chunk of frames at a time (CPU).

The transducer's joint ``logits = W_o tanh(f_t + g_u) + b_o`` is a (B, T, U+1, V) tensor, and
with the joint's hidden layer (B, T, U+1, J) it is most of a training step's memory: autograd
keeps the hidden layer for the output layer's backward, the loss keeps the logits for its own,
and the backward pass writes a logits-sized gradient. The loss recursion needs only two numbers
per node (the blank's and the next label's log-prob), so this op ("function merging", Li et al.
2019, "Improving RNN Transducer Modeling for End-to-End Speech Recognition"; the idea of NeMo's
log-softmax that keeps only blank and target terms) computes the joint a chunk of frames at a
time, keeps those two log-probs and the normalizer, and drops the chunk. The backward pass
recomputes each chunk's hidden layer and logits, forms the logits' gradient
(``softmax * occupancy - move occupancy``, as :mod:`seqkit.losses.cpu_transducer`) and turns it
into the gradients of ``f``, ``g``, ``W_o`` and ``b_o`` before the next chunk: nothing
(B, T, U+1, V)- or (B, T, U+1, J)-sized is ever held, at the cost of computing the joint's
forward twice.

Same results as ``transducer_loss(model.joint(f, g), ...)`` to float tolerance (tests:
``tests/test_fused_joint.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from seqkit.errors import LossInputError
from seqkit.losses import cpu_transducer

# (B * frames * (U+1) * max(V, J)) elements per chunk: bounds the temporaries (and keeps them
# near the cache) while each matrix product stays large enough to run at full speed.
CHUNK_ELEMENTS = 1 << 21


def fused_transducer_loss(
    f: torch.Tensor,
    g: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    *,
    blank: int = 0,
    chunk_frames: int | None = None,
) -> torch.Tensor:
    """Per-sequence transducer costs of the joint ``weight @ tanh(f_t + g_u) + bias``.

    Graves 2012 (the loss), Graves, Mohamed & Hinton 2013 (the joint), Li et al. 2019 (fusing
    the joint with the loss). Equal to ``transducer_loss(logits, targets, logit_lengths,
    target_lengths, blank=blank, reduction="none")`` with ``logits = tanh(f[:, :, None] +
    g[:, None]) @ weight.T + bias``.

    .. devices:: CPU

    .. properties:: Autograd

    Args:
        f: (B, T, J) the encoder output already through the joint's first layer (``W_f f + b``),
            float32 or float64.
        g: (B, U+1, J) the prediction output through ``W_g``, same dtype.
        weight: (V, J) the output layer's weight ``W_o``.
        bias: (V,) the output layer's bias ``b_o``.
        targets: (B, U) int64 labels; padding past ``target_lengths`` may be any valid class.
        logit_lengths: (B,) int64 in [1, T].
        target_lengths: (B,) int64 in [0, U].
        blank: blank index. Default 0.
        chunk_frames: frames per chunk (default: :data:`CHUNK_ELEMENTS` worth).

    Returns:
        (B,) costs ``-log p(targets | f, g)``: float64 for float64 inputs, float32 otherwise
        (float16 / bfloat16 inputs, e.g. under autocast, are computed in float32).

    Raises:
        LossInputError: shapes that do not fit together, lengths out of range, or a valid
            target label that is the blank or outside [0, V).
    """
    _check(f, g, weight, bias, targets, logit_lengths, target_lengths, blank)
    dtype = torch.float64 if f.dtype == torch.float64 else torch.float32
    f, g, weight, bias = (x.to(dtype) for x in (f, g, weight, bias))
    B, T, J = f.shape
    U1, V = g.shape[1], weight.shape[0]
    if chunk_frames is None:
        chunk_frames = max(1, CHUNK_ELEMENTS // max(1, B * U1 * max(V, J)))
    return _FusedJointLoss.apply(f, g, weight, bias, targets, logit_lengths, target_lengths,
                                 blank, chunk_frames)


def _check(f: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
           targets: torch.Tensor, logit_lengths: torch.Tensor, target_lengths: torch.Tensor,
           blank: int) -> None:
    """Expected-vs-found errors for what the fused op cannot compute."""
    if f.dim() != 3 or g.dim() != 3 or weight.dim() != 2 or bias.dim() != 1:
        raise LossInputError(
            f"expected f (B, T, J), g (B, U+1, J), weight (V, J), bias (V,), found "
            f"{tuple(f.shape)}, {tuple(g.shape)}, {tuple(weight.shape)}, {tuple(bias.shape)}")
    B, T, J = f.shape
    U, V = g.shape[1] - 1, weight.shape[0]
    if (g.shape[0], g.shape[2], weight.shape[1], bias.shape[0]) != (B, J, J, V) or min(
            B, T, V) == 0 or tuple(targets.shape) != (B, U):
        raise LossInputError(
            f"expected f (B, T, J), g (B, U+1, J), weight (V, J), bias (V,), targets (B, U) "
            f"to agree, found {tuple(f.shape)}, {tuple(g.shape)}, {tuple(weight.shape)}, "
            f"{tuple(bias.shape)}, {tuple(targets.shape)}")
    if not 0 <= blank < V:
        raise LossInputError(f"expected blank in [0, V) = [0, {V}), found {blank}")
    for name, lengths, low, high in (("logit_lengths", logit_lengths, 1, T),
                                     ("target_lengths", target_lengths, 0, U)):
        if tuple(lengths.shape) != (B,) or bool(((lengths < low) | (lengths > high)).any()):
            raise LossInputError(f"expected {name} (B,) = ({B},) in [{low}, {high}], found "
                                 f"{lengths.tolist()}")
    valid = torch.arange(U, device=targets.device)[None, :] < target_lengths[:, None]  # (B, U)
    if bool((valid & ((targets < 0) | (targets >= V) | (targets == blank))).any()):
        raise LossInputError(f"expected target labels in [0, {V}) other than blank={blank}: "
                             "check the label map and blank index")


def _logits(f: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden layer (B, t, U+1, J) and logits (B, t, U+1, V) of a chunk of frames."""
    hidden = torch.tanh(f[:, :, None, :] + g[:, None, :, :])  # (B, t, U+1, J)
    return hidden, torch.nn.functional.linear(hidden, weight, bias)  # (B, t, U+1, V)


class _FusedJointLoss(torch.autograd.Function):
    """Forward keeps the lattice (no V or J axis); backward recomputes the joint per chunk."""

    @staticmethod
    @torch.autocast("cpu", enabled=False)
    @torch.autocast("cuda", enabled=False)
    def forward(ctx: Any, f: torch.Tensor, g: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                target_lengths: torch.Tensor, blank: int, chunk_frames: int) -> torch.Tensor:
        B, T, _ = f.shape
        U1 = g.shape[1]
        # the label each node emits next; the last column emits none (blank stands in)
        next_label = torch.cat([targets, targets.new_full((B, 1), blank)], dim=1)  # (B, U+1)
        log_norm = f.new_empty(B, T, U1)
        blank_lp = f.new_empty(B, T, U1)
        emit = f.new_empty(B, T, U1)
        for start in range(0, T, chunk_frames):
            chunk = slice(start, start + chunk_frames)
            _, logits = _logits(f[:, chunk], g, weight, bias)  # (B, t, U+1, V)
            log_probs = torch.log_softmax(logits, dim=-1)
            blank_lp[:, chunk] = log_probs[..., blank]
            index = next_label[:, None, :, None].expand(B, log_probs.shape[1], U1, 1)
            emit[:, chunk] = log_probs.gather(-1, index).squeeze(-1)
            log_norm[:, chunk] = logits[..., blank] - log_probs[..., blank]
        blank64, emit64 = cpu_transducer.mask_lattice(blank_lp, emit[:, :, : U1 - 1],
                                                      logit_lengths, target_lengths)
        alpha, log_likelihood = cpu_transducer.forward_variables(blank64, emit64, logit_lengths,
                                                                 target_lengths)
        ctx.save_for_backward(f, g, weight, bias, targets, logit_lengths, target_lengths,
                              log_norm, blank64, emit64, alpha, log_likelihood)
        ctx.options = (blank, chunk_frames)
        return (-log_likelihood).to(f.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.autocast("cpu", enabled=False)
    @torch.autocast("cuda", enabled=False)
    def backward(ctx: Any, grad_costs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (f, g, weight, bias, targets, logit_lengths, target_lengths, log_norm, blank64, emit64,
         alpha, log_likelihood) = ctx.saved_tensors
        blank, chunk_frames = ctx.options
        lattice = cpu_transducer.TransducerLattice(log_norm, blank64, emit64, alpha,
                                                   log_likelihood)
        node, blank_move, emit_move = cpu_transducer.occupancies(lattice, logit_lengths,
                                                                 target_lengths)
        # (B, T, U+1) per-node terms of the logits' gradient, scaled by each cost's gradient:
        # softmax * occupancy = exp(logit - (log_norm - log occupancy)); -inf outside the lattice
        shift = (log_norm.to(torch.float64) - node.transpose(1, 2)).to(f.dtype)
        scale = grad_costs.to(f.dtype).reshape(-1, 1, 1, 1)  # (B, 1, 1, 1)
        blank_occ = blank_move.exp().transpose(1, 2).to(f.dtype)  # (B, T, U+1)
        emit_occ = emit_move.exp().transpose(1, 2).to(f.dtype)  # (B, T, U)
        grads = _chunked_gradients(f, g, weight, bias, targets, shift, blank_occ, emit_occ,
                                   scale, blank, chunk_frames)
        return (*grads, None, None, None, None, None)


def _chunked_gradients(f: torch.Tensor, g: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor, targets: torch.Tensor, shift: torch.Tensor,
                       blank_occ: torch.Tensor, emit_occ: torch.Tensor, scale: torch.Tensor,
                       blank: int, chunk_frames: int) -> tuple[torch.Tensor, ...]:
    """Gradients of f, g, W_o and b_o, recomputing the joint one chunk of frames at a time."""
    B, T, J = f.shape
    U1, V = g.shape[1], weight.shape[0]
    U = U1 - 1
    grad_f, grad_g = torch.zeros_like(f), torch.zeros_like(g)
    grad_weight, grad_bias = torch.zeros_like(weight), torch.zeros_like(bias)
    for start in range(0, T, chunk_frames):
        chunk = slice(start, start + chunk_frames)
        hidden, grad = _logits(f[:, chunk], g, weight, bias)  # (B, t, U+1, J), (B, t, U+1, V)
        grad.sub_(shift[:, chunk, :, None]).exp_()  # softmax * node occupancy
        grad[..., blank] -= blank_occ[:, chunk]
        if U > 0:
            index = targets[:, None, :, None].expand(B, grad.shape[1], U, 1)  # (B, t, U, 1)
            grad[:, :, :U].scatter_add_(-1, index, -emit_occ[:, chunk, :, None])
        grad.mul_(scale)  # (B, t, U+1, V): d(sum_b grad_costs[b] * cost[b]) / d logits
        rows = grad.reshape(-1, V)  # (B*t*(U+1), V)
        grad_weight.addmm_(rows.T, hidden.reshape(-1, J))  # (V, J)
        grad_bias += rows.sum(0)
        grad_pre = (grad @ weight).mul_(1 - hidden * hidden)  # (B, t, U+1, J): through tanh
        grad_f[:, chunk] = grad_pre.sum(2)
        grad_g += grad_pre.sum(1)
    return grad_f, grad_g, grad_weight, grad_bias
