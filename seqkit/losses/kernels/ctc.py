"""Triton kernels for the CTC loss: forward (alpha) and backward (beta + gradient).

One program per sequence, vectorized over the extended label positions (blank, l1, blank, ...,
blank: 2S+1 of them, padded to a power of two). Frames are a loop inside the program. Each frame's
row is stored to global memory and read back shifted by one and two positions after a barrier,
which is how a program sees its neighbours' values of the previous frame.

Every offset into a (T, B, ...) tensor is computed in int64: T * B * C reaches 2**31 at real
shapes (T=1500, B=64, C=32k). The backward pass adds no atomics: several positions share a class
(every blank, and a label that occurs twice), and atomic adds would sum them in whatever order the
warps arrive, so the gradient would change from run to run. The blanks are summed with a
reduction; the labels are visited in class order (sorted on the host) and summed with a segmented
scan, so the gradient is bitwise reproducible and ``torch.use_deterministic_algorithms`` holds.

Run on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (how the tests check them).
This module imports triton at import time; :mod:`seqkit.losses.ctc` imports it lazily.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seqkit.losses.backends import LOG_ZERO_THRESHOLD, accumulation_dtype
from seqkit.losses.kernels.launch import num_warps_for, on_device

# Integer arguments that change with the batch (its size, T, S, strides): specialized, each new
# value divisible by 16 (or equal to 1) would compile another variant of the kernel.
# (Names a kernel lacks are ignored.)
_BATCH_SHAPED = ["stride_lp_t", "stride_lp_b", "stride_tg_b", "stride_g_t", "batch", "num_states",
                 "max_labels"]


@triton.jit
def _logsumexp3(a, b, c):
    """Elementwise log(exp(a) + exp(b) + exp(c)); -inf when all three are -inf."""
    m = tl.maximum(tl.maximum(a, b), c)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    total = tl.exp(a - m_safe) + tl.exp(b - m_safe) + tl.exp(c - m_safe)
    return tl.log(total) + m_safe


@triton.jit
def _segmented_add(value_a, start_a, value_b, start_b):
    """Combine of a segmented sum scan: restart at a segment's first element."""
    return tl.where(start_b != 0, value_b, value_a + value_b), start_a | start_b


@triton.jit(do_not_specialize=_BATCH_SHAPED)
def _ctc_alpha_kernel(
    lp_ptr,
    targets_ptr,
    input_lengths_ptr,
    target_lengths_ptr,
    alpha_ptr,
    nll_ptr,
    stride_lp_t,
    stride_lp_b,
    stride_lp_c,
    stride_tg_b,
    batch,
    num_states,
    blank,
    log_zero,
    BLOCK: tl.constexpr,
    ACC: tl.constexpr,
):
    # One program = one sequence b; lanes = extended label positions s in [0, BLOCK).
    b = tl.program_id(0).to(tl.int64)
    frames = tl.load(input_lengths_ptr + b).to(tl.int32)
    labels = tl.load(target_lengths_ptr + b).to(tl.int32)
    ext_len = 2 * labels + 1
    s = tl.arange(0, BLOCK)
    valid = s < ext_len
    is_label = (s % 2) == 1
    k = (s - 1) // 2  # label index of an odd position
    tg_row = targets_ptr + b * stride_tg_b
    label = tl.load(tg_row + k, mask=valid & is_label, other=0)
    ext = tl.where(is_label, label, blank).to(tl.int64)
    prev_label = tl.load(tg_row + k - 1, mask=valid & is_label & (s >= 3), other=0)
    can_skip = valid & is_label & (s >= 3) & (label != prev_label)
    lp_row = lp_ptr + b * stride_lp_b + ext * stride_lp_c  # (BLOCK,) pointers into frame 0
    row_stride = batch.to(tl.int64) * num_states
    alpha_row = alpha_ptr + b * num_states + s  # alpha buffer is (T, B, L)
    in_buffer = s < num_states

    # Frame 0: only the leading blank and the first label can start a path.
    start = valid & (s < 2) & (frames > 0)
    lp = tl.load(lp_row, mask=start, other=float("-inf")).to(ACC)
    alpha = tl.where(lp <= log_zero, float("-inf"), lp)
    tl.store(alpha_row, alpha, mask=in_buffer & (frames > 0))
    for t in range(1, frames):
        t64 = tl.cast(t, tl.int64)  # a Python int in the interpreter
        tl.debug_barrier()  # frame t-1 is fully stored before any lane reads its neighbours
        prev = alpha_row + (t64 - 1) * row_stride
        a0 = tl.load(prev, mask=valid, other=float("-inf"))
        a1 = tl.load(prev - 1, mask=valid & (s >= 1), other=float("-inf"))
        a2 = tl.load(prev - 2, mask=can_skip, other=float("-inf"))
        lp = tl.load(lp_row + t64 * stride_lp_t, mask=valid, other=float("-inf")).to(ACC)
        lp = tl.where(lp <= log_zero, float("-inf"), lp)
        alpha = _logsumexp3(a0, a1, a2) + lp
        tl.store(alpha_row + t64 * row_stride, alpha, mask=in_buffer)

    # log p = logsumexp of alpha at the last frame over states L_b-1 and L_b-2.
    final = tl.where(valid & (s >= ext_len - 2), alpha, float("-inf"))
    m = tl.max(final, axis=0)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    log_likelihood = tl.log(tl.sum(tl.exp(final - m_safe), axis=0)) + m_safe
    no_frames = tl.where(labels == 0, 0.0, float("-inf"))
    log_likelihood = tl.where(frames == 0, no_frames, log_likelihood)
    tl.store(nll_ptr + b, -log_likelihood)


@triton.jit
def _store_frame_gradient(
    grad_frame,
    occ_row,
    g,
    valid,
    is_label,
    k,
    blank,
    positions,
    classes,
    starts,
    ends,
):
    """Store one frame's gradient (B's row of frame t) without atomics, in a fixed order.

    ``g`` holds each extended position's gradient. The blank positions are summed by a
    reduction; the label positions go through the ``occ_row`` scratch and come back in class
    order (``positions``: label indices sorted by class), where a segmented scan sums each
    class's run; the run's last element stores the class total.
    """
    blank_total = tl.sum(tl.where(valid & ~is_label, g, 0.0), axis=0)
    tl.store(grad_frame + blank, blank_total)
    tl.store(occ_row + k, g, mask=valid & is_label)
    tl.debug_barrier()  # every label's value is stored before it is read back in class order
    in_order = tl.load(occ_row + positions, mask=ends >= 0, other=0.0)
    totals, _ = tl.associative_scan((in_order, starts), 0, _segmented_add)
    tl.store(grad_frame + classes, totals, mask=ends > 0)


@triton.jit(do_not_specialize=_BATCH_SHAPED)
def _ctc_beta_grad_kernel(
    lp_ptr,
    targets_ptr,
    input_lengths_ptr,
    target_lengths_ptr,
    alpha_ptr,
    nll_ptr,
    grad_nll_ptr,
    beta_ptr,
    occ_ptr,
    order_ptr,
    sorted_ptr,
    grad_ptr,
    stride_lp_t,
    stride_lp_b,
    stride_lp_c,
    stride_tg_b,
    stride_g_t,
    stride_g_b,
    batch,
    num_states,
    max_labels,
    blank,
    log_zero,
    BLOCK: tl.constexpr,
    LABEL_BLOCK: tl.constexpr,
    ACC: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    frames = tl.load(input_lengths_ptr + b).to(tl.int32)
    labels = tl.load(target_lengths_ptr + b).to(tl.int32)
    nll = tl.load(nll_ptr + b)
    scale = tl.load(grad_nll_ptr + b).to(ACC)
    # An impossible alignment (nll = inf) gets gradient exactly 0: skip every frame.
    frames = tl.where(nll < float("inf"), frames, 0)
    nll = tl.where(nll < float("inf"), nll, 0.0)
    ext_len = 2 * labels + 1
    s = tl.arange(0, BLOCK)
    valid = s < ext_len
    is_label = (s % 2) == 1
    k = (s - 1) // 2
    tg_row = targets_ptr + b * stride_tg_b
    label = tl.load(tg_row + k, mask=valid & is_label, other=0)
    ext = tl.where(is_label, label, blank).to(tl.int64)
    next_label = tl.load(tg_row + k + 1, mask=is_label & (s + 2 < ext_len), other=0)
    can_skip_next = is_label & (s + 2 < ext_len) & (label != next_label)
    lp_row = lp_ptr + b * stride_lp_b + ext * stride_lp_c
    row_stride = batch.to(tl.int64) * num_states
    alpha_row = alpha_ptr + b * num_states + s
    beta_row = beta_ptr + b * num_states + s  # beta scratch is (2, B, L): frame parity
    grad_seq = grad_ptr + b * stride_g_b  # grad buffer is (T, B, C), contiguous
    occ_row = occ_ptr + b * max_labels  # (B, S) scratch: one frame's label gradients

    # The labels in class order: positions[j] is the j-th label index sorted by class; a run of
    # equal classes starts where starts != 0 and stores its total where ends > 0 (-1: padding).
    j = tl.arange(0, LABEL_BLOCK)
    in_target = j < labels
    sorted_row = sorted_ptr + b * max_labels
    positions = tl.load(order_ptr + b * max_labels + j, mask=in_target, other=0)
    classes = tl.load(sorted_row + j, mask=in_target, other=0)
    before = tl.load(sorted_row + j - 1, mask=in_target & (j >= 1), other=-1)
    after = tl.load(sorted_row + j + 1, mask=j + 1 < labels, other=-1)
    starts = (classes != before).to(tl.int32)
    ends = tl.where(in_target, (classes != after).to(tl.int32), -1)

    # Last frame: only the last label and the trailing blank can end a path.
    last = (frames - 1).to(tl.int64)
    end = valid & (s >= ext_len - 2) & (frames > 0)
    lp = tl.load(lp_row + last * stride_lp_t, mask=end, other=float("-inf")).to(ACC)
    lp = tl.where(lp <= log_zero, float("-inf"), lp)
    beta = lp
    tl.store(beta_row + (last % 2) * row_stride, beta, mask=valid & (frames > 0))
    alpha = tl.load(alpha_row + last * row_stride, mask=valid & (frames > 0), other=float("-inf"))
    # occupancy = alpha * beta / y / p; d nll / d log y = -occupancy
    impossible = lp == float("-inf")
    log_occ = alpha + beta - tl.where(impossible, 0.0, lp) + nll
    log_occ = tl.where(impossible, float("-inf"), log_occ)
    if frames > 0:
        _store_frame_gradient(grad_seq + last * stride_g_t, occ_row, -tl.exp(log_occ) * scale,
                              valid, is_label, k, blank, positions, classes, starts, ends)
    for i in range(1, frames):
        t = last - i
        tl.debug_barrier()  # frame t+1 is fully stored before any lane reads its neighbours
        nxt = beta_row + ((t + 1) % 2) * row_stride
        b0 = tl.load(nxt, mask=valid, other=float("-inf"))
        b1 = tl.load(nxt + 1, mask=valid & (s + 1 < ext_len), other=float("-inf"))
        b2 = tl.load(nxt + 2, mask=can_skip_next, other=float("-inf"))
        lp = tl.load(lp_row + t * stride_lp_t, mask=valid, other=float("-inf")).to(ACC)
        lp = tl.where(lp <= log_zero, float("-inf"), lp)
        beta = _logsumexp3(b0, b1, b2) + lp
        tl.store(beta_row + (t % 2) * row_stride, beta, mask=valid)
        alpha = tl.load(alpha_row + t * row_stride, mask=valid, other=float("-inf"))
        impossible = lp == float("-inf")
        log_occ = alpha + beta - tl.where(impossible, 0.0, lp) + nll
        log_occ = tl.where(impossible, float("-inf"), log_occ)
        _store_frame_gradient(grad_seq + t * stride_g_t, occ_row, -tl.exp(log_occ) * scale,
                              valid, is_label, k, blank, positions, classes, starts, ends)


def _acc_tl(acc: torch.dtype) -> tl.dtype:
    return tl.float64 if acc == torch.float64 else tl.float32


def _block(lanes: int) -> int:
    return triton.next_power_of_2(max(lanes, 2))


def ctc_alpha(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the forward kernel.

    Args:
        log_probs: (T, B, C) float32/float64 (float16/bfloat16 on CUDA), any strides.
        targets: (B, S) int64 padded labels, validated.
        input_lengths: (B,) int64, on the device of ``log_probs``, any strides.
        target_lengths: (B,) int64, on the device of ``log_probs``, any strides.
        blank: blank class index.

    Returns:
        ``(nll, alpha)``: nll (B,) and log-alpha (T, B, 2S+1) in the accumulation dtype
        (float64 for float64 input, float32 otherwise); alpha rows past a sequence's length are
        left unwritten.
    """
    num_frames, batch, _ = log_probs.shape
    num_states = 2 * targets.shape[1] + 1
    acc = accumulation_dtype(log_probs.dtype)
    device = log_probs.device
    targets = targets.contiguous()
    input_lengths, target_lengths = input_lengths.contiguous(), target_lengths.contiguous()
    alpha = torch.empty((num_frames, batch, num_states), dtype=acc, device=device)  # (T, B, L)
    nll = torch.empty((batch,), dtype=acc, device=device)
    if batch == 0 or num_frames == 0:
        # No frames anywhere: the empty target has probability 1, any other target 0.
        nll.copy_(torch.where(target_lengths == 0, 0.0, float("inf")))
        return nll, alpha
    block = _block(num_states)
    with on_device(log_probs):
        _ctc_alpha_kernel[(batch,)](
            log_probs,
            targets,
            input_lengths,
            target_lengths,
            alpha,
            nll,
            log_probs.stride(0),
            log_probs.stride(1),
            log_probs.stride(2),
            targets.stride(0),
            batch,
            num_states,
            blank,
            LOG_ZERO_THRESHOLD,
            BLOCK=block,
            ACC=_acc_tl(acc),
            num_warps=num_warps_for(block),
        )
    return nll, alpha


def _labels_by_class(
    targets: torch.Tensor, target_lengths: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sequence's label indices sorted by class (stable), and the classes in that order.

    Padding sorts last (as class C, past every real class). Returns ``(order, classes)``, both
    (B, S) int64, contiguous.
    """
    positions = torch.arange(targets.shape[1], device=targets.device)
    padding = positions[None, :] >= target_lengths[:, None]
    keys = targets.masked_fill(padding, num_classes)
    classes, order = torch.sort(keys, dim=1, stable=True)
    return order.contiguous(), classes.contiguous()


def ctc_beta_grad(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
    alpha: torch.Tensor,
    nll: torch.Tensor,
    grad_nll: torch.Tensor,
) -> torch.Tensor:
    """Run the backward kernel: beta, then the gradient with respect to ``log_probs``.

    Deterministic: the same inputs give a bitwise-equal gradient on every run.

    Args:
        log_probs, targets, input_lengths, target_lengths, blank: as for :func:`ctc_alpha`.
        alpha: (T, B, 2S+1) from :func:`ctc_alpha`.
        nll: (B,) from :func:`ctc_alpha` (before any zero_infinity masking).
        grad_nll: (B,) upstream gradient of each sequence's loss.

    Returns:
        (T, B, C) gradient in the dtype of ``log_probs``: ``-grad_nll[b] * occupancy``; zero on
        padding frames and for sequences with infinite nll.
    """
    num_frames, batch, num_classes = log_probs.shape
    num_states = alpha.shape[2]
    max_labels = targets.shape[1]
    acc = alpha.dtype
    device = log_probs.device
    targets = targets.contiguous()
    input_lengths, target_lengths = input_lengths.contiguous(), target_lengths.contiguous()
    grad = torch.zeros((num_frames, batch, num_classes), dtype=acc, device=device)  # (T, B, C)
    if batch == 0 or num_frames == 0:
        return grad.to(log_probs.dtype)
    beta = torch.empty((2, batch, num_states), dtype=acc, device=device)  # frame-parity scratch
    occupancy = torch.empty((batch, max(max_labels, 1)), dtype=acc, device=device)  # scratch
    order, classes = _labels_by_class(targets, target_lengths, num_classes)
    block = _block(num_states)
    with on_device(log_probs):
        _ctc_beta_grad_kernel[(batch,)](
            log_probs,
            targets,
            input_lengths,
            target_lengths,
            alpha,
            nll,
            grad_nll.contiguous(),
            beta,
            occupancy,
            order,
            classes,
            grad,
            log_probs.stride(0),
            log_probs.stride(1),
            log_probs.stride(2),
            targets.stride(0),
            grad.stride(0),
            grad.stride(1),
            batch,
            num_states,
            max_labels,
            blank,
            LOG_ZERO_THRESHOLD,
            BLOCK=block,
            LABEL_BLOCK=_block(max_labels),
            ACC=_acc_tl(acc),
            num_warps=num_warps_for(block),
        )
    return grad.to(log_probs.dtype)
