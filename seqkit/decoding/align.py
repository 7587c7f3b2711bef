"""Forced alignment: where in time each label of a known sequence sits.

- :func:`ctc_align`: CTC Viterbi alignment (the single most probable CTC path that collapses to
  the labels), our own dynamic programme over the 2U+1 blank-interleaved states.
- :func:`transducer_align`: the most probable path through the transducer lattice (Graves 2012,
  figure 1) for the labels: at every frame/label node, either emit blank (next frame) or the next
  label (same frame).

Both return :class:`Segment` lists whose boundaries are monotone and cover the whole utterance:
the first segment starts at frame 0, each ends where the next starts, the last ends at T. A
label's segment starts at the frame where the path first emits it (frame 0 for the first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seqkit.decoding.protocol import TransducerLike
from seqkit.errors import TensorInputError

_NEG_INF = float("-inf")


@dataclass(frozen=True)
class Segment:
    """One aligned label.

    Attributes:
        label: label index (never the blank).
        start: first frame (inclusive), in model output frames.
        end: last frame (exclusive).
        emit: frame at which the best path emits the label (CTC: its most probable frame).
        log_prob: log-probability of the label at that frame (a per-label posterior score).
    """

    label: int
    start: int
    end: int
    emit: int
    log_prob: float


@dataclass(frozen=True)
class Alignment:
    """A forced alignment of one utterance.

    Attributes:
        segments: one per label, monotone and covering frames [0, frames).
        frames: number of output frames T.
        log_prob: log-probability of the best path.
        path: per frame, the label emitted there (CTC: the path's symbol per frame, blank
            included; transducer: the last label emitted at the frame, or blank).
    """

    segments: tuple[Segment, ...]
    frames: int
    log_prob: float
    path: tuple[int, ...]


def _covering(
    labels: Sequence[int], first: Sequence[int], emit: Sequence[int], scores: Sequence[float],
    frames: int,
) -> tuple[Segment, ...]:
    """Segments from each label's first frame: [first_i, first_{i+1}), first_0 = 0, last = T."""
    if not labels:
        return ()
    starts = [0, *first[1:]]
    ends = [*first[1:], frames]
    return tuple(
        Segment(int(lab), int(s), int(e), int(m), float(p))
        for lab, s, e, m, p in zip(labels, starts, ends, emit, scores, strict=True)
    )


def ctc_align(log_probs: torch.Tensor, labels: Sequence[int], *, blank: int = 0) -> Alignment:
    """Viterbi alignment of a label sequence to CTC log-probabilities.

    Args:
        log_probs: (T, V) float, one utterance's log-probabilities (valid frames only).
        labels: (U,) label indices, blank excluded.
        blank: index of the blank symbol. Default 0.

    Returns:
        The best path and its segments (one per label).

    Raises:
        TensorInputError: on a wrong shape, a blank or out-of-range label, or when T is too short
            for the labels (U plus the number of repeated neighbours).
    """
    if log_probs.dim() != 2:
        raise TensorInputError(
            f"expected log_probs (T, V) of one utterance, found {tuple(log_probs.shape)}: "
            "index the batch first"
        )
    lp = log_probs.detach().double().cpu().numpy()
    frames, vocab = lp.shape
    labels = [int(x) for x in labels]
    for lab in labels:
        if lab == blank or not 0 <= lab < vocab:
            raise TensorInputError(
                f"expected labels in [0, {vocab}) other than blank {blank}, found {lab}"
            )
    repeats = sum(1 for a, b in zip(labels, labels[1:], strict=False) if a == b)
    if frames < len(labels) + repeats:
        raise TensorInputError(
            f"cannot align {len(labels)} labels ({repeats} repeats) to {frames} frames: "
            "CTC needs at least one frame per label plus one blank between repeats"
        )
    if not labels:
        return Alignment((), frames, float(lp[:, blank].sum()), (blank,) * frames)
    ext = np.full(2 * len(labels) + 1, blank, dtype=np.int64)  # (S,) blank-interleaved states
    ext[1::2] = labels
    states = ext.shape[0]
    # a label state may skip the blank before it unless it repeats the label two states back
    skip = np.zeros(states, dtype=bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    alpha = np.full(states, _NEG_INF)
    alpha[0] = lp[0, blank]
    alpha[1] = lp[0, ext[1]]
    back = np.zeros((frames, states), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, frames):
        stay = alpha
        prev1 = np.concatenate(([_NEG_INF], alpha[:-1]))
        prev2 = np.where(skip, np.concatenate(([_NEG_INF, _NEG_INF], alpha[:-2])), _NEG_INF)
        choices = np.stack([stay, prev1, prev2])  # (3, S)
        back[t] = choices.argmax(axis=0)
        alpha = choices.max(axis=0) + lp[t, ext]
    end = states - 1 if alpha[-1] >= alpha[-2] else states - 2
    best = float(alpha[end])
    if best == _NEG_INF:
        raise TensorInputError(
            "no CTC path with finite probability collapses to these labels: "
            "check the labels against the model's vocabulary"
        )
    state_path = np.empty(frames, dtype=np.int64)
    s = end
    for t in range(frames - 1, -1, -1):
        state_path[t] = s
        s -= int(back[t, s])
    path = ext[state_path]
    first: list[int] = []
    emit: list[int] = []
    scores: list[float] = []
    for i in range(len(labels)):
        where = np.flatnonzero(state_path == 2 * i + 1)
        first.append(int(where[0]))
        peak = int(where[np.argmax(lp[where, labels[i]])])
        emit.append(peak)
        scores.append(float(lp[peak, labels[i]]))
    segments = _covering(labels, first, emit, scores, frames)
    return Alignment(segments, frames, best, tuple(int(x) for x in path))


def transducer_lattice(
    model: TransducerLike, f: torch.Tensor, labels: Sequence[int], *, blank: int = 0
) -> torch.Tensor:
    """Log-probabilities over the transducer lattice of one utterance.

    Args:
        model: a transducer model (:class:`~seqkit.decoding.protocol.TransducerLike`).
        f: (T, H) float, one utterance's encoder output (valid frames only).
        labels: (U,) label indices.
        blank: blank index, also the prediction network's start symbol. Default 0.

    Returns:
        (T, U+1, V) float32 log-softmax of the joint network.
    """
    device = f.device
    prefix = torch.tensor([[blank, *labels]], dtype=torch.long, device=device)  # (1, U+1)
    with torch.no_grad():
        g, _ = model.predict(prefix, None)  # (1, U+1, H)
        logits = model.joint(f[None, :, None, :], g[:, None, :, :])
    return torch.log_softmax(logits[0].float(), dim=-1)  # (T, U+1, V)


def transducer_align(lattice: torch.Tensor, labels: Sequence[int], *, blank: int = 0) -> Alignment:
    """Best path through a transducer lattice for a given label sequence.

    Args:
        lattice: (T, U+1, V) float log-probabilities (:func:`transducer_lattice`).
        labels: (U,) label indices, blank excluded.
        blank: index of the blank symbol. Default 0.

    Returns:
        The best path's log-probability and one segment per label; ``Segment.emit`` is the
        frame at which the path emits the label.

    Raises:
        TensorInputError: if the lattice does not fit the labels, or T is 0.
    """
    labels = [int(x) for x in labels]
    if lattice.dim() != 3 or lattice.shape[1] != len(labels) + 1:
        raise TensorInputError(
            f"expected a lattice (T, U+1, V) with U+1 = {len(labels) + 1}, found "
            f"{tuple(lattice.shape)}: build it with transducer_lattice for the same labels"
        )
    frames = lattice.shape[0]
    if frames == 0:
        raise TensorInputError("cannot align to 0 frames: the transducer needs at least one frame")
    lp = lattice.detach().double().cpu().numpy()
    n = len(labels)
    blank_lp = lp[:, :, blank]  # (T, U+1)
    label_lp = lp[np.arange(frames)[:, None], np.arange(n)[None, :], labels] if n else (
        np.zeros((frames, 0))
    )  # (T, U): emitting label u from node (t, u)
    alpha = np.full((frames, n + 1), _NEG_INF)
    horizontal = np.zeros((frames, n + 1), dtype=bool)  # reached by emitting a label at frame t
    for t in range(frames):
        vertical = np.full(n + 1, _NEG_INF)
        if t == 0:
            vertical[0] = 0.0
        else:
            vertical = alpha[t - 1] + blank_lp[t - 1]
        row = vertical.copy()
        for u in range(1, n + 1):
            across = row[u - 1] + label_lp[t, u - 1]
            if across > row[u]:
                row[u] = across
                horizontal[t, u] = True
        alpha[t] = row
    best = float(alpha[-1, n] + blank_lp[-1, n])
    emit = [0] * n
    t, u = frames - 1, n
    while u > 0:
        if horizontal[t, u]:
            emit[u - 1] = t
            u -= 1
        else:
            t -= 1
    scores = [float(label_lp[emit[i], i]) for i in range(n)]
    path = [blank] * frames
    for i in range(n):
        path[emit[i]] = labels[i]
    segments = _covering(labels, emit, emit, scores, frames)
    return Alignment(segments, frames, best, tuple(path))


def ctc_path_alignment(
    log_probs: torch.Tensor, path: Sequence[int], *, blank: int = 0
) -> Alignment:
    """The alignment given by a frame-level CTC path (e.g. greedy's argmax path).

    The argmax path is also the Viterbi path of the labels it collapses to, so greedy decoding
    gets its timings without a second dynamic programme.

    Args:
        log_probs: (T, V) float, one utterance's log-probabilities.
        path: (T,) symbol per frame.
        blank: index of the blank symbol. Default 0.

    Returns:
        Segments of the collapsed labels, monotone and covering [0, T).

    Raises:
        TensorInputError: if ``path`` is not one symbol per frame.
    """
    frames = log_probs.shape[0]
    if len(path) != frames:
        raise TensorInputError(
            f"expected a path of {frames} symbols (one per frame), found {len(path)}"
        )
    lp = log_probs.detach().double().cpu().numpy()
    symbols = np.asarray(path, dtype=np.int64)
    labels: list[int] = []
    first: list[int] = []
    emit: list[int] = []
    scores: list[float] = []
    for t in range(frames):
        k = int(symbols[t])
        if k == blank:
            continue
        if t > 0 and symbols[t - 1] == k:  # the same label continues
            if lp[t, k] > scores[-1]:
                emit[-1], scores[-1] = t, float(lp[t, k])
            continue
        labels.append(k)
        first.append(t)
        emit.append(t)
        scores.append(float(lp[t, k]))
    total = float(lp[np.arange(frames), symbols].sum()) if frames else 0.0
    return Alignment(
        _covering(labels, first, emit, scores, frames), frames, total, tuple(int(x) for x in path)
    )
