"""Compiled CTC forward-backward: the CPU backend of :func:`seqkit.losses.ctc.ctc_loss`.

Why compiled: the recursion runs over T frames, and each frame's work is small (2S+1 states for
each sequence). Vectorized PyTorch pays a dispatch and a thread-pool hand-off for each of its
per-frame ops, which left it 1.3-2.2x slower than torch's C++ loss. Here each sequence is one
fused loop in machine code (numba), and the batch is split over ``torch.get_num_threads()``
threads, the same parallelism torch's own CPU loss uses.

The algorithm, per sequence, in log space in the input's dtype (float32 or float64, as torch's
loss and the vectorized path before this one): alpha over the
extended labels (blank, l1, blank, ..., blank: L = 2S+1 states) for every frame, then one
backward sweep that keeps a single row of beta and adds each state's occupancy
exp(alpha + beta + nll) into its class. Beta excludes the frame's own log-probability, so the
occupancy needs no subtraction and zero-probability states never make ``-inf - -inf = nan``.
States that cannot be reached yet (s > 2t+1) or can no longer finish (s < L - 2(T_b - t)) are
skipped; they carry no probability mass either way.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

from seqkit.losses.backends import LOG_ZERO_THRESHOLD

_NEG_INF = -np.inf


def _compiled(function: Callable) -> Callable:
    """``numba.njit`` that releases the GIL (the batch runs on threads), cached on disk if it can.

    The on-disk cache spares each new process the ~1 s compile. numba puts it beside this file,
    or in the user's cache directory when site-packages is read-only; where neither can be
    written numba refuses ``cache=True`` outright, and compiling once per process is the price.
    """
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:
        return numba.njit(nogil=True)(function)


@_compiled
def _logaddexp(a: float, b: float, one: float) -> float:
    """log(exp(a) + exp(b)) in the dtype of the arguments: one exp and one log.

    ``one`` is 1 in that dtype (a Python literal would promote float32 math to float64).
    Written with min/max, not branches: which argument is larger is a coin flip per state.
    """
    high, low = max(a, b), min(a, b)
    if low == _NEG_INF:
        return high
    return high + math.log(one + math.exp(low - high))


@_compiled
def _logaddexp3(a: float, b: float, c: float, one: float) -> float:
    """log(exp(a) + exp(b) + exp(c)): two exps and one log, branch-free like :func:`_logaddexp`."""
    low_ab, high_ab = min(a, b), max(a, b)
    high, middle = max(high_ab, c), min(high_ab, c)
    if high == _NEG_INF:
        return high
    return high + math.log(one + math.exp(low_ab - high) + math.exp(middle - high))


@_compiled
def _extended_labels(
    targets: np.ndarray, b: int, states: int, blank: int
) -> tuple[np.ndarray, np.ndarray]:
    """Class of each extended-label state (blank, l1, blank, ...), and whether it may be entered
    from s-2 (a label unlike the label before it), with two False past the end."""
    labels = np.full(states, blank, dtype=np.int64)
    skip = np.zeros(states + 2, dtype=np.bool_)
    for s in range(1, states, 2):
        labels[s] = targets[b, s // 2]
        skip[s] = s >= 3 and labels[s] != labels[s - 2]
    return labels, skip


@_compiled
def _alpha(
    log_probs: np.ndarray, labels: np.ndarray, skip: np.ndarray, b: int, frames: int, one: float
) -> tuple[np.ndarray, np.ndarray]:
    """Log-probabilities (T_b, L) of each state's class and log-alpha (T_b, L+2).

    Both in the dtype of ``log_probs``; alpha's two leading columns stay -inf, so state s lives
    in column s+2 and its predecessors s-1 and s-2 need no bounds checks.
    """
    states = labels.shape[0]
    lp = np.empty((frames, states), dtype=log_probs.dtype)
    for t in range(frames):
        for s in range(states):
            value = log_probs[t, b, labels[s]]
            lp[t, s] = _NEG_INF if value <= LOG_ZERO_THRESHOLD else value
    alpha = np.full((frames, states + 2), _NEG_INF, dtype=log_probs.dtype)
    alpha[0, 2] = lp[0, 0]
    if states > 1:
        alpha[0, 3] = lp[0, 1]
    for t in range(1, frames):
        previous, current, lp_t = alpha[t - 1], alpha[t], lp[t]
        for s in range(max(0, states - 2 * (frames - t)), min(states, 2 * t + 2)):
            if skip[s]:
                total = _logaddexp3(previous[s + 2], previous[s + 1], previous[s], one)
            else:
                total = _logaddexp(previous[s + 2], previous[s + 1], one)
            current[s + 2] = total + lp_t[s]
    return lp, alpha


@_compiled
def _add_occupancy(
    alpha: np.ndarray,
    lp: np.ndarray,
    labels: np.ndarray,
    skip: np.ndarray,
    nll: float,
    floor: float,
    one: float,
    occupancy: np.ndarray,
) -> None:
    """Sweep beta backward in time and add exp(alpha + beta + nll) into occupancy (T, C).

    beta_t(s) (excluding lp[t, s]) is used as soon as it is made, so only one row is kept:
    ``after[s]`` = beta_{t+1}(s) + lp[t+1, s], overwritten in place for ascending s (state s
    reads s, s+1 and s+2, none overwritten yet). A virtual frame T_b where only the last state
    holds mass starts it; two -inf columns past the end stand for s+1 and s+2.
    """
    frames, states = lp.shape
    after = np.full(states + 2, _NEG_INF, dtype=lp.dtype)
    after[states - 1] = 0.0
    for t in range(frames - 1, -1, -1):
        # States past 2t+1 are unreachable at frame t (no occupancy), and frame t-1 reads
        # ``after`` only up to 2t+1; states below ``first`` can no longer finish.
        first, last = max(0, states - 2 * (frames - t)), min(states, 2 * t + 2)
        alpha_t, lp_t, occupancy_t = alpha[t], lp[t], occupancy[t]
        for s in range(first, last):
            if skip[s + 2]:
                beta = _logaddexp3(after[s], after[s + 1], after[s + 2], one)
            else:
                beta = _logaddexp(after[s], after[s + 1], one)
            log_occupancy = alpha_t[s + 2] + beta + nll
            if log_occupancy > floor:
                occupancy_t[labels[s]] += math.exp(log_occupancy)
            after[s] = beta + lp_t[s]


@_compiled
def _sequences(
    log_probs: np.ndarray,
    targets: np.ndarray,
    input_lengths: np.ndarray,
    target_lengths: np.ndarray,
    blank: int,
    order: np.ndarray,
    floor: float,
    nll: np.ndarray,
    occupancy: np.ndarray,
) -> None:
    """Fill nll[b] (and occupancy[:, b] unless it is empty) for each sequence b in ``order``."""
    need_grad = occupancy.shape[0] > 0
    one = np.ones(1, dtype=log_probs.dtype)[0]
    for b in order:
        frames, states = input_lengths[b], 2 * target_lengths[b] + 1
        if frames == 0:  # no frames: the empty target has probability 1, any other target 0
            nll[b] = 0.0 if states == 1 else np.inf
            continue
        labels, skip = _extended_labels(targets, b, states, blank)
        lp, alpha = _alpha(log_probs, labels, skip, b, frames, one)
        end = alpha[frames - 1, states + 1]
        if states > 1:
            end = _logaddexp(end, alpha[frames - 1, states], one)
        nll[b] = -end
        if need_grad and end > _NEG_INF:
            _add_occupancy(alpha, lp, labels, skip, -end, floor, one, occupancy[:, b])


@functools.cache
def _thread_pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """One pool per size and process (a forked child must not reuse its parent's threads)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seqkit-ctc")


def _run_batch(run: Callable[[np.ndarray], None], costs: np.ndarray, workers: int) -> None:
    """Run ``run(order)`` over every sequence on ``workers`` threads, the caller being one.

    The threads take sequences one at a time, longest first, from one shared iterator (``next``
    on a list iterator is atomic under the GIL). A thread that starts late, as on a loaded
    machine, simply takes fewer; the caller waits at most for the sequences already started, and
    withdraws helpers that never started instead of waiting for them to be scheduled.
    """
    pending = iter(np.argsort(-costs, kind="stable").tolist())

    def take_sequences() -> None:
        for b in pending:
            run(np.array([b], dtype=np.int64))

    pool = _thread_pool(workers - 1, os.getpid())
    helpers = [pool.submit(take_sequences) for _ in range(workers - 1)]
    take_sequences()
    for helper in helpers:
        if not helper.cancel():
            helper.result()


def ctc_forward_backward_cpu(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sequence CTC negative log-likelihood and the class occupancies, on CPU tensors.

    Inputs are assumed validated (see :func:`seqkit.losses.ctc.ctc_loss`). Sequences run in
    parallel on ``torch.get_num_threads()`` threads; the result does not depend on that number.

    Args:
        log_probs: (T, B, C) log-probabilities, float32 or float64, on the CPU.
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
    lp = log_probs.detach().contiguous().numpy()
    labels = targets.contiguous().numpy()
    frames, label_counts = input_lengths.numpy(), target_lengths.numpy()
    nll = np.empty(batch, dtype=lp.dtype)
    # numpy, not torch, for this buffer and its scaling: plain single-threaded passes, where a
    # torch op of this size forks and joins the thread pool (on a busy machine, a wait for a
    # scheduler slot each time).
    occupancy_np = np.zeros(
        (max_frames, batch, num_classes) if need_grad else (0, batch, num_classes),
        dtype=lp.dtype,
    )
    # exp of anything below this is subnormal or 0 in the output dtype; subnormals put x86 on a
    # microcode path up to 40x slower, and such occupancies are far below any gradient's noise.
    floor = math.log(torch.finfo(log_probs.dtype).tiny) + 8.0
    def run(order: np.ndarray) -> None:
        _sequences(lp, labels, frames, label_counts, blank, order, floor, nll, occupancy_np)

    workers = min(torch.get_num_threads(), batch)
    if workers <= 1:
        run(np.arange(batch))
    else:
        _run_batch(run, frames * (2 * label_counts + 1), workers)
    return torch.from_numpy(nll), (torch.from_numpy(occupancy_np) if need_grad else None)


def scale_occupancy(occupancy: torch.Tensor, grad_nll: torch.Tensor) -> torch.Tensor:
    """Gradient of sum_b grad_nll[b] * nll_b w.r.t. log_probs: -grad_nll[b] * occupancy[:, b].

    Args:
        occupancy: (T, B, C) from :func:`ctc_forward_backward_cpu`.
        grad_nll: (B,) upstream gradient of each sequence's loss.

    Returns:
        (T, B, C) gradient, dtype of ``occupancy``.
    """
    scale = (-grad_nll).to(occupancy.dtype).numpy()[None, :, None]  # (1, B, 1)
    return torch.from_numpy(occupancy.numpy() * scale)
