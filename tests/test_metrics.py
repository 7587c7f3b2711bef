"""Edit distance, alignment, PER folding and confusion counts."""

from __future__ import annotations

import random

import pytest
import torch
import torchaudio.functional as AF

from seqkit.errors import ConfigError
from seqkit.metrics import (
    ErrorCounts,
    confusion_counts,
    edit_alignment,
    error_counts,
    phone_error_counts,
    phone_error_rate,
)


@pytest.mark.parametrize(
    ("ref", "hyp", "sub", "dels", "ins"),
    [
        ("abc", "abc", 0, 0, 0),
        ("abc", "axc", 1, 0, 0),
        ("abc", "ac", 0, 1, 0),
        ("abc", "abxc", 0, 0, 1),
        ("", "ab", 0, 0, 2),
        ("ab", "", 0, 2, 0),
        ("kitten", "sitting", 2, 0, 1),
        ("abcd", "bcde", 0, 1, 1),
    ],
)
def test_error_counts_on_hand_cases(ref, hyp, sub, dels, ins):
    counts = error_counts(list(ref), list(hyp))
    assert (counts.sub, counts.dels, counts.ins, counts.ref_len) == (sub, dels, ins, len(ref))


def test_alignment_steps_name_each_operation():
    assert edit_alignment("abcd", "axcd") == [
        ("=", "a", "a"), ("S", "b", "x"), ("=", "c", "c"), ("=", "d", "d"),
    ]
    assert edit_alignment("abcd", "abd") == [
        ("=", "a", "a"), ("=", "b", "b"), ("D", "c", None), ("=", "d", "d"),
    ]
    assert edit_alignment("ac", "abc") == [("=", "a", "a"), ("I", None, "b"), ("=", "c", "c")]
    assert edit_alignment([], []) == []


def test_alignment_ties_are_broken_the_same_way_every_time():
    # "ab" -> "ba": two substitutions, or delete+insert; cost 2 either way. Traced back from the
    # end the diagonal is preferred, so the answer is two substitutions.
    assert edit_alignment("ab", "ba") == [("S", "a", "b"), ("S", "b", "a")]
    # "abcd" -> "axd": the substitution goes as late as it can (c -> x), b is deleted.
    assert edit_alignment("abcd", "axd") == [
        ("=", "a", "a"), ("D", "b", None), ("S", "c", "x"), ("=", "d", "d"),
    ]
    assert edit_alignment("a", "") == [("D", "a", None)]
    assert edit_alignment("aa", "a") == [("D", "a", None), ("=", "a", "a")]


def test_alignment_reconstructs_both_sequences():
    rng = random.Random(1)
    for _ in range(200):
        ref = [rng.randrange(4) for _ in range(rng.randrange(8))]
        hyp = [rng.randrange(4) for _ in range(rng.randrange(8))]
        steps = edit_alignment(ref, hyp)
        assert [r for _, r, _ in steps if r is not None] == ref
        assert [h for _, _, h in steps if h is not None] == hyp
        assert all((op == "=") == (r == h) for op, r, h in steps if op in "=S")


def test_error_total_equals_torchaudio_edit_distance_on_random_sequences():
    rng = random.Random(0)
    for trial in range(500):
        vocab = rng.choice([2, 3, 5, 40])
        ref = [rng.randrange(vocab) for _ in range(rng.randrange(0, 25))]
        hyp = [rng.randrange(vocab) for _ in range(rng.randrange(0, 25))]
        expected = AF.edit_distance(torch.tensor(ref, dtype=torch.long),
                                    torch.tensor(hyp, dtype=torch.long))
        assert error_counts(ref, hyp).errors == expected, (trial, ref, hyp)


def test_error_counts_add_and_give_a_rate():
    total = ErrorCounts(1, 2, 3, 10) + ErrorCounts(0, 1, 0, 10)
    assert total == ErrorCounts(1, 3, 3, 20)
    assert total.errors == 7 and total.rate == pytest.approx(0.35) and total.correct == 16
    assert ErrorCounts().rate == 0.0 and ErrorCounts(ins=1).rate == float("inf")


def test_per_folds_61_phone_reference_against_39_phone_hypothesis():
    ref = ["h#", "bcl", "b", "ix", "q", "ao", "pau", "h#"]
    # 39-fold: sil b ih aa sil (h#, bcl -> sil merged; q deleted; pau h# -> sil merged)
    hyp = ["sil", "b", "ih", "aa", "sil"]
    assert phone_error_rate([ref], [hyp]) == 0.0
    counts = phone_error_counts([ref], [["sil", "p", "ih", "sil"]])
    assert (counts.sub, counts.dels, counts.ins, counts.ref_len) == (1, 1, 0, 5)
    # The same pair scored on 61 phones: no folding, every symbol counts.
    assert phone_error_counts([ref], [ref], fold=61).ref_len == len(ref)
    assert phone_error_rate([ref], [hyp], fold=61) > 0.5


def test_per_over_a_set_is_pooled_not_averaged():
    refs = [["aa", "b"], ["aa", "b", "d", "iy"]]
    hyps = [["aa"], ["aa", "b", "d", "iy"]]
    assert phone_error_rate(refs, hyps) == pytest.approx(1 / 6)


def test_per_rejects_mismatched_inputs_and_unknown_phones():
    with pytest.raises(ConfigError, match="2 references and 1 hypotheses"):
        phone_error_rate([["aa"], ["b"]], [["aa"]])
    with pytest.raises(ConfigError, match="unknown phone"):
        phone_error_rate([["aa"]], [["xyz"]])
    with pytest.raises(ConfigError, match="choose one of 39, 48, 61"):
        phone_error_rate([["aa"]], [["aa"]], fold=40)


def test_confusion_counts_tally_aligned_pairs():
    counts = confusion_counts([("abc", "abd"), ("ab", "b")])
    assert counts[("a", "a")] == 1 and counts[("b", "b")] == 2
    assert counts[("c", "d")] == 1 and counts[("a", None)] == 1
    assert sum(counts.values()) == 5


def test_timed_folding_gives_q_to_its_neighbour_merges_sil_and_matches_scoring() -> None:
    from seqkit.data.phones import fold_for_scoring
    from seqkit.decoding.results import PhoneSegment, fold_segments

    phones = ["q", "h#", "pau", "b", "q", "ae", "tcl", "t", "h#"]
    segments = [PhoneSegment(p, i * 0.1, (i + 1) * 0.1, 0.1 * (i + 1)) for i, p in
                enumerate(phones)]
    folded = fold_segments(segments, to=39)
    assert [s.phone for s in folded] == fold_for_scoring(phones) == [
        "sil", "b", "ae", "sil", "t", "sil"
    ]
    assert folded[0].start == 0.0 and folded[0].end == pytest.approx(0.3)  # q, h#, pau
    assert folded[0].score == pytest.approx(0.3)  # the best of the merged run
    assert folded[1].end == pytest.approx(0.5)  # b takes the q after it
    assert folded[-1].end == pytest.approx(0.9)
    assert all(a.end == b.start for a, b in zip(folded, folded[1:], strict=False))
    assert [s.phone for s in fold_segments(segments, to=61)] == phones


@pytest.mark.parametrize("to", [61, 48, 39])
def test_scoring_folder_fed_in_pieces_folds_as_the_whole_sequence(to) -> None:
    from seqkit.data.phones import ScoringFolder, fold_for_scoring

    phones = ["h#", "q", "pau", "b", "q", "ae", "tcl", "pau", "t", "epi", "h#", "q"]
    for cut in range(len(phones) + 1):  # a stream delivers the phones in two pieces
        folder = ScoringFolder(to)
        assert folder.fold(phones[:cut]) + folder.fold(phones[cut:]) == fold_for_scoring(
            phones, to
        )
