"""Vectorized PyTorch CTC forward-backward: the CPU backend of :func:`seqkit.losses.ctc.ctc_loss`.

The recursion over frames is the only Python loop. Each step updates every sequence and every
extended label position (blank, l1, blank, l2, ..., blank: 2S+1 of them) at once, in log space.

The backward variable beta is the forward variable alpha of the *reversed* problem (frames of each
sequence reversed, extended labels reversed), so alpha and beta are computed together in one loop
over a stacked batch of 2B rows: one Python-level pass over T instead of two. Each step stores the
log-sum over predecessors *before* the frame's own log-probability is added ("pre" values); the
log-occupancy of state s at frame t is then pre_fwd + log_prob + pre_rev + nll, with no
subtraction, so zero-probability entries never produce ``-inf - -inf = nan``.
"""

from __future__ import annotations

import math

import torch

from seqkit.losses.backends import LOG_ZERO_THRESHOLD, accumulation_dtype


def extend_labels(targets: torch.Tensor, blank: int) -> torch.Tensor:
    """Interleave blanks with the labels: (B, S) -> (B, 2S+1) = blank, l1, blank, ..., blank."""
    batch, max_target = targets.shape
    ext = targets.new_full((batch, 2 * max_target + 1), blank)
    ext[:, 1::2] = targets
    return ext


def _skip_mask(ext: torch.Tensor, blank: int) -> torch.Tensor:
    """Additive mask (B, L): 0 where state s may be entered from s-2 (a label unlike l[s-2])."""
    allowed = torch.zeros(ext.shape, dtype=torch.bool, device=ext.device)
    allowed[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    zero = torch.zeros((), dtype=torch.float32, device=ext.device)
    return torch.where(allowed, zero, float("-inf"))


def ctc_forward_backward_cpu(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sequence CTC negative log-likelihood and the class occupancies, in vectorized PyTorch.

    Inputs are assumed validated (see :func:`seqkit.losses.ctc.ctc_loss`).

    Args:
        log_probs: (T, B, C) log-probabilities, float32 or float64 (float16/bfloat16 are
            accumulated in float32).
        targets: (B, S) int64 padded labels.
        input_lengths: (B,) int64 valid frames per sequence, each <= T.
        target_lengths: (B,) int64 valid labels per sequence, each <= S.
        blank: blank class index.
        need_grad: also compute the occupancies.

    Returns:
        ``(nll, occupancy)``: nll (B,) in the accumulation dtype (``inf`` for impossible
        alignments); occupancy (T, B, C) in the dtype of ``log_probs``: the posterior expected
        count of class c at frame t, so that d nll_b / d log_probs[t, b, c] = -occupancy[t, b, c]
        with ``log_probs`` treated as a free input. Exactly zero on padding frames and for
        sequences whose nll is infinite. ``None`` unless ``need_grad``.
    """
    max_frames, batch, num_classes = log_probs.shape
    device = log_probs.device
    acc = accumulation_dtype(log_probs.dtype)
    neg_inf = float("-inf")
    used_frames = int(input_lengths.max().item()) if batch > 0 else 0
    if used_frames == 0:
        # No frames anywhere: the empty target has probability 1, any other target 0.
        nll = torch.where(target_lengths == 0, 0.0, float("inf")).to(acc)
        return nll, (torch.zeros_like(log_probs) if need_grad else None)

    ext = extend_labels(targets, blank)  # (B, L)
    num_states = ext.shape[1]
    ext_lengths = 2 * target_lengths + 1  # (B,)
    rows = 2 * batch if need_grad else batch
    # Rows 0..B-1 run alpha forward in time. With need_grad, rows B..2B-1 run the same recursion
    # on the problem flipped in time (over T') and in states (over L): that is beta. Flipped, a
    # sequence b starts at frame T'-T_b and state L-L_b; states before that stay at -inf.
    lp_all = torch.empty((used_frames, rows, num_states), dtype=acc, device=device)
    lp_fwd = lp_all[:, :batch]  # (T', B, L)
    index = ext[None].expand(used_frames, batch, num_states)
    if acc == log_probs.dtype:
        torch.gather(log_probs[:used_frames], 2, index, out=lp_fwd)
    else:
        lp_fwd.copy_(log_probs[:used_frames].gather(2, index))
    if float(lp_fwd.amin()) <= LOG_ZERO_THRESHOLD:
        lp_fwd.masked_fill_(lp_fwd <= LOG_ZERO_THRESHOLD, neg_inf)
    if need_grad:
        lp_all[:, batch:].copy_(lp_fwd.flip(0, 2))
    skip = _skip_mask(ext, blank).to(acc)  # (B, L)
    # state[:, 2:] holds alpha_{t-1}; two -inf columns in front make the s-1 and s-2 shifts plain
    # slices. Before its first frame, a virtual alpha_{-1} puts all mass on the first state.
    state = torch.full((rows, num_states + 2), neg_inf, dtype=acc, device=device)
    state[:batch, 2] = 0.0
    starts: dict[int, list[int]] = {}
    if need_grad:
        skip = torch.cat([skip, _skip_mask(ext.flip(1), blank).to(acc)], dim=0)  # (2B, L)
        for b, frames in enumerate(input_lengths.tolist()):
            starts.setdefault(used_frames - frames, []).append(b)
    pre = torch.empty((used_frames, rows, num_states), dtype=acc, device=device)  # (T', rows, L)
    # Views and scratch made once: the loop body is four kernels and no allocation. Only label
    # states (odd s) can be entered from s-2, so the skip term is computed on those alone.
    same, previous = state[:, 2:], state[:, 1:-1]
    before_previous_odd = state[:, 1:-2:2]  # alpha_{t-1}(s-2) for s = 1, 3, 5, ...
    skip_odd = skip[:, 1::2].contiguous()
    skipped = torch.empty(skip_odd.shape, dtype=acc, device=device)
    for t, (pre_t, lp_t) in enumerate(zip(pre.unbind(0), lp_all.unbind(0), strict=True)):
        for b in starts.get(t, ()):
            state[batch + b, 2 + num_states - int(ext_lengths[b])] = 0.0
        torch.logaddexp(same, previous, out=pre_t)
        torch.add(before_previous_odd, skip_odd, out=skipped)
        pre_t_odd = pre_t[:, 1::2]
        torch.logaddexp(pre_t_odd, skipped, out=pre_t_odd)
        torch.add(pre_t, lp_t, out=same)

    # log p(target) from alpha at each sequence's last frame, states L_b-1 and L_b-2.
    last_frame = (input_lengths - 1).clamp(min=0)
    batch_index = torch.arange(batch, device=device)
    alpha_last = pre[last_frame, batch_index] + lp_fwd[last_frame, batch_index]  # (B, L)
    end_a = alpha_last.gather(1, (ext_lengths - 1)[:, None]).squeeze(1)
    end_b = alpha_last.gather(1, (ext_lengths - 2).clamp(min=0)[:, None]).squeeze(1)
    end_b = end_b.masked_fill(ext_lengths < 2, neg_inf)
    log_likelihood = torch.logaddexp(end_a, end_b)
    # No frames: the empty target has probability 1, any other target 0.
    empty_target = torch.where(target_lengths == 0, 0.0, neg_inf).to(acc)
    log_likelihood = torch.where(input_lengths == 0, empty_target, log_likelihood)
    nll = -log_likelihood
    if not need_grad:
        return nll, None

    # log occupancy = alpha_t(s) + beta_t(s) - log y_t(s) + nll = pre_fwd + lp + pre_bwd + nll.
    # pre_bwd is -inf on padding frames and padding states, so those get exactly 0.
    finite_nll = torch.where(torch.isfinite(nll), nll, 0.0)  # impossible: alpha + beta = -inf
    log_occupancy = pre[:, batch:].flip(0, 2)  # (T', B, L)
    log_occupancy += pre[:, :batch]
    log_occupancy += lp_fwd
    log_occupancy += finite_nll[None, :, None]
    occupancy_states = _exp_without_subnormals(log_occupancy)
    occupancy = torch.zeros((max_frames, batch, num_classes), dtype=acc, device=device)
    occupancy[:used_frames].scatter_add_(2, index, occupancy_states)
    return nll, occupancy.to(log_probs.dtype)


def scale_occupancy(occupancy: torch.Tensor, grad_nll: torch.Tensor) -> torch.Tensor:
    """Gradient of sum_b grad_nll[b] * nll_b w.r.t. log_probs: -grad_nll[b] * occupancy[:, b].

    Args:
        occupancy: (T, B, C) from :func:`ctc_forward_backward_cpu`.
        grad_nll: (B,) upstream gradient of each sequence's loss.

    Returns:
        (T, B, C) gradient, dtype of ``occupancy``.
    """
    scale = (-grad_nll).to(occupancy.dtype)[None, :, None]  # (1, B, 1)
    return occupancy * scale


def _exp_without_subnormals(log_values: torch.Tensor) -> torch.Tensor:
    """In-place exp that returns exactly 0 where the result would be subnormal or underflow.

    x86 computes exp into the subnormal range (and its underflow) on a slow microcode path, up to
    40x slower per element; most states of a CTC lattice are that unlikely. Clamping first keeps
    exp on the fast path; the clamped entries are then set to exactly 0.
    """
    floor = math.log(torch.finfo(log_values.dtype).tiny) + 8.0  # margin: exp stays off slow paths
    tiny = math.exp(floor)
    log_values.clamp_(min=floor).exp_()
    return torch.nn.functional.threshold_(log_values, tiny, 0.0)
