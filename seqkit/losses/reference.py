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
