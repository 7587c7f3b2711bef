"""Brute-force references: the definition of correctness for every loss backend.

Each function enumerates every alignment explicitly, so it is only usable on tiny inputs
(a handful of frames and labels). Tests compare every backend against these.
"""

from __future__ import annotations

# --- CTC (owned by the CTC loss work) ---------------------------------------------------------
import itertools

import torch


def _ctc_collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    """Collapse one frame-level CTC path: merge repeats, then drop blanks."""
    out: list[int] = []
    previous = None
    for label in path:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return tuple(out)


def ctc_brute_force(log_probs: torch.Tensor, target: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """CTC negative log-likelihood of one sequence by enumerating every frame-level path.

    Graves et al. 2006, "Connectionist Temporal Classification". Every one of the C**T paths is
    collapsed (repeats merged, blanks dropped); the ones that give ``target`` are summed in log
    space. Differentiable through autograd, so ``torch.autograd.grad`` of the result is the exact
    gradient with respect to ``log_probs`` treated as a free input (minus the occupancies).

    Args:
        log_probs: (T, C) log-probabilities of one sequence (only its valid frames), any float
            dtype; keep C**T small (a few thousand paths).
        target: (S,) integer labels, without blanks; S may be 0.
        blank: index of the blank class.

    Returns:
        Scalar float64 tensor: -log p(target | log_probs); ``inf`` when no path gives the target.
    """
    num_frames, num_classes = log_probs.shape
    wanted = tuple(int(v) for v in target.tolist())
    log_probs64 = log_probs.to(torch.float64)
    if num_frames == 0:
        return log_probs64.new_tensor(0.0 if not wanted else float("inf"))
    paths = [
        path
        for path in itertools.product(range(num_classes), repeat=num_frames)
        if _ctc_collapse(path, blank) == wanted
    ]
    if not paths:
        return log_probs64.sum() * 0 + float("inf")
    index = torch.tensor(paths, dtype=torch.long)  # (N, T)
    frames = torch.arange(num_frames).expand_as(index)  # (N, T)
    path_scores = log_probs64[frames, index].sum(dim=1)  # (N,)
    return -torch.logsumexp(path_scores, dim=0)



# --- Transducer (owned by the transducer loss work) -------------------------------------------


def transducer_brute_force(
    logits: torch.Tensor,
    target: torch.Tensor,
    blank: int = 0,
    *,
    fused_log_softmax: bool = True,
) -> torch.Tensor:
    """Transducer loss of one sequence by enumerating every monotone path through the lattice.

    Graves 2012, "Sequence Transduction with Recurrent Neural Networks". A path starts at node
    (t=0, u=0); from (t, u) it either emits blank (to (t+1, u)) or emits ``target[u]`` (to
    (t, u+1)); it ends with the blank leaving (T-1, U). There are C(T+U-1, U) paths, so this is
    only usable for a handful of frames and labels.

    Args:
        logits: (T, U+1, V), float32 or float64, unnormalized (or log-probs when
            ``fused_log_softmax`` is False). Differentiable: the result keeps its graph.
        target: (U,), integer labels, none equal to ``blank``.
        blank: index of the blank class. Default 0.
        fused_log_softmax: apply log-softmax over V first (True, default) or take ``logits`` as
            log-probs (False), as ``torchaudio.functional.rnnt_loss`` does.

    Returns:
        0-dim float64 tensor: minus the log of the summed path probabilities.
    """
    T, U1, _ = logits.shape  # (T, U+1, V)
    U = U1 - 1
    lp = logits.double()
    if fused_log_softmax:
        lp = torch.log_softmax(lp, dim=-1)
    labels = [int(x) for x in target.reshape(-1)[:U]]
    path_scores = []
    # A path is T + U moves; the last is the final blank, the other T-1 blanks and U labels are
    # placed freely among the first T+U-1 moves.
    for emit_steps in itertools.combinations(range(T + U - 1), U):
        emit_at = set(emit_steps)
        t = u = 0
        terms = []
        for step in range(T + U - 1):
            if step in emit_at:
                terms.append(lp[t, u, labels[u]])
                u += 1
            else:
                terms.append(lp[t, u, blank])
                t += 1
        terms.append(lp[T - 1, U, blank])
        path_scores.append(torch.stack(terms).sum())
    return -torch.logsumexp(torch.stack(path_scores), dim=0)
