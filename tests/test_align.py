"""Forced alignment: equal to brute-force best paths, monotone and covering the utterance."""

from __future__ import annotations

import itertools

import pytest
import torch

from seqkit.decoding.align import ctc_align, ctc_path_alignment, transducer_align
from seqkit.decoding.greedy import ctc_greedy
from seqkit.errors import TensorInputError


def _brute_force_ctc(lp: torch.Tensor, labels: tuple[int, ...]) -> tuple[float, tuple[int, ...]]:
    """Best frame path collapsing to labels, by enumerating every path."""
    frames, vocab = lp.shape
    rows = lp.tolist()
    best, best_path = float("-inf"), ()
    for path in itertools.product(range(vocab), repeat=frames):
        collapsed = [k for i, k in enumerate(path) if (i == 0 or k != path[i - 1]) and k != 0]
        if tuple(collapsed) == labels:
            score = sum(rows[t][k] for t, k in enumerate(path))
            if score > best:
                best, best_path = score, path
    return best, best_path


def _brute_force_transducer(
    lattice: torch.Tensor, labels: tuple[int, ...]
) -> tuple[float, list[int]]:
    """Best lattice path: returns its score and the frame at which each label is emitted."""
    frames, n = lattice.shape[0], len(labels)
    lat = lattice.tolist()
    best, best_emit = float("-inf"), []
    for slots in itertools.combinations(range(frames + n - 1), n):
        t = u = 0
        score, emit = 0.0, []
        for step in range(frames + n):
            if step in slots:
                score += lat[t][u][labels[u]]
                emit.append(t)
                u += 1
            else:
                score += lat[t][u][0]
                t += 1
        if score > best:
            best, best_emit = score, emit
    return best, best_emit


def _assert_monotone_and_covering(alignment, frames: int, n: int) -> None:
    segments = alignment.segments
    assert len(segments) == n
    assert segments[0].start == 0 and segments[-1].end == frames
    for a, b in zip(segments, segments[1:], strict=False):
        assert a.end == b.start
    for s in segments:
        assert 0 <= s.start <= s.end <= frames
        assert 0 <= s.emit < frames


@pytest.mark.parametrize(("seed", "labels"), [(0, (1, 2)), (1, (2, 2)), (2, (1, 3, 1)), (3, (3,))])
def test_ctc_align_equals_brute_force_best_path_T6_V4(seed: int, labels: tuple[int, ...]) -> None:
    torch.manual_seed(seed)
    lp = torch.log_softmax(torch.randn(6, 4) * 2, dim=-1)
    best, path = _brute_force_ctc(lp, labels)
    alignment = ctc_align(lp, labels)
    assert alignment.log_prob == pytest.approx(best, abs=1e-6)
    assert alignment.path == path
    _assert_monotone_and_covering(alignment, 6, len(labels))
    assert [s.label for s in alignment.segments] == list(labels)
    for s in alignment.segments:  # the emission frame carries the label on the path
        assert alignment.path[s.emit] == s.label


def test_ctc_align_rejects_too_few_frames_and_bad_labels() -> None:
    lp = torch.log_softmax(torch.randn(3, 4), dim=-1)
    with pytest.raises(TensorInputError, match="at least one frame per label"):
        ctc_align(lp, [1, 1, 2])
    with pytest.raises(TensorInputError, match="other than blank"):
        ctc_align(lp, [0])
    with pytest.raises(TensorInputError, match=r"\(T, V\)"):
        ctc_align(lp[None], [1])
    assert ctc_align(lp, []).segments == ()


@pytest.mark.parametrize(("seed", "labels"), [(0, (1, 2)), (1, (2, 2, 1)), (2, (3,)), (3, ())])
def test_transducer_align_equals_brute_force_best_path_T4_V4(
    seed: int, labels: tuple[int, ...]
) -> None:
    torch.manual_seed(seed)
    lattice = torch.log_softmax(torch.randn(4, len(labels) + 1, 4) * 2, dim=-1)
    best, emit = _brute_force_transducer(lattice, labels)
    alignment = transducer_align(lattice, labels)
    assert alignment.log_prob == pytest.approx(best, abs=1e-5)
    assert [s.emit for s in alignment.segments] == emit
    if labels:
        _assert_monotone_and_covering(alignment, 4, len(labels))


def test_transducer_align_rejects_a_lattice_for_other_labels() -> None:
    with pytest.raises(TensorInputError, match="U\\+1"):
        transducer_align(torch.zeros(4, 2, 5), [1, 2])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ctc_argmax_path_alignment_equals_viterbi_of_greedy_labels(seed: int) -> None:
    torch.manual_seed(seed)
    lp = torch.log_softmax(torch.randn(30, 5) * 3, dim=-1)
    path = lp.argmax(dim=-1).tolist()
    labels = ctc_greedy(lp[None], torch.tensor([30]))[0]
    from_path = ctc_path_alignment(lp, path)
    viterbi = ctc_align(lp, labels)
    assert [s.label for s in from_path.segments] == labels
    assert from_path.log_prob == pytest.approx(viterbi.log_prob, abs=1e-6)
    assert [(s.start, s.end) for s in from_path.segments] == [
        (s.start, s.end) for s in viterbi.segments
    ]
    if labels:
        _assert_monotone_and_covering(from_path, 30, len(labels))
