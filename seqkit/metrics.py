"""Edit distance with substitution / deletion / insertion counts, alignment, PER, confusions.

Phone error rate (PER) follows the TIMIT convention: reference and hypothesis are folded to the
39-phone set (Lee & Hon 1989; ``q`` deleted), runs of ``sil`` are merged, and PER = (S + D + I)
/ N over the whole set, N the number of reference phones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from seqkit.data.phones import fold_for_scoring
from seqkit.errors import ConfigError

T = TypeVar("T", bound=Hashable)

CORRECT, SUBSTITUTION, DELETION, INSERTION = "=", "S", "D", "I"
AlignmentStep = tuple[str, T | None, T | None]


def edit_alignment(ref: Sequence[T], hyp: Sequence[T]) -> list[AlignmentStep[T]]:
    """A minimum-edit alignment of a hypothesis against a reference (Levenshtein, unit costs).

    Among equally short alignments the choice is deterministic: tracing back from the end, a
    match or substitution is preferred, then a deletion, then an insertion.

    Args:
        ref: reference tokens (length N).
        hyp: hypothesis tokens (length M).

    Returns:
        Steps in order, each ``(op, ref_token, hyp_token)``: ``("=", r, h)`` correct,
        ``("S", r, h)`` substitution, ``("D", r, None)`` deletion, ``("I", None, h)`` insertion.
        Ops other than ``"I"`` consume one reference token, so ``len(ref)`` = #= + #S + #D.
    """
    n, m = len(ref), len(hyp)
    # cost[i][j]: edits to turn ref[:i] into hyp[:j]
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        row, above = cost[i], cost[i - 1]
        row[0] = i
        r = ref[i - 1]
        for j in range(1, m + 1):
            diagonal = above[j - 1] + (r != hyp[j - 1])
            row[j] = min(diagonal, above[j] + 1, row[j - 1] + 1)
    steps: list[AlignmentStep[T]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            op = CORRECT if ref[i - 1] == hyp[j - 1] else SUBSTITUTION
            steps.append((op, ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            steps.append((DELETION, ref[i - 1], None))
            i -= 1
        else:
            steps.append((INSERTION, None, hyp[j - 1]))
            j -= 1
    steps.reverse()
    return steps


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations of one or more hypotheses against their references.

    Attributes:
        sub: substitutions.
        dels: deletions (reference tokens missing from the hypothesis).
        ins: insertions (hypothesis tokens with no reference token).
        ref_len: reference tokens N.
    """

    sub: int = 0
    dels: int = 0
    ins: int = 0
    ref_len: int = 0

    @property
    def errors(self) -> int:
        """S + D + I, the edit distance."""
        return self.sub + self.dels + self.ins

    @property
    def correct(self) -> int:
        """Reference tokens matched exactly."""
        return self.ref_len - self.sub - self.dels

    @property
    def rate(self) -> float:
        """(S + D + I) / N; 0.0 for an empty reference with no errors, inf with errors."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.ref_len

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.sub + other.sub,
            self.dels + other.dels,
            self.ins + other.ins,
            self.ref_len + other.ref_len,
        )


def error_counts(ref: Sequence[T], hyp: Sequence[T]) -> ErrorCounts:
    """Substitution, deletion and insertion counts of ``hyp`` against ``ref``.

    ``error_counts(ref, hyp).errors`` is the Levenshtein distance, as
    :func:`torchaudio.functional.edit_distance` computes it.
    """
    ops = Counter(op for op, _, _ in edit_alignment(ref, hyp))
    return ErrorCounts(ops[SUBSTITUTION], ops[DELETION], ops[INSERTION], len(ref))


def _pairs(
    refs: Iterable[Sequence[str]], hyps: Iterable[Sequence[str]]
) -> list[tuple[Sequence[str], Sequence[str]]]:
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ConfigError(
            f"expected one hypothesis per reference, found {len(refs)} references and "
            f"{len(hyps)} hypotheses"
        )
    return list(zip(refs, hyps, strict=True))


def phone_error_counts(
    refs: Iterable[Sequence[str]], hyps: Iterable[Sequence[str]], fold: int = 39
) -> ErrorCounts:
    """Summed edit counts over utterances after folding both sides to ``fold`` phones.

    Args:
        refs: reference phone sequences (usually 61-phone, from the manifest).
        hyps: hypothesis phone sequences, one per reference, from the 61, 48 or 39 set.
        fold: phone set to score on: 39 (standard; ``q`` deleted, ``sil`` runs merged), 48
            (same, on 48 classes) or 61 (no folding: symbols compared as they are). Default: 39.

    Raises:
        ConfigError: counts of refs and hyps differ, ``fold`` is not 39/48/61, or a phone is not
            a TIMIT symbol (when folding).
    """
    if fold not in (39, 48, 61):
        raise ConfigError(f"cannot score on {fold} phones: choose one of 39, 48, 61")
    total = ErrorCounts()
    for ref, hyp in _pairs(refs, hyps):
        total = total + error_counts(fold_for_scoring(ref, fold), fold_for_scoring(hyp, fold))
    return total


def phone_error_rate(
    refs: Iterable[Sequence[str]], hyps: Iterable[Sequence[str]], fold: int = 39
) -> float:
    """Phone error rate (S + D + I) / N over a set, as a fraction (0.186 = 18.6 %).

    See :func:`phone_error_counts` for the folding and the arguments.
    """
    return phone_error_counts(refs, hyps, fold=fold).rate


def confusion_counts(
    pairs: Iterable[tuple[Sequence[T], Sequence[T]]],
) -> Counter[tuple[T | None, T | None]]:
    """How often each reference token was recognized as each hypothesis token.

    Args:
        pairs: ``(ref, hyp)`` token sequences (fold phones first to get 39-phone confusions).

    Returns:
        Counts keyed by ``(ref_token, hyp_token)`` from the alignments: ``(r, r)`` correct,
        ``(r, h)`` substitution, ``(r, None)`` deletion, ``(None, h)`` insertion.
    """
    counts: Counter[tuple[T | None, T | None]] = Counter()
    for ref, hyp in pairs:
        counts.update((r, h) for _, r, h in edit_alignment(ref, hyp))
    return counts


def phone_error_counts_without_silence(
    refs: Iterable[Sequence[str]], hyps: Iterable[Sequence[str]]
) -> ErrorCounts:
    """39-phone edit counts on the spoken phones only: ``sil`` dropped from both sides.

    Both sides are folded as :func:`phone_error_counts` folds them (61, 48 or 39 symbols in), then
    every ``sil`` is removed, so neither a missed pause nor a closure (folded to ``sil``) counts:
    how the #17 peer check compares recognizers whose silence conventions differ.

    Raises:
        ConfigError: counts of refs and hyps differ, or a phone is not a TIMIT symbol.
    """
    total = ErrorCounts()
    for ref, hyp in _pairs(refs, hyps):
        spoken_ref = [p for p in fold_for_scoring(ref) if p != "sil"]
        spoken_hyp = [p for p in fold_for_scoring(hyp) if p != "sil"]
        total = total + error_counts(spoken_ref, spoken_hyp)
    return total
