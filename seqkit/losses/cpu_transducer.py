"""The transducer loss on CPU tensors, in vectorized PyTorch (no torchaudio behind it).

The lattice of Graves 2012 has a node (t, u) for every frame t < T_b and label count u <= U_b.
From (t, u) a blank moves to (t+1, u) and the next label moves to (t, u+1); the final blank
leaves (T_b-1, U_b). We scan the lattice one label column u at a time (U+1 steps, each
vectorized over batch and frames): inside a column, the blank moves form a chain along t, and a
chain recursion ``a[t] = logaddexp(c[t], a[t-1] + w[t-1])`` has the closed form
``a[t] = P[t] + logcumsumexp(c - P)[t]`` with ``P`` the exclusive prefix sum of ``w``. The scans
run in float64 on the small (B, U+1, T) lattice, so the prefix sums lose nothing that matters.

The big (B, T, U+1, V) tensor is read twice: once in the forward pass, log-softmaxed a chunk
at a time (no full-size temporary) to gather the blank and next-label log-probs and the
normalizers, and once in the backward pass, which writes the gradient
``softmax * occupancy - move occupancy`` straight into the one logits-sized output.

A sequence none of whose paths is possible (each has a move of log-prob -inf, or at or below
``LOG_ZERO_THRESHOLD``, -1e20, as masking sentinels are) costs +inf and gets gradient exactly 0,
as on the Triton path (the brute-force sum over paths gives +inf; its gradient would be NaN).
The floor the scans need (:data:`_LOG_PROB_FLOOR`) would otherwise give such a sequence a finite
cost. Finite log-probs below the floor are floored too, which only the CPU path does: a path
through a move of log-prob -2e4 costs about 1e4 here and 2e4 on the Triton path.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from seqkit.losses.backends import LOG_ZERO_THRESHOLD

# Elements of the (B*T*(U+1), V) logits matrix log-softmaxed per call: bounds the temporary
# memory of the normalizer pass (and keeps it in cache).
_NORMALIZER_CHUNK_ELEMENTS = 1 << 18

# Log-probabilities of lattice moves are floored here before the prefix-sum scan: exp(-1e4) is
# 0 in float64, and a -inf would turn the prefix differences into NaN.
_LOG_PROB_FLOOR = -1.0e4


class TransducerLattice(NamedTuple):
    """What the forward pass keeps for the backward pass (all small: no V axis).

    Attributes:
        log_norm: (B, T, U+1) logsumexp over V of the logits (zeros without fused log-softmax),
            in the logits dtype.
        blank_lp: (B, U+1, T) float64 log-prob of the blank move, 0 outside the valid lattice.
        emit_lp: (B, U, T) float64 log-prob of emitting the next label, -inf outside.
        alpha: (B, U+1, T) float64 forward log-probabilities.
        log_likelihood: (B,) float64 log p(target | logits).
    """

    log_norm: torch.Tensor
    blank_lp: torch.Tensor
    emit_lp: torch.Tensor
    alpha: torch.Tensor
    log_likelihood: torch.Tensor


def lattice_log_probs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    *,
    blank: int,
    fused_log_softmax: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalizers and the blank / next-label log-probs of every node, masked to the lattice.

    With fused log-softmax, the (B*T*(U+1), V) rows go through ``log_softmax`` a chunk at a
    time (one fused pass; the temporary is one chunk, never logits-sized); the two log-probs a
    node needs are gathered from the chunk and its normalizer is ``logit - log-prob``.

    Args:
        logits: (B, T, U+1, V) contiguous.
        targets: (B, U) int64, padding already replaced by a valid class.
        logit_lengths: (B,) int64, T_b.
        target_lengths: (B,) int64, U_b.
        blank: blank index.
        fused_log_softmax: normalize over V (True) or take logits as log-probs (False).

    Returns:
        log_norm (B, T, U+1) in the logits dtype (zeros without fused log-softmax);
        blank_lp (B, U+1, T) float64, 0 outside t < T_b, u <= U_b; emit_lp (B, U, T) float64,
        -inf outside t < T_b, u < U_b.
    """
    log_norm, blank_lp, emit = _move_log_probs(
        logits, targets, blank=blank, fused_log_softmax=fused_log_softmax
    )
    blank_lp, emit_lp = mask_lattice(blank_lp, emit, logit_lengths, target_lengths)
    return log_norm, blank_lp, emit_lp


def _move_log_probs(
    logits: torch.Tensor, targets: torch.Tensor, *, blank: int, fused_log_softmax: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`lattice_log_probs` before masking: log_norm (B, T, U+1), the blank log-probs
    (B, T, U+1) and the next-label log-probs (B, T, U) of every node, in the logits dtype."""
    B, T, U1, V = logits.shape
    U = U1 - 1
    # The label each node would emit next; the last column emits none (blank stands in).
    next_label = torch.cat([targets, targets.new_full((B, 1), blank)], dim=1)  # (B, U+1)
    next_label = next_label[:, None, :].expand(B, T, U1)  # (B, T, U+1)
    if fused_log_softmax:
        rows = logits.view(-1, V)  # (B*T*(U+1), V)
        labels = next_label.reshape(-1, 1)  # (B*T*(U+1), 1)
        log_norm = torch.empty(rows.shape[0], dtype=logits.dtype, device=logits.device)
        blank_flat = torch.empty_like(log_norm)
        emit_flat = torch.empty_like(log_norm)
        step = max(1, _NORMALIZER_CHUNK_ELEMENTS // V)
        for start in range(0, rows.shape[0], step):
            chunk = slice(start, start + step)
            log_probs = torch.log_softmax(rows[chunk], dim=-1)  # (rows, V), one chunk only
            blank_flat[chunk] = log_probs[:, blank]
            emit_flat[chunk] = log_probs.gather(1, labels[chunk]).squeeze(1)
            torch.sub(rows[chunk, blank], log_probs[:, blank], out=log_norm[chunk])
        log_norm = log_norm.view(B, T, U1)
        blank_lp = blank_flat.view(B, T, U1)
        emit = emit_flat.view(B, T, U1)[:, :, :U]
    else:
        log_norm = logits.new_zeros(B, T, U1)
        blank_lp = logits[..., blank]
        emit = logits.gather(-1, next_label.unsqueeze(-1)).squeeze(-1)[:, :, :U]
    return log_norm, blank_lp, emit


def mask_lattice(
    blank_lp: torch.Tensor,
    emit: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The blank and next-label log-probs as the scans want them: float64, (B, U+1, T) and
    (B, U, T), floored, and masked to the lattice (0 / -inf outside).

    Args:
        blank_lp: (B, T, U+1) blank log-probs of every node.
        emit: (B, T, U) log-probs of each node's next label.
        logit_lengths: (B,) int64, T_b.
        target_lengths: (B,) int64, U_b.
    """
    B, T, U1 = blank_lp.shape
    U = U1 - 1
    blank_lp = blank_lp.to(torch.float64).transpose(1, 2)  # (B, U+1, T)
    emit_lp = emit.to(torch.float64).transpose(1, 2)  # (B, U, T)

    frames = torch.arange(T, device=blank_lp.device)
    label_counts = torch.arange(U1, device=blank_lp.device)
    in_time = frames[None, None, :] < logit_lengths[:, None, None]  # (B, 1, T)
    blank_ok = in_time & (label_counts[None, :, None] <= target_lengths[:, None, None])
    emit_ok = in_time & (label_counts[None, :U, None] < target_lengths[:, None, None])
    blank_lp = torch.where(blank_ok, blank_lp.clamp_min(_LOG_PROB_FLOOR), 0.0)  # (B, U+1, T)
    emit_lp = torch.where(emit_ok, emit_lp.clamp_min(_LOG_PROB_FLOOR), float("-inf"))  # (B,U,T)
    return blank_lp.contiguous(), emit_lp.contiguous()


def impossible_sequences(
    blank_lp: torch.Tensor,
    emit: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
) -> torch.Tensor:
    """(B,) bool: True where every path has a move of probability 0 (log-prob <= -1e20).

    The fewest such moves on any path to each node, one label column at a time: the chain
    recursion ``m[t] = min(c[t], m[t-1] + w[t-1])`` has the closed form
    ``m[t] = P[t] + cummin(c - P)[t]`` (the min-plus twin of :func:`forward_variables`), exact
    because the counts are small integers.

    Args:
        blank_lp: (B, T, U+1) blank log-probs before :func:`mask_lattice`.
        emit: (B, T, U) next-label log-probs before :func:`mask_lattice`.
        logit_lengths: (B,) int64, T_b.
        target_lengths: (B,) int64, U_b.
    """
    B, T, U1 = blank_lp.shape
    blank_zero, emit_zero = blank_lp <= LOG_ZERO_THRESHOLD, emit <= LOG_ZERO_THRESHOLD
    if not bool(blank_zero.any() or emit_zero.any()):  # the usual case: nothing masked
        return torch.zeros(B, dtype=torch.bool, device=blank_lp.device)
    blank_zero = blank_zero.to(torch.float64).transpose(1, 2)  # (B, U+1, T)
    emit_zero = emit_zero.to(torch.float64).transpose(1, 2)  # (B, U, T)
    prefix = _exclusive_cumsum(blank_zero)  # (B, U+1, T)
    fewest = torch.empty_like(prefix)
    fewest[:, 0] = prefix[:, 0]
    for u in range(1, U1):
        arrive = fewest[:, u - 1] + emit_zero[:, u - 1]  # (B, T)
        fewest[:, u] = prefix[:, u] + torch.cummin(arrive - prefix[:, u], dim=-1).values
    batch = torch.arange(B, device=blank_lp.device)
    last_t = logit_lengths - 1
    at_end = fewest[batch, target_lengths, last_t] + blank_zero[batch, target_lengths, last_t]
    return at_end > 0


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """Prefix sums over the last axis that exclude the current element."""
    return torch.cumsum(x, dim=-1) - x


def forward_variables(
    blank_lp: torch.Tensor,
    emit_lp: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha over the lattice, one label column at a time.

    Args:
        blank_lp: (B, U+1, T) float64 from :func:`lattice_log_probs`.
        emit_lp: (B, U, T) float64.
        logit_lengths: (B,) int64.
        target_lengths: (B,) int64.

    Returns:
        alpha (B, U+1, T) float64 (meaningful inside the lattice only) and the log-likelihood
        (B,) float64: alpha(T_b-1, U_b) + blank_lp(T_b-1, U_b).
    """
    B, U1, T = blank_lp.shape
    prefix = _exclusive_cumsum(blank_lp)  # (B, U+1, T): sum of blanks before frame t
    alpha = torch.empty_like(blank_lp)
    alpha[:, 0] = prefix[:, 0]
    for u in range(1, U1):
        arrive = alpha[:, u - 1] + emit_lp[:, u - 1]  # (B, T): arrivals from column u-1
        alpha[:, u] = prefix[:, u] + torch.logcumsumexp(arrive - prefix[:, u], dim=-1)
    batch = torch.arange(B, device=blank_lp.device)
    last_t = logit_lengths - 1
    log_likelihood = alpha[batch, target_lengths, last_t] + blank_lp[batch, target_lengths, last_t]
    return alpha, log_likelihood


def backward_variables(
    blank_lp: torch.Tensor,
    emit_lp: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
) -> torch.Tensor:
    """Beta over the lattice extended by one frame, one label column at a time (U down to 0).

    beta(t, u) is the log-probability of finishing from node (t, u), including the final blank;
    the extra frame holds the end node: beta(T_b, U_b) = 0.

    Args:
        blank_lp: (B, U+1, T) float64.
        emit_lp: (B, U, T) float64.
        logit_lengths: (B,) int64.
        target_lengths: (B,) int64.

    Returns:
        beta (B, U+1, T+1) float64.
    """
    B, U1, T = blank_lp.shape
    device = blank_lp.device
    # Work on time-reversed rows so each column is a forward logcumsumexp: index s = T - t.
    # The chain weight between s-1 and s is blank_lp(t = T - s); the last slot is never used.
    blank_rev = torch.cat([blank_lp.flip(-1), blank_lp.new_zeros(B, U1, 1)], dim=-1)  # (B,U+1,T+1)
    suffix = _exclusive_cumsum(blank_rev)  # (B, U+1, T+1): sum of blanks from t to T-1
    emit_rev = torch.cat([emit_lp.new_full((B, U1 - 1, 1), float("-inf")), emit_lp.flip(-1)], -1)
    # The end node (T_b, U_b), log 1, sits at s = T - T_b of column U_b; -inf everywhere else.
    frames_rev = torch.arange(T + 1, device=device)
    labels = torch.arange(U1, device=device)
    end = ((T - logit_lengths)[:, None, None] == frames_rev[None, None, :]) & (
        labels[None, :, None] == target_lengths[:, None, None]
    )  # (B, U+1, T+1)
    end_node = torch.where(end, 0.0, float("-inf")).to(torch.float64)
    beta_rev = torch.empty(B, U1, T + 1, dtype=torch.float64, device=device)
    for u in range(U1 - 1, -1, -1):
        start = end_node[:, u]  # (B, T+1)
        if u < U1 - 1:
            # Exact as a maximum: where the end node is finite, the label move is -inf (no
            # label leaves the last frame), and elsewhere the end node is -inf.
            start = torch.maximum(start, beta_rev[:, u + 1] + emit_rev[:, u])
        beta_rev[:, u] = suffix[:, u] + torch.logcumsumexp(start - suffix[:, u], dim=-1)
    return beta_rev.flip(-1)


def occupancies(
    lattice: TransducerLattice,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log posterior occupancies of every node and every move (-inf outside the lattice).

    Args:
        lattice: the forward pass's :class:`TransducerLattice`.
        logit_lengths: (B,) int64.
        target_lengths: (B,) int64.

    Returns:
        node (B, U+1, T), blank move (B, U+1, T), label move (B, U, T); all float64 logs.
    """
    blank_lp, emit_lp, alpha = lattice.blank_lp, lattice.emit_lp, lattice.alpha
    B, U1, T = blank_lp.shape
    beta = backward_variables(blank_lp, emit_lp, logit_lengths, target_lengths)  # (B,U+1,T+1)
    log_z = lattice.log_likelihood[:, None, None]
    frames = torch.arange(T, device=alpha.device)
    labels = torch.arange(U1, device=alpha.device)
    inside = (frames[None, None, :] < logit_lengths[:, None, None]) & (
        labels[None, :, None] <= target_lengths[:, None, None]
    )  # (B, U+1, T)
    neg_inf = float("-inf")
    node = torch.where(inside, alpha + beta[:, :, :T] - log_z, neg_inf)
    blank_move = torch.where(inside, alpha + blank_lp + beta[:, :, 1:] - log_z, neg_inf)
    emit_move = alpha[:, :-1] + emit_lp + beta[:, 1:, :T] - log_z  # emit_lp is -inf outside
    return node, blank_move, emit_move


def transducer_forward(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    *,
    blank: int,
    fused_log_softmax: bool,
) -> tuple[torch.Tensor, TransducerLattice]:
    """Per-sequence transducer losses and the lattice the gradient needs.

    Args:
        logits: (B, T, U+1, V) float32 or float64, contiguous.
        targets: (B, U) int64, padding replaced by a valid class.
        logit_lengths: (B,) int64 in [1, T].
        target_lengths: (B,) int64 in [0, U].
        blank: blank index.
        fused_log_softmax: normalize over V here (True) or take logits as log-probs (False).

    Returns:
        costs (B,) in the logits dtype (+inf for a sequence with no possible path), and the
        :class:`TransducerLattice`.
    """
    log_norm, blank_lp, emit = _move_log_probs(
        logits, targets, blank=blank, fused_log_softmax=fused_log_softmax
    )
    impossible = impossible_sequences(blank_lp, emit, logit_lengths, target_lengths)
    blank_lp, emit_lp = mask_lattice(blank_lp, emit, logit_lengths, target_lengths)
    alpha, log_likelihood = forward_variables(blank_lp, emit_lp, logit_lengths, target_lengths)
    log_likelihood = log_likelihood.masked_fill(impossible, float("-inf"))
    lattice = TransducerLattice(log_norm, blank_lp, emit_lp, alpha, log_likelihood)
    return (-log_likelihood).to(logits.dtype), lattice


def transducer_gradient(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    lattice: TransducerLattice,
    scale: torch.Tensor,
    *,
    blank: int,
    fused_log_softmax: bool,
    clamp: float | None,
) -> torch.Tensor:
    """Gradient of ``sum_b scale[b] * cost[b]`` with respect to the logits.

    With fused log-softmax it is ``softmax(logits) * node occupancy - move occupancy`` on the
    blank and next-label entries; for log-prob inputs only ``- move occupancy``. ``clamp`` clips
    the per-sequence gradient before ``scale`` multiplies it, as torchaudio does. Entries with
    t >= T_b or u > U_b are exactly zero, and so is the gradient of a sequence with no possible
    path (log-likelihood -inf).

    Args:
        logits: (B, T, U+1, V) as given to :func:`transducer_forward`.
        targets: (B, U) int64.
        logit_lengths: (B,) int64.
        target_lengths: (B,) int64.
        lattice: what :func:`transducer_forward` returned.
        scale: (B,) upstream gradient of each cost.
        blank: blank index.
        fused_log_softmax: as in the forward pass.
        clamp: clip value (> 0) or None.

    Returns:
        (B, T, U+1, V) in the logits dtype.
    """
    B, T, U1, V = logits.shape
    U = U1 - 1
    impossible = torch.isneginf(lattice.log_likelihood)  # (B,)
    if bool(impossible.any()):  # occupancies relative to log 1 instead: finite, then zeroed
        lattice = lattice._replace(log_likelihood=lattice.log_likelihood.masked_fill(impossible, 0))
    node, blank_move, emit_move = occupancies(lattice, logit_lengths, target_lengths)
    scale64 = scale.to(torch.float64).reshape(B)
    # Fold the upstream scale into the occupancies when that is exact: no clamp in between and a
    # positive scale (a log cannot carry a sign).
    fold = clamp is None and bool((scale64 > 0).all())
    if fold:
        log_scale = scale64.log()[:, None, None]
        node, blank_move, emit_move = (
            node + log_scale,
            blank_move + log_scale,
            emit_move + log_scale,
        )

    if fused_log_softmax:
        # softmax * occupancy = exp(logit - (log_norm - log occupancy)): one subtraction and one
        # in-place exp over the big tensor, written straight into the output.
        shift = lattice.log_norm.to(torch.float64) - node.transpose(1, 2)  # (B, T, U+1)
        grad = torch.sub(logits, shift.to(logits.dtype).unsqueeze(-1))
        grad.exp_()
    else:
        grad = torch.zeros_like(logits)
    grad[..., blank] -= blank_move.exp().transpose(1, 2).to(logits.dtype)  # (B, T, U+1)
    if U > 0:
        index = targets[:, None, :, None].expand(B, T, U, 1)  # (B, T, U, 1)
        emit_occ = emit_move.exp().transpose(1, 2).to(logits.dtype).unsqueeze(-1)  # (B,T,U,1)
        grad[:, :, :U].scatter_add_(-1, index, -emit_occ)
    if fused_log_softmax:
        # Padding may hold anything (inf, nan): make its gradient exactly zero.
        for b, (t_b, u_b) in enumerate(
            zip(logit_lengths.tolist(), target_lengths.tolist(), strict=True)
        ):
            if t_b < T:
                grad[b, t_b:] = 0.0
            if u_b < U:
                grad[b, :t_b, u_b + 1 :] = 0.0
    if clamp is not None:
        grad.clamp_(-clamp, clamp)
    if not fold:
        grad.mul_(scale64.to(logits.dtype)[:, None, None, None])
    return grad.masked_fill_(impossible[:, None, None, None], 0.0)
