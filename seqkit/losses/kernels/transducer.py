"""Triton kernels for the transducer loss: normalizers, alpha/beta wavefronts, fused gradient.

Three kernels, all over the (B, T, U+1, V) logits and a small (B, T, U+1) lattice:

1. ``_lattice_kernel``: per lattice node (a row of V logits), an online logsumexp over V (the
   log-softmax normalizer) and the gathered blank and next-label log-probs, masked to the
   sequence's lattice (-inf outside). Rows outside the lattice (padding) are never read.
2. ``_alpha_beta_kernel``: one program per sequence and direction (grid (B, 2)); the program
   walks the anti-diagonals t + u = d (a wavefront: every node of a diagonal depends only on the
   previous one), vectorized over u. Each diagonal is stored to global memory and read back
   after a barrier, shifted by one label, by the next diagonal.
3. ``_gradient_kernel``: per node, ``softmax * occupancy - move occupancy`` written straight into
   the output, the log-softmax recomputed on the fly from the normalizer (fused: no log-prob
   tensor is ever stored), clamped and scaled by the upstream gradient. Padding gets zeros.

A log-prob at or below ``LOG_ZERO_THRESHOLD`` (-1e20: masking sentinels) counts as log 0, as in
the CTC loss and the CPU path. A sequence with no possible path costs +inf and gets gradient
exactly 0 (never NaN). Node indices are int64 (B * T * (U+1) rows of V logits).

float32 / float64 logits accumulate in their own dtype; float16 / bfloat16 in float32. Runs on
CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (how the tests check them). This
module imports triton at import time; :mod:`seqkit.losses.transducer` imports it lazily.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from seqkit.losses.backends import LOG_ZERO_THRESHOLD, accumulation_dtype
from seqkit.losses.kernels.launch import num_warps_for, on_device

# Rows (lattice nodes) handled by one program of the row-wise kernels, times the V block width.
_ROW_BLOCK_ELEMENTS = 4096
_MAX_V_BLOCK = 1024
# Warps of the row-wise kernels: 4096-element tiles, 32 elements a thread (Triton's default).
_ROW_WARPS = 4

# Integer arguments that change with the batch (B, T, U+1): specialized, each new value divisible
# by 16 (or equal to 1) would compile another variant of the kernel. (Names a kernel lacks are
# ignored.) V and blank stay specialized: they are fixed for a model, and V % 16 == 0 lets the
# row loads vectorize.
_BATCH_SHAPED = ["num_rows", "T", "U1"]


class TritonTransducerLattice(NamedTuple):
    """What the forward pass keeps for the backward pass (no V axis).

    Attributes:
        log_norm: (B, T, U+1) logsumexp over V (zeros without fused log-softmax).
        blank_lp: (B, T, U+1) blank log-probs, -inf outside the lattice.
        emit_lp: (B, T, U+1) next-label log-probs, -inf outside (and at u = U_b).
        alpha: (B, T, U+1) forward log-probabilities.
        beta: (B, T, U+1) backward log-probabilities (final blank included).
        log_likelihood: (B,) log p(target | logits).
    """

    log_norm: torch.Tensor
    blank_lp: torch.Tensor
    emit_lp: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    log_likelihood: torch.Tensor


@triton.jit
def _logaddexp(a, b):
    """Elementwise log(exp(a) + exp(b)); -inf when both are -inf."""
    m = tl.maximum(a, b)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    return tl.log(tl.exp(a - m_safe) + tl.exp(b - m_safe)) + m_safe


@triton.jit(do_not_specialize=_BATCH_SHAPED)
def _lattice_kernel(
    logits_ptr,
    targets_ptr,
    logit_lengths_ptr,
    target_lengths_ptr,
    log_norm_ptr,
    blank_lp_ptr,
    emit_lp_ptr,
    num_rows,
    T,
    U1,
    V,
    blank,
    log_zero,
    FUSED: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_V: tl.constexpr,
    ACC: tl.constexpr,
):
    # Rows r = (b * T + t) * U1 + u of the (B*T*(U+1), V) logits; lanes over V.
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < num_rows
    u = rows % U1
    t = (rows // U1) % T
    b = rows // (U1 * T)
    frames = tl.load(logit_lengths_ptr + b, mask=row_ok, other=0)
    labels = tl.load(target_lengths_ptr + b, mask=row_ok, other=0)
    in_time = row_ok & (t < frames)
    blank_ok = in_time & (u <= labels)
    emit_ok = in_time & (u < labels)
    base = rows * V
    if FUSED:
        running_max = tl.full([BLOCK_R], float("-inf"), ACC)
        running_sum = tl.zeros([BLOCK_R], ACC)
        for v0 in range(0, V, BLOCK_V):
            v = v0 + tl.arange(0, BLOCK_V)
            mask = blank_ok[:, None] & (v < V)[None, :]  # padding rows: no memory traffic
            x = tl.load(logits_ptr + base[:, None] + v[None, :], mask=mask, other=float("-inf"))
            x = x.to(ACC)
            new_max = tl.maximum(running_max, tl.max(x, axis=1))
            safe = tl.where(new_max == float("-inf"), 0.0, new_max)
            running_sum = running_sum * tl.exp(running_max - safe) + tl.sum(
                tl.exp(x - safe[:, None]), axis=1
            )
            running_max = new_max
        log_norm = running_max + tl.log(running_sum)
    else:
        log_norm = tl.zeros([BLOCK_R], ACC)
    target = tl.load(targets_ptr + b * (U1 - 1) + u, mask=emit_ok, other=0)
    x_blank = tl.load(logits_ptr + base + blank, mask=blank_ok, other=0.0).to(ACC)
    x_emit = tl.load(logits_ptr + base + target, mask=emit_ok, other=0.0).to(ACC)
    blank_lp = x_blank - log_norm
    emit_lp = x_emit - log_norm
    tl.store(log_norm_ptr + rows, tl.where(blank_ok, log_norm, 0.0), mask=row_ok)
    blank_lp = tl.where(blank_ok & (blank_lp > log_zero), blank_lp, float("-inf"))
    tl.store(blank_lp_ptr + rows, blank_lp, mask=row_ok)
    emit_lp = tl.where(emit_ok & (emit_lp > log_zero), emit_lp, float("-inf"))
    tl.store(emit_lp_ptr + rows, emit_lp, mask=row_ok)


@triton.jit(do_not_specialize=_BATCH_SHAPED)
def _alpha_beta_kernel(
    blank_lp_ptr,
    emit_lp_ptr,
    logit_lengths_ptr,
    target_lengths_ptr,
    alpha_ptr,
    beta_ptr,
    log_likelihood_ptr,
    T,
    U1,
    BLOCK_U: tl.constexpr,
    ACC: tl.constexpr,
):
    # One program = one sequence b and one direction (0: alpha, 1: beta); lanes = u.
    b = tl.program_id(0)
    direction = tl.program_id(1)
    frames = tl.load(logit_lengths_ptr + b).to(tl.int32)
    labels = tl.load(target_lengths_ptr + b).to(tl.int32)
    u = tl.arange(0, BLOCK_U)
    lane_ok = u <= labels
    seq = b.to(tl.int64) * T * U1
    neg_inf = tl.full([BLOCK_U], float("-inf"), ACC)
    num_diagonals = frames + labels  # diagonals d = t + u in [0, frames - 1 + labels]
    if direction == 0:
        for d in range(0, num_diagonals):
            t = d - u
            ok = lane_ok & (t >= 0) & (t < frames)
            node = seq + t * U1 + u
            # From (t-1, u) by blank and from (t, u-1) by label; both on diagonal d - 1.
            up_ok = ok & (t >= 1)
            left_ok = ok & (u >= 1)
            from_blank = tl.load(alpha_ptr + node - U1, mask=up_ok, other=float("-inf")) + tl.load(
                blank_lp_ptr + node - U1, mask=up_ok, other=float("-inf")
            )
            from_label = tl.load(alpha_ptr + node - 1, mask=left_ok, other=float("-inf")) + tl.load(
                emit_lp_ptr + node - 1, mask=left_ok, other=float("-inf")
            )
            value = _logaddexp(from_blank.to(ACC), from_label.to(ACC))
            value = tl.where((t == 0) & (u == 0), 0.0, value)
            tl.store(alpha_ptr + node, value, mask=ok)
            tl.debug_barrier()
        last = seq + (frames - 1) * U1 + labels
        tl.store(log_likelihood_ptr + b, tl.load(alpha_ptr + last) + tl.load(blank_lp_ptr + last))
    else:
        for i in range(0, num_diagonals):
            d = num_diagonals - 1 - i
            t = d - u
            ok = lane_ok & (t >= 0) & (t < frames)
            node = seq + t * U1 + u
            # To (t+1, u) by blank and to (t, u+1) by label; both on diagonal d + 1.
            down_ok = ok & (t + 1 < frames)
            right_ok = ok & (u + 1 <= labels)
            blank_lp = tl.load(blank_lp_ptr + node, mask=ok, other=float("-inf")).to(ACC)
            to_blank = tl.load(beta_ptr + node + U1, mask=down_ok, other=float("-inf")).to(ACC)
            to_label = tl.load(beta_ptr + node + 1, mask=right_ok, other=float("-inf")) + tl.load(
                emit_lp_ptr + node, mask=right_ok, other=float("-inf")
            )
            value = _logaddexp(to_blank + blank_lp, to_label.to(ACC))
            value = tl.where((t == frames - 1) & (u == labels), blank_lp, value)
            tl.store(beta_ptr + node, tl.where(ok, value, neg_inf), mask=ok)
            tl.debug_barrier()


@triton.jit(do_not_specialize=_BATCH_SHAPED)
def _gradient_kernel(
    logits_ptr,
    targets_ptr,
    logit_lengths_ptr,
    target_lengths_ptr,
    log_norm_ptr,
    blank_lp_ptr,
    emit_lp_ptr,
    alpha_ptr,
    beta_ptr,
    log_likelihood_ptr,
    scale_ptr,
    grad_ptr,
    num_rows,
    T,
    U1,
    V,
    blank,
    FUSED: tl.constexpr,
    CLAMP: tl.constexpr,
    CLAMP_VALUE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_V: tl.constexpr,
    ACC: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < num_rows
    u = rows % U1
    t = (rows // U1) % T
    b = rows // (U1 * T)
    frames = tl.load(logit_lengths_ptr + b, mask=row_ok, other=0)
    labels = tl.load(target_lengths_ptr + b, mask=row_ok, other=0)
    log_z = tl.load(log_likelihood_ptr + b, mask=row_ok, other=0.0).to(ACC)
    # No possible path (log_z = -inf): the whole sequence gets gradient 0, like its padding.
    inside = row_ok & (t < frames) & (u <= labels) & (log_z > float("-inf"))
    emit_ok = inside & (u < labels)
    scale = tl.load(scale_ptr + b, mask=row_ok, other=0.0).to(ACC)
    alpha = tl.load(alpha_ptr + rows, mask=inside, other=float("-inf")).to(ACC)
    beta = tl.load(beta_ptr + rows, mask=inside, other=float("-inf")).to(ACC)
    blank_lp = tl.load(blank_lp_ptr + rows, mask=inside, other=float("-inf")).to(ACC)
    emit_lp = tl.load(emit_lp_ptr + rows, mask=emit_ok, other=float("-inf")).to(ACC)
    # beta after the blank move: the next frame's node, or the end of the lattice (log 1).
    is_last = (t == frames - 1) & (u == labels)
    beta_down = tl.load(beta_ptr + rows + U1, mask=inside & (t + 1 < frames), other=float("-inf"))
    beta_down = tl.where(is_last, 0.0, beta_down.to(ACC))
    beta_right = tl.load(beta_ptr + rows + 1, mask=emit_ok, other=float("-inf")).to(ACC)
    node_occ = tl.where(inside, tl.exp(alpha + beta - log_z), 0.0)
    blank_occ = tl.where(inside, tl.exp(alpha + blank_lp + beta_down - log_z), 0.0)
    emit_occ = tl.where(emit_ok, tl.exp(alpha + emit_lp + beta_right - log_z), 0.0)
    log_norm = tl.load(log_norm_ptr + rows, mask=inside, other=0.0).to(ACC)
    target = tl.load(targets_ptr + b * (U1 - 1) + u, mask=emit_ok, other=-1)
    base = rows * V
    for v0 in range(0, V, BLOCK_V):
        v = v0 + tl.arange(0, BLOCK_V)
        mask = row_ok[:, None] & (v < V)[None, :]
        load_mask = inside[:, None] & (v < V)[None, :]
        if FUSED:
            x = tl.load(logits_ptr + base[:, None] + v[None, :], mask=load_mask, other=0.0)
            g = tl.exp(x.to(ACC) - log_norm[:, None]) * node_occ[:, None]
        else:
            g = tl.zeros([BLOCK_R, BLOCK_V], ACC)
        g = g - tl.where(v[None, :] == blank, blank_occ[:, None], 0.0)
        g = g - tl.where(v[None, :] == target[:, None], emit_occ[:, None], 0.0)
        if CLAMP:
            limit = tl.full([1, 1], CLAMP_VALUE, ACC)  # typed, so float64 keeps every digit
            g = tl.minimum(tl.maximum(g, -limit), limit)
        g = tl.where(load_mask, g * scale[:, None], 0.0)
        tl.store(grad_ptr + base[:, None] + v[None, :], g.to(grad_ptr.dtype.element_ty), mask=mask)


def _accumulation(dtype: torch.dtype) -> tuple[torch.dtype, tl.dtype]:
    """Lattice dtype for a logits dtype: float64 stays float64, the rest accumulate in float32."""
    acc = accumulation_dtype(dtype)
    return acc, tl.float64 if acc == torch.float64 else tl.float32


def _row_blocks(V: int) -> tuple[int, int]:
    block_v = min(triton.next_power_of_2(V), _MAX_V_BLOCK)
    return max(1, _ROW_BLOCK_ELEMENTS // block_v), block_v


def transducer_forward(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    *,
    blank: int,
    fused_log_softmax: bool,
) -> tuple[torch.Tensor, TritonTransducerLattice]:
    """Per-sequence transducer losses and the lattice the gradient needs, on the Triton path.

    Args:
        logits: (B, T, U+1, V) float32/float64, or float16/bfloat16 on CUDA; any strides (a
            copy is made unless contiguous).
        targets: (B, U) int64, padding replaced by a valid class.
        logit_lengths: (B,) int64 in [1, T], any strides.
        target_lengths: (B,) int64 in [0, U], any strides.
        blank: blank index.
        fused_log_softmax: normalize over V here (True) or take logits as log-probs (False).

    Returns:
        costs (B,) in the accumulation dtype (float64 for float64 logits, else float32; +inf for
        a sequence with no possible path), and the :class:`TritonTransducerLattice`.
    """
    logits, targets = logits.contiguous(), targets.contiguous()
    logit_lengths, target_lengths = logit_lengths.contiguous(), target_lengths.contiguous()
    B, T, U1, V = logits.shape
    acc_torch, acc_tl = _accumulation(logits.dtype)
    device = logits.device
    num_rows = B * T * U1
    log_norm = torch.empty(B, T, U1, dtype=acc_torch, device=device)
    blank_lp = torch.empty_like(log_norm)
    emit_lp = torch.empty_like(log_norm)
    block_r, block_v = _row_blocks(V)
    alpha = torch.full_like(log_norm, float("-inf"))
    beta = torch.full_like(log_norm, float("-inf"))
    log_likelihood = torch.empty(B, dtype=acc_torch, device=device)
    block_u = triton.next_power_of_2(U1)
    with on_device(logits):
        _lattice_kernel[(triton.cdiv(num_rows, block_r),)](
            logits,
            targets,
            logit_lengths,
            target_lengths,
            log_norm,
            blank_lp,
            emit_lp,
            num_rows,
            T,
            U1,
            V,
            blank,
            LOG_ZERO_THRESHOLD,
            FUSED=fused_log_softmax,
            BLOCK_R=block_r,
            BLOCK_V=block_v,
            ACC=acc_tl,
            num_warps=_ROW_WARPS,
        )
        _alpha_beta_kernel[(B, 2)](
            blank_lp,
            emit_lp,
            logit_lengths,
            target_lengths,
            alpha,
            beta,
            log_likelihood,
            T,
            U1,
            BLOCK_U=block_u,
            ACC=acc_tl,
            num_warps=num_warps_for(block_u),
        )
    lattice = TritonTransducerLattice(log_norm, blank_lp, emit_lp, alpha, beta, log_likelihood)
    return -log_likelihood, lattice


def transducer_gradient(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    lattice: TritonTransducerLattice,
    scale: torch.Tensor,
    *,
    blank: int,
    fused_log_softmax: bool,
    clamp: float | None,
) -> torch.Tensor:
    """Gradient of ``sum_b scale[b] * cost[b]`` with respect to the logits (Triton path).

    Args:
        logits: (B, T, U+1, V) as given to :func:`transducer_forward`.
        targets: (B, U) int64.
        logit_lengths: (B,) int64.
        target_lengths: (B,) int64.
        lattice: what :func:`transducer_forward` returned.
        scale: (B,) upstream gradient of each cost.
        blank: blank index.
        fused_log_softmax: as in the forward pass.
        clamp: clip value (> 0) applied before ``scale``, or None.

    Returns:
        (B, T, U+1, V) in the logits dtype; exactly zero for t >= T_b or u > U_b, and for a
        sequence with no possible path.
    """
    logits, targets = logits.contiguous(), targets.contiguous()
    logit_lengths, target_lengths = logit_lengths.contiguous(), target_lengths.contiguous()
    B, T, U1, V = logits.shape
    acc_torch, acc_tl = _accumulation(logits.dtype)
    grad = torch.empty_like(logits)
    num_rows = B * T * U1
    block_r, block_v = _row_blocks(V)
    with on_device(logits):
        _gradient_kernel[(triton.cdiv(num_rows, block_r),)](
            logits,
            targets,
            logit_lengths,
            target_lengths,
            lattice.log_norm,
            lattice.blank_lp,
            lattice.emit_lp,
            lattice.alpha,
            lattice.beta,
            lattice.log_likelihood,
            scale.to(acc_torch).reshape(B).contiguous(),
            grad,
            num_rows,
            T,
            U1,
            V,
            blank,
            FUSED=fused_log_softmax,
            CLAMP=clamp is not None,
            CLAMP_VALUE=0.0 if clamp is None else float(clamp),  # a constant: exact in float64
            BLOCK_R=block_r,
            BLOCK_V=block_v,
            ACC=acc_tl,
            num_warps=_ROW_WARPS,
        )
    return grad
