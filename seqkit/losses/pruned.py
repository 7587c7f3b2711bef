"""The pruned transducer loss (Kuang et al. 2022, "Pruned RNN-T for fast, memory-efficient ASR
training"; k2's ``rnnt_loss_pruned``), in vectorized PyTorch.

A transducer's joint network runs on every lattice node: a (B, T, U+1, J) hidden layer and
(B, T, U+1, V) logits, most of a training step's time (``seqkit bench profile``). Nearly all of
the alignment probability sits near the diagonal the acoustics choose, so:

1. A *simple* joint, ``am(t) + lm(u)`` (a linear layer on each side, no hidden layer), gives a
   full lattice cheaply: its log-softmax normalizer over V is a batched matrix product of the
   two sides' exponentials, so no (T, U+1, V) tensor is formed. Its loss trains both layers.
2. Its node occupancies choose, for every frame, ``S`` consecutive label positions
   ``[s_t, s_t + S)`` holding most of the posterior, such that a path through them exists.
3. The real joint runs only on those (B, T, S) nodes; every other node's moves get log-prob
   ``-inf`` (floored) and the ordinary lattice recursion gives the loss of the paths inside.

With ``S >= U + 1`` the pruned loss is the full transducer loss exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from seqkit.losses.cpu_transducer import (
    TransducerLattice,
    forward_variables,
    mask_lattice,
    occupancies,
)

# Log-prob of a move outside the pruned band: impossible (exp underflows to 0 in float64), but
# finite, as the lattice scans need (see seqkit.losses.cpu_transducer).
_OUTSIDE = -1.0e4


def lattice_nll(
    blank_lp: torch.Tensor,
    emit_lp: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
) -> torch.Tensor:
    """Per-sequence negative log-likelihood of a transducer lattice given its move log-probs.

    Differentiable in both inputs: the gradient of a move's log-prob is minus its posterior
    occupancy.

    Args:
        blank_lp: (B, T, U+1) log-prob of the blank move at each node.
        emit_lp: (B, T, U) log-prob of emitting the next label at each node.
        logit_lengths: (B,) int64 frames T_b.
        target_lengths: (B,) int64 labels U_b.

    Returns:
        (B,) in ``blank_lp``'s dtype.
    """
    return _LatticeNll.apply(blank_lp, emit_lp, logit_lengths, target_lengths, 0)[0]


def lattice_nll_and_bands(
    blank_lp: torch.Tensor,
    emit_lp: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lattice_nll` and, from the same pass over the lattice, :func:`prune_ranges`'s
    band starts (B, T) int64 for bands of ``width`` label positions."""
    return _LatticeNll.apply(blank_lp, emit_lp, logit_lengths, target_lengths, width)


class _LatticeNll(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, blank_lp: torch.Tensor, emit_lp: torch.Tensor,
                logit_lengths: torch.Tensor, target_lengths: torch.Tensor,
                width: int) -> tuple[torch.Tensor, torch.Tensor]:
        lattice = _lattice(blank_lp.detach(), emit_lp.detach(), logit_lengths, target_lengths)
        ctx.lattice, ctx.moves, ctx.dtype = lattice, None, blank_lp.dtype
        ctx.save_for_backward(logit_lengths, target_lengths)
        starts = blank_lp.new_zeros(0, dtype=torch.long)
        if width:
            node, *ctx.moves = occupancies(lattice, logit_lengths, target_lengths)
            starts = _band_starts(node, logit_lengths, target_lengths, width)
        ctx.mark_non_differentiable(starts)
        return (-lattice.log_likelihood).to(blank_lp.dtype), starts

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        logit_lengths, target_lengths = ctx.saved_tensors
        if ctx.moves is None:
            _, *ctx.moves = occupancies(ctx.lattice, logit_lengths, target_lengths)
        blank_move, emit_move = ctx.moves
        scale = grad.to(torch.float64)[:, None, None]
        blank_grad = -(blank_move.exp() * scale).transpose(1, 2)  # (B, T, U+1)
        emit_grad = -(emit_move.exp() * scale).transpose(1, 2)  # (B, T, U)
        return blank_grad.to(ctx.dtype), emit_grad.to(ctx.dtype), None, None, None


def _lattice(blank_lp: torch.Tensor, emit_lp: torch.Tensor, logit_lengths: torch.Tensor,
             target_lengths: torch.Tensor) -> TransducerLattice:
    """The forward pass's lattice (alpha and likelihood) of the given move log-probs."""
    blank, emit = mask_lattice(blank_lp, emit_lp, logit_lengths, target_lengths)
    alpha, log_likelihood = forward_variables(blank, emit, logit_lengths, target_lengths)
    empty = blank_lp.new_zeros(0)
    return TransducerLattice(empty, blank, emit, alpha, log_likelihood)


def simple_lattice(
    am: torch.Tensor, lm: torch.Tensor, targets: torch.Tensor, *, blank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move log-probs of the simple joint ``log_softmax(am(t) + lm(u))`` on every node.

    The normalizer ``logsumexp_v(am[t, v] + lm[u, v])`` is ``log(exp(am) @ exp(lm)^T)`` after
    each side's maximum is taken out: (B, T, U+1) from one batched product, no V axis kept.

    Args:
        am: (B, T, V) acoustic side logits.
        lm: (B, U+1, V) label side logits (row u: after u labels).
        targets: (B, U) int64 labels, padding replaced by a valid class.
        blank: blank index.

    Returns:
        blank_lp (B, T, U+1) and emit_lp (B, T, U), differentiable in ``am`` and ``lm``.
    """
    am, lm = am.float(), lm.float()
    B, T, _ = am.shape
    U = targets.shape[1]
    am_max = am.detach().amax(-1, keepdim=True)  # (B, T, 1)
    lm_max = lm.detach().amax(-1, keepdim=True)  # (B, U+1, 1)
    products = torch.bmm((am - am_max).exp(), (lm - lm_max).exp().transpose(1, 2))  # (B,T,U+1)
    norm = products.clamp_min(1e-30).log() + am_max + lm_max.transpose(1, 2)
    blank_lp = am[:, :, blank, None] + lm[:, None, :, blank] - norm
    am_label = am.gather(2, targets[:, None, :].expand(B, T, U))  # (B, T, U)
    lm_label = lm[:, :U].gather(2, targets[:, :, None]).squeeze(2)  # (B, U)
    emit_lp = am_label + lm_label[:, None, :] - norm[:, :, :U]
    return blank_lp, emit_lp


def band_width(
    width: int, logit_lengths: torch.Tensor, target_lengths: torch.Tensor, positions: int
) -> int:
    """The band width to use: ``width``, widened where a sequence has more labels than bands of
    that width can climb (``U_b > T_b (width - 1)``), at most ``positions`` (U+1)."""
    climb = (target_lengths + logit_lengths - 1) // logit_lengths.clamp_min(1)  # ceil(U_b/T_b)
    needed = int(climb.max()) + 1 if climb.numel() else 1
    return max(1, min(positions, max(width, needed)))


def prune_ranges(
    blank_lp: torch.Tensor,
    emit_lp: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    width: int,
) -> torch.Tensor:
    """Each frame's first label position ``s_t`` of the band ``[s_t, s_t + width)`` to keep.

    ``s_t`` maximizes the band's share of the frame's node occupancy (under the given lattice),
    then is moved as little as needed to let a path through: ``s_0 = 0``, non-decreasing, at
    most ``width - 1`` up per frame, and the last frame's band reaching ``U_b``.

    Args:
        blank_lp: (B, T, U+1), emit_lp: (B, T, U): the lattice to prune by (the simple joint's).
        logit_lengths: (B,) int64 T_b.
        target_lengths: (B,) int64 U_b.
        width: S, label positions per frame, in 2..U+1, wide enough for every sequence
            (:func:`band_width`).

    Returns:
        (B, T) int64 in ``[0, U+1-S]``.
    """
    return lattice_nll_and_bands(blank_lp.detach(), emit_lp.detach(), logit_lengths,
                                 target_lengths, width)[1]


def _band_starts(node: torch.Tensor, logit_lengths: torch.Tensor, target_lengths: torch.Tensor,
                 width: int) -> torch.Tensor:
    """:func:`prune_ranges` from the node log-occupancies (B, U+1, T)."""
    B, U1, T = node.shape
    device = node.device
    occupancy = node.exp().transpose(1, 2)  # (B, T, U+1)
    window = occupancy.unfold(2, width, 1).sum(-1)  # (B, T, U+2-S): band sums by start
    start = window.argmax(-1)  # (B, T)
    frames = torch.arange(T, device=device)
    last_start = (target_lengths - width + 1).clamp(0, U1 - width)  # (B,)
    # bounds that keep a path possible: reachable from (0, 0) and able to reach (T_b-1, U_b)
    step = width - 1
    high = torch.minimum(frames[None] * step, last_start[:, None])
    frames_left = (logit_lengths[:, None] - 1 - frames[None]).clamp_min(0)
    low = (last_start[:, None] - frames_left * step).clamp_min(0)
    start = torch.maximum(torch.minimum(start, high), low)
    start = torch.cummax(start, dim=1).values  # non-decreasing
    # at most width - 1 up per frame: s_t >= s_k - (k - t)(width - 1) for every t < k < T_b
    ahead = torch.where(frames[None] < logit_lengths[:, None], start - frames[None] * step,
                        torch.full_like(start, -(1 << 40)))
    reach = ahead.flip(1).cummax(1).values.flip(1) + frames[None] * step
    return torch.maximum(start, reach).clamp(0, U1 - width)


def pruned_lattice(
    output: Callable[[torch.Tensor], torch.Tensor],
    f: torch.Tensor,
    g: torch.Tensor,
    targets: torch.Tensor,
    starts: torch.Tensor,
    width: int,
    *,
    blank: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move log-probs of the real joint on each frame's band, every other move impossible.

    Args:
        output: the joint after its input projections: maps ``f + g`` (B, T, S, J) to logits
            (B, T, S, V) (``W_o tanh(.) + b_o`` for Graves's joint).
        f: (B, T, J) projected acoustic side; g: (B, U+1, J) projected label side.
        targets: (B, U) int64, padding replaced by a valid class.
        starts: (B, T) from :func:`prune_ranges`.
        width: S.
        blank: blank index.

    Returns:
        blank_lp (B, T, U+1) and emit_lp (B, T, U) (float32), ``-1e4`` outside the bands.
    """
    B, T, _ = f.shape
    U1 = g.shape[1]
    index = starts[:, :, None] + torch.arange(width, device=f.device)  # (B, T, S)
    rows = torch.arange(B, device=f.device)[:, None, None]
    log_probs = output(f[:, :, None, :] + g[rows, index]).float().log_softmax(-1)  # (B,T,S,V)
    next_label = torch.cat([targets, targets.new_full((B, 1), blank)], dim=1)  # (B, U+1)
    emit_band = log_probs.gather(3, next_label[rows, index][..., None]).squeeze(3)  # (B, T, S)
    outside = log_probs.new_full((B, T, U1), _OUTSIDE)
    blank_lp = outside.scatter(2, index, log_probs[..., blank])
    emit_lp = outside.scatter(2, index, emit_band)[:, :, : U1 - 1]
    return blank_lp, emit_lp
