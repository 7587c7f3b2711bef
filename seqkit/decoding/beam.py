"""Beam search for CTC and transducer models.

- :func:`ctc_beam_search`: CTC prefix beam search (Graves 2012, "Supervised Sequence Labelling
  with Recurrent Neural Networks", ch. 7.5; Hannun et al. 2014 for the LM shallow fusion), with an
  optional phone n-gram LM weighted by ``lm_weight``.
- :func:`transducer_beam_search`: the beam search of Graves 2012, "Sequence Transduction with
  Recurrent Neural Networks", section 2.6, with its prefix merging; any number of labels per
  frame. Exact (the sum over alignments of each kept sequence) when nothing is pruned.
- :func:`transducer_beam_search_batched`: a time-synchronous variant batched over utterances and
  hypotheses, emitting up to ``max_symbols_per_frame`` labels per frame (default 5) and merging
  hypotheses with equal labels (the "modified beam search" of k2 / icefall, described in Kang et
  al. 2022, "Fast and parallel decoding for transducer", extended to several labels per frame).
  Much faster on long files; exact within that cap when nothing is pruned.

Scores are natural-log probabilities. Every function returns, per utterance, the kept
hypotheses best first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seqkit.decoding.greedy import (
    CTC_INPUT,
    TRANSDUCER_INPUT,
    check_max_symbols,
    checked_lengths,
)
from seqkit.decoding.protocol import STATE_BATCH_AXIS, TransducerLike, select_state
from seqkit.errors import ConfigError
from seqkit.models.transducer import LSTMState

# lm(context labels, next label or None for end of sequence) -> natural-log probability. An LM
# that reads only the last few labels says how many in an int attribute ``context`` (an n-gram:
# n - 1, see PhoneNgram.label_scorer); the step-wise searches then drop older decided labels from
# their hypotheses, so a stream's hypotheses and memo tables stay small however long it runs.
LabelLM = Callable[[Sequence[int], int | None], float]

_NEG_INF = float("-inf")


@dataclass(frozen=True)
class BeamHypothesis:
    """One beam-search result.

    Attributes:
        labels: label indices, blank excluded.
        score: total score used for ranking: acoustic log-probability plus ``lm_weight`` times
            the LM log-probability plus the insertion bonus (and length-normalized when asked).
        acoustic: log-probability of ``labels`` under the acoustic model alone (summed over the
            alignments the search kept).
    """

    labels: tuple[int, ...]
    score: float
    acoustic: float


def _check_beam(beam: int) -> None:
    if beam < 1:
        raise ConfigError(f"expected beam >= 1, found {beam}: use 1 (greedy-like) or more")


def _logaddexp(a: float, b: float) -> float:
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


class FusionScorer:
    """Shallow-fusion score of label sequences: ``lm_weight`` x LM log-prob + bonus per label.

    The one LM scorer of every beam search here (icefall's ``LmScorer``). The score depends on
    the labels only, not on the alignment, so a search keeps each hypothesis's acoustic
    log-probability exact and ranks by acoustic + fusion score. Scores are memoized per prefix:
    the transducer searches read whole rows (:meth:`row`, every next label at once), the CTC
    prefix search single labels (:meth:`extension`, only the labels it tries); a search calls
    :meth:`retain` after each frame so that only its live prefixes keep theirs.

    Args:
        lm: label LM (see :data:`LabelLM`), or None.
        lm_weight: weight of the LM log-probability; 0 ignores the LM.
        insertion_bonus: added per label (not for the end of sequence).
        vocab: V, labels per :meth:`row` (blank included; 0 if rows are never read).
        blank: index of the blank, which scores 0 in a row. Default 0.
    """

    def __init__(self, lm: LabelLM | None, lm_weight: float, insertion_bonus: float,
                 vocab: int, blank: int = 0) -> None:
        self.lm = lm if lm_weight != 0.0 else None
        self.lm_weight = lm_weight
        self.bonus = insertion_bonus
        self.vocab = vocab
        self.blank = blank
        self.active = self.lm is not None or insertion_bonus != 0.0
        self._rows: dict[tuple[int, ...], np.ndarray] = {}
        self._totals: dict[tuple[int, ...], float] = {(): 0.0}
        self._labels: dict[tuple[int, ...], dict[int | None, float]] = {}

    def row(self, prefix: tuple[int, ...]) -> np.ndarray:
        """(V,) float64 score of appending each label to ``prefix`` (0 for the blank)."""
        cached = self._rows.get(prefix)
        if cached is None:
            cached = np.full(self.vocab, self.bonus, dtype=np.float64)
            if self.lm is not None:
                for k in range(self.vocab):
                    if k != self.blank:
                        cached[k] += self.lm_weight * self.lm(prefix, k)
            cached[self.blank] = 0.0
            self._rows[prefix] = cached
        return cached

    def extension(self, prefix: tuple[int, ...], label: int | None) -> float:
        """Score of appending ``label`` to ``prefix`` (None: of ending the sequence there)."""
        bonus = self.bonus if label is not None else 0.0
        if self.lm is None:
            return bonus
        scores = self._labels.setdefault(prefix, {})
        if label not in scores:
            scores[label] = self.lm_weight * self.lm(prefix, label) + bonus
        return scores[label]

    def total(self, labels: tuple[int, ...]) -> float:
        """Fusion score of the prefix ``labels`` (end of sequence not included)."""
        if not self.active:
            return 0.0
        known = len(labels)
        while known and labels[:known] not in self._totals:
            known -= 1
        score = self._totals[labels[:known]]
        for i in range(known, len(labels)):
            score += float(self.row(labels[:i])[labels[i]])
            self._totals[labels[: i + 1]] = score
        return score

    def final(self, labels: tuple[int, ...]) -> float:
        """Fusion score of a finished sequence: its prefix score plus the LM's end of sequence."""
        end = self.lm_weight * self.lm(labels, None) if self.lm is not None else 0.0
        return self.total(labels) + end

    def fresh(self) -> FusionScorer:
        """The same scorer with empty memo tables (a search prunes and re-keys its own)."""
        return FusionScorer(self.lm, self.lm_weight, self.bonus, self.vocab, self.blank)

    def retain(self, live: Callable[[tuple[int, ...]], bool], cut: int = 0) -> None:
        """Keep the memo entries of the prefixes ``live`` accepts, their first ``cut`` labels off.

        A prefix's total stays the sum from the first label, so scores do not change.
        """
        self._rows = {key[cut:]: row for key, row in self._rows.items() if live(key)}
        self._totals = {key[cut:]: total for key, total in self._totals.items() if live(key)}
        self._labels = {key[cut:]: row for key, row in self._labels.items() if live(key)}

    def memo_size(self) -> int:
        """Memoized rows, totals and single-label scores."""
        return (len(self._rows) + len(self._totals)
                + sum(len(scores) for scores in self._labels.values()))


def _vocab_size(model: TransducerLike, f: torch.Tensor, blank: int) -> int:
    """V of a transducer: from one joint call on the start symbol."""
    start = torch.full((1, 1), blank, dtype=torch.long, device=f.device)
    g, _ = model.predict(start, None)  # (1, 1, H_g)
    return int(model.joint(f[:1, :1, None, :], g[:, None]).shape[-1])


def ctc_beam_search(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    *,
    beam: int = 8,
    blank: int = 0,
    lm: LabelLM | None = None,
    lm_weight: float = 0.0,
    insertion_bonus: float = 0.0,
    prune_top_k: int | None = None,
) -> list[list[BeamHypothesis]]:
    """CTC prefix beam search with optional LM shallow fusion.

    Each prefix keeps two log-probabilities, ending in blank and ending in a label, so that the
    sum over all CTC alignments of a prefix is tracked exactly while it stays in the beam. With
    ``beam`` at least the number of possible prefixes, the result is the most probable labelling.

    Args:
        log_probs: (B, T, V) float, per-frame log-probabilities (``model.log_probs``).
        lengths: (B,) int, valid frames per utterance.
        beam: prefixes kept after every frame. Default 8.
        blank: index of the blank symbol. Default 0.
        lm: optional label LM, ``lm(context, label) -> log P(label | context)``, and
            ``lm(context, None)`` the end-of-sequence log-probability (see
            :meth:`seqkit.decoding.ngram.PhoneNgram.label_scorer`).
        lm_weight: weight of the LM log-probability. Default 0 (LM ignored).
        insertion_bonus: added per emitted label, to balance the LM's bias towards short
            outputs. Default 0.
        prune_top_k: only extend prefixes by the ``prune_top_k`` most probable labels of each
            frame. Default None: ``beam`` labels (all labels when ``beam`` >= V).

    Returns:
        Per utterance, up to ``beam`` hypotheses, best first.

    Raises:
        TensorInputError: if the shapes or lengths do not fit.
        ConfigError: if ``beam`` < 1.
    """
    _check_beam(beam)
    valid = checked_lengths(log_probs, lengths, "ctc_beam_search", CTC_INPUT)
    batch, _, vocab = log_probs.shape
    top_k = min(vocab, prune_top_k if prune_top_k is not None else max(beam, 1) + 1)
    lp_all = log_probs.detach().float().cpu().numpy()
    use_lm = lm is not None and lm_weight != 0.0
    return [
        _ctc_beam_one(lp_all[b, : valid[b]], beam, blank, lm if use_lm else None, lm_weight,
                      insertion_bonus, top_k)
        for b in range(batch)
    ]


def _ctc_beam_one(
    lp: np.ndarray,
    beam: int,
    blank: int,
    lm: LabelLM | None,
    lm_weight: float,
    insertion_bonus: float,
    top_k: int,
) -> list[BeamHypothesis]:
    """Prefix beam search over one utterance's (T, V) log-probabilities."""
    search = CTCPrefixBeamSearch(
        beam=beam, blank=blank, lm=lm, lm_weight=lm_weight, insertion_bonus=insertion_bonus,
        top_k=top_k,
    )
    search.step(lp)
    return search.results()


def common_prefix(prefixes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """Longest prefix shared by all ``prefixes``: labels no later frame can change."""
    if not prefixes:
        return ()
    first = min(prefixes, key=len)
    for i, label in enumerate(first):
        if any(p[i] != label for p in prefixes):
            return first[:i]
    return first


def _lm_context(lm: LabelLM | None) -> int | None:
    """Labels of history ``lm`` reads (0 without an LM); None if it does not say."""
    if lm is None:
        return 0
    context = getattr(lm, "context", None)
    return context if isinstance(context, int) and context >= 0 else None


class _Committed:
    """Decided labels a step-wise search has dropped from the front of its hypotheses.

    Hypotheses are keyed by their labels after these; a search drops the labels every kept
    hypothesis starts with once more than ``keep`` of them are shared (``keep``: the history
    the search's scores still read; None: never drop).
    """

    def __init__(self, keep: int | None) -> None:
        self.keep = keep
        self.labels: list[int] = []

    def drop(self, keys: Sequence[tuple[int, ...]]) -> int:
        """Move the shared labels of ``keys`` beyond ``keep`` here; how many to cut off keys."""
        if self.keep is None:
            return 0
        shared = common_prefix(keys)
        cut = len(shared) - self.keep
        if cut <= 0:
            return 0
        self.labels.extend(shared[:cut])
        return cut

    def full(self, key: tuple[int, ...]) -> tuple[int, ...]:
        """The whole label sequence of the hypothesis keyed ``key``."""
        return (*self.labels, *key) if self.labels else key

    def decided_since(self, start: int, keys: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        """Decided labels from position ``start`` on (those of ``keys``'s common prefix too)."""
        shared = common_prefix(keys)
        done = len(self.labels)
        return (*self.labels[start:], *shared[max(start - done, 0) :])


class CTCPrefixBeamSearch:
    """CTC prefix beam search over one stream, a chunk of frames at a time.

    :func:`ctc_beam_search` is this search fed all frames at once; feeding them in chunks gives
    the same hypotheses. Arguments as :func:`ctc_beam_search` (``top_k``: labels tried per frame).
    """

    def __init__(
        self, *, beam: int, blank: int = 0, lm: LabelLM | None = None, lm_weight: float = 0.0,
        insertion_bonus: float = 0.0, top_k: int,
    ) -> None:
        _check_beam(beam)
        self.beam, self.blank, self.top_k = beam, blank, top_k
        # the LM + bonus of appending a label, memoized for the kept prefixes only
        self.fusion = FusionScorer(lm, lm_weight, insertion_bonus, 0, blank)
        # prefix -> [log P(prefix, ends in blank), log P(prefix, ends in label), LM + bonus];
        # prefixes are keyed after the labels in ``committed`` (a label repeat needs the last)
        self.beams: dict[tuple[int, ...], list[float]] = {(): [0.0, _NEG_INF, 0.0]}
        context = _lm_context(self.fusion.lm)
        self.committed = _Committed(max(context, 1) if context is not None else None)

    def decided_since(self, start: int) -> tuple[int, ...]:
        """The decided labels (every kept hypothesis starts with them) from label ``start`` on.

        Final whatever the later frames hold; cheap however long the stream.
        """
        return self.committed.decided_since(start, list(self.beams))

    def memo_size(self) -> int:
        """Entries in the LM memo table (bounded by ``beam`` x V)."""
        return self.fusion.memo_size()

    def held_labels(self) -> int:
        """Labels the longest kept prefix holds (decided ones beyond the LM's context dropped)."""
        return max(map(len, self.beams))

    def step(self, lp: np.ndarray) -> None:
        """Advance over (T, V) log-probabilities of the next frames."""
        vocab = lp.shape[1]
        for t in range(lp.shape[0]):
            row = lp[t]
            if self.top_k < vocab:
                candidates = [int(k) for k in np.argpartition(-row, self.top_k - 1)[: self.top_k]]
            else:
                candidates = list(range(vocab))
            self._keep(self._frame(row, [k for k in candidates if k != self.blank]))

    def _keep(self, beams: dict[tuple[int, ...], list[float]]) -> None:
        """Keep ``beams`` and only the LM scores they can still use; drop decided labels."""
        cut = self.committed.drop(list(beams))
        self.beams = {prefix[cut:]: cell for prefix, cell in beams.items()} if cut else beams
        self.fusion.retain(lambda prefix: prefix in beams, cut)

    def _frame(self, row: np.ndarray, candidates: list[int]) -> dict[tuple[int, ...], list[float]]:
        blank_lp = float(row[self.blank])
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_b, p_nb, extra) in self.beams.items():
            total = _logaddexp(p_b, p_nb)
            # stay on the prefix: emit blank, or repeat the last label (collapsed)
            cell = nxt.setdefault(prefix, [_NEG_INF, _NEG_INF, extra])
            cell[0] = _logaddexp(cell[0], total + blank_lp)
            if prefix:
                last = prefix[-1]
                cell[1] = _logaddexp(cell[1], p_nb + float(row[last]))
            for k in candidates:
                new = (*prefix, k)
                cell_new = nxt.get(new)
                if cell_new is None:
                    cell_new = [_NEG_INF, _NEG_INF, extra + self.fusion.extension(prefix, k)]
                    nxt[new] = cell_new
                # a repeated label needs a blank in between to count as a new label
                source = p_b if prefix and k == prefix[-1] else total
                cell_new[1] = _logaddexp(cell_new[1], source + float(row[k]))
        ranked = sorted(
            nxt.items(), key=lambda item: _logaddexp(item[1][0], item[1][1]) + item[1][2],
            reverse=True,
        )
        return dict(ranked[: self.beam])

    def results(self) -> list[BeamHypothesis]:
        """The kept hypotheses, best first (the LM's end-of-sequence term added)."""
        results = []
        for prefix, (p_b, p_nb, extra) in self.beams.items():
            acoustic = _logaddexp(p_b, p_nb)
            end = self.fusion.extension(prefix, None) if self.fusion.lm is not None else 0.0
            results.append(BeamHypothesis(self.committed.full(prefix), acoustic + extra + end,
                                          acoustic))
        results.sort(key=lambda h: h.score, reverse=True)
        return results


class _PredictorCache:
    """Prediction-network outputs per label prefix, computed once each (batch of one).

    A prefix is computed from its longest cached prefix, so the search may forget any entry but
    the live hypotheses' (:meth:`retain`).
    """

    def __init__(self, model: TransducerLike, blank: int, device: torch.device) -> None:
        self.model = model
        self.blank = blank
        self.device = device
        start = torch.full((1, 1), blank, dtype=torch.long, device=device)
        g, state = model.predict(start, None)  # g: (1, 1, H)
        self.cache: dict[tuple[int, ...], tuple[torch.Tensor, LSTMState]] = {(): (g, state)}

    def get(self, prefix: tuple[int, ...]) -> torch.Tensor:
        if prefix not in self.cache:
            self.get(prefix[:-1])
            _, state = self.cache[prefix[:-1]]
            label = torch.full((1, 1), prefix[-1], dtype=torch.long, device=self.device)
            self.cache[prefix] = self.model.predict(label, state)
        return self.cache[prefix][0]

    def retain(self, live: Callable[[tuple[int, ...]], bool], cut: int = 0) -> None:
        """Keep the entries of the prefixes ``live`` accepts, their first ``cut`` labels off."""
        self.cache = {key[cut:]: out for key, out in self.cache.items() if live(key)}


def transducer_beam_search(
    model: TransducerLike,
    f: torch.Tensor,
    lengths: torch.Tensor,
    *,
    beam: int = 8,
    blank: int = 0,
    lm: LabelLM | None = None,
    lm_weight: float = 0.0,
    insertion_bonus: float = 0.0,
    length_norm: bool = False,
    max_expansions_per_frame: int | None = None,
) -> list[list[BeamHypothesis]]:
    """Graves (2012) transducer beam search, one utterance at a time, with LM shallow fusion.

    At each frame, the hypotheses of the previous frame first absorb the probability of being
    reached from their prefixes within the frame (prefix merging); then the most probable
    hypothesis is repeatedly taken out, its blank-terminated version moves to the next beam and
    its one-label extensions join the candidates, until ``beam`` finished hypotheses beat every
    candidate left. With a beam large enough that nothing is pruned, each kept sequence carries
    its exact probability summed over alignments.

    Shallow fusion ranks hypotheses by acoustic log-probability plus ``lm_weight`` times the LM
    log-probability of their labels plus ``insertion_bonus`` per label. That score depends on
    the labels only, so the acoustic sums stay exact; the LM's end of sequence is added when the
    final hypotheses are ranked.

    Args:
        model: transducer model (:class:`~seqkit.decoding.protocol.TransducerLike`).
        f: (B, T, H) float, encoder output.
        lengths: (B,) int, valid encoder frames per utterance.
        beam: hypotheses kept per frame (W in the paper). Default 8.
        blank: index of the blank symbol. Default 0.
        lm: optional label LM, as for :func:`ctc_beam_search`.
        lm_weight: weight of the LM log-probability. Default 0 (LM ignored).
        insertion_bonus: added per emitted label. Default 0.
        length_norm: rank the final hypotheses by log-probability divided by their length, as
            the paper does. Default False: by log-probability (the most probable sequence).
        max_expansions_per_frame: safety cap on the hypotheses expanded in one frame. Default
            None: ``4 * beam + 16``.

    Returns:
        Per utterance, up to ``beam`` hypotheses, best first.

    Raises:
        TensorInputError: if the shapes or lengths do not fit.
        ConfigError: if ``beam`` < 1.
    """
    _check_beam(beam)
    valid = checked_lengths(f, lengths, "transducer_beam_search", TRANSDUCER_INPUT)
    batch = f.shape[0]
    cap = max_expansions_per_frame if max_expansions_per_frame is not None else 4 * beam + 16
    out = []
    with torch.no_grad():
        fusing = (lm is not None and lm_weight != 0.0) or insertion_bonus != 0.0
        vocab = _vocab_size(model, f, blank) if fusing and batch else 0
        for b in range(batch):
            fusion = FusionScorer(lm, lm_weight, insertion_bonus, vocab, blank)
            out.append(_transducer_beam_one(model, f[b, : valid[b]], beam, blank, length_norm,
                                            cap, fusion))
    return out


def _transducer_beam_one(
    model: TransducerLike, f: torch.Tensor, beam: int, blank: int, length_norm: bool, cap: int,
    fusion: FusionScorer,
) -> list[BeamHypothesis]:
    """Graves's beam search over one utterance's (T, H) encoder output."""
    search = TransducerBeamSearch(model, beam=beam, blank=blank, cap=cap, fusion=fusion,
                                  device=f.device)
    search.step(f)
    return search.results(length_norm=length_norm)


class TransducerBeamSearch:
    """Graves's transducer beam search over one stream, a chunk of frames at a time.

    :func:`transducer_beam_search` is this search fed all frames at once; feeding them in chunks
    gives the same hypotheses. ``cap``: most hypotheses expanded in one frame; ``fusion``: the
    LM shallow-fusion scorer (None: acoustic scores only).
    """

    def __init__(
        self, model: TransducerLike, *, beam: int, blank: int = 0, cap: int | None = None,
        fusion: FusionScorer | None = None, device: torch.device | str = "cpu",
    ) -> None:
        _check_beam(beam)
        self.model, self.beam, self.blank = model, beam, blank
        fusion = fusion if fusion is not None else FusionScorer(None, 0.0, 0.0, 0, blank)
        self.fusion = fusion.fresh()  # its memo tables are re-keyed with this search's
        self.cap = cap if cap is not None else 4 * beam + 16
        self.predictor = _PredictorCache(model, blank, torch.device(device))
        # prefix -> log P(prefix emitted by the end of the previous frame); prefixes are keyed
        # after the labels in ``committed`` (the prediction state carries their history)
        self.kept: dict[tuple[int, ...], float] = {(): 0.0}
        self.committed = _Committed(_lm_context(self.fusion.lm))

    def decided_since(self, start: int) -> tuple[int, ...]:
        """The decided labels (every kept hypothesis starts with them) from label ``start`` on.

        Final whatever the later frames hold; cheap however long the stream.
        """
        return self.committed.decided_since(start, list(self.kept))

    def memo_size(self) -> int:
        """Entries in the prediction-network and fusion memo tables."""
        return len(self.predictor.cache) + self.fusion.memo_size()

    def held_labels(self) -> int:
        """Labels the longest kept hypothesis holds (decided ones past the LM context dropped)."""
        return max(map(len, self.kept))

    def step(self, f: torch.Tensor) -> None:
        """Advance over (T, H) encoder output of the next frames."""
        for t in range(f.shape[0]):
            self._keep(self._frame(f[t].reshape(1, 1, 1, -1)))  # (1, 1, 1, H)

    def _keep(self, kept: dict[tuple[int, ...], float]) -> None:
        """Keep ``kept`` and the memo entries the next frame can use; drop decided labels.

        The next frame reads the kept prefixes, the prefixes between a kept hypothesis and a kept
        proper prefix of it (prefix merging), and expands kept ones by one label.
        """
        between: set[tuple[int, ...]] = set()
        shortest = min(map(len, kept))
        for y in kept:
            start = next((i for i in range(shortest, len(y)) if y[:i] in kept), len(y))
            between.update(y[:i] for i in range(start, len(y) + 1))

        def live(key: tuple[int, ...]) -> bool:
            return key in between or key[:-1] in kept

        cut = self.committed.drop(list(kept))
        self.predictor.retain(live, cut)
        self.fusion.retain(live, cut)
        self.kept = {y[cut:]: logp for y, logp in kept.items()} if cut else kept

    def _frame(self, ft: torch.Tensor) -> dict[tuple[int, ...], float]:
        model, predictor, kept, beam, blank = (
            self.model, self.predictor, self.kept, self.beam, self.blank
        )
        fused = self.fusion.total  # ranking adds the labels' fusion score to the acoustic one
        logp_cache: dict[tuple[int, ...], np.ndarray] = {}

        def label_log_probs(prefix: tuple[int, ...]) -> np.ndarray:
            if prefix not in logp_cache:
                g = predictor.get(prefix).reshape(1, 1, 1, -1)  # (1, 1, 1, H)
                logits = model.joint(ft, g).reshape(-1)  # (V,)
                logp_cache[prefix] = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
            return logp_cache[prefix]

        # prefix merging: add the paths that reach y from a kept proper prefix within the frame
        candidates = dict(kept)
        by_length = sorted(kept, key=len)
        for y in by_length:
            for y_hat in by_length:
                if len(y_hat) >= len(y):
                    break
                if y[: len(y_hat)] != y_hat:
                    continue
                step = kept[y_hat]
                for i in range(len(y_hat), len(y)):
                    step += float(label_log_probs(y[:i])[y[i]])
                candidates[y] = _logaddexp(candidates[y], step)
        seen = set(candidates)  # sequences whose in-frame total is already complete
        finished: dict[tuple[int, ...], float] = {}
        expansions = 0
        while candidates and expansions < self.cap:
            y_star = max(candidates, key=lambda y: candidates[y] + fused(y))
            best_candidate = candidates[y_star] + fused(y_star)
            better = sum(1 for y, v in finished.items() if v + fused(y) > best_candidate)
            if better >= beam:
                break
            p_star = candidates.pop(y_star)
            expansions += 1
            logp = label_log_probs(y_star)
            finished[y_star] = _logaddexp(finished.get(y_star, _NEG_INF), p_star + logp[blank])
            for k in range(logp.shape[0]):
                if k == blank:
                    continue
                new = (*y_star, k)
                if new in seen:
                    continue  # already counted through prefix merging
                seen.add(new)
                candidates[new] = p_star + float(logp[k])
        return dict(sorted(finished.items(), key=lambda item: item[1] + fused(item[0]),
                           reverse=True)[:beam])

    def results(self, *, length_norm: bool = False) -> list[BeamHypothesis]:
        """The kept hypotheses, best first (fusion included; divided by length if asked)."""

        full = self.committed.full

        def rank(item: tuple[tuple[int, ...], float]) -> float:
            key, logp = item
            score = float(logp) + self.fusion.final(key)
            return score / max(len(full(key)), 1) if length_norm else score

        ordered = sorted(self.kept.items(), key=rank, reverse=True)
        return [BeamHypothesis(full(key), rank((key, lp)), float(lp)) for key, lp in ordered]


@dataclass
class _Hypotheses:
    """Hypotheses of the batched search, of every utterance at once, one row each (N rows).

    Attributes:
        utt: (N,) int64, CPU, the utterance of each row.
        labels: labels of each row.
        scores: (N,) float64, CPU, acoustic log-probabilities.
        g: (N, H_g) prediction output after each row's last label.
        state: prediction state, (layers, N, H) tensors.
    """

    utt: torch.Tensor
    labels: list[tuple[int, ...]]
    scores: torch.Tensor
    g: torch.Tensor
    state: LSTMState

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: torch.Tensor) -> _Hypotheses:
        """The rows ``rows`` ((N',) int64, CPU), in that order."""
        on_device = rows.to(self.g.device)
        return _Hypotheses(self.utt[rows], [self.labels[i] for i in rows.tolist()],
                           self.scores[rows], self.g.index_select(0, on_device),
                           select_state(self.state, on_device))

    def join(self, other: _Hypotheses) -> _Hypotheses:
        """These rows, then ``other``'s."""
        return _Hypotheses(
            torch.cat([self.utt, other.utt]), self.labels + other.labels,
            torch.cat([self.scores, other.scores]), torch.cat([self.g, other.g]),
            (torch.cat([self.state[0], other.state[0]], dim=STATE_BATCH_AXIS),
             torch.cat([self.state[1], other.state[1]], dim=STATE_BATCH_AXIS)),
        )


def transducer_beam_search_batched(
    model: TransducerLike,
    f: torch.Tensor,
    lengths: torch.Tensor,
    *,
    beam: int = 8,
    blank: int = 0,
    lm: LabelLM | None = None,
    lm_weight: float = 0.0,
    insertion_bonus: float = 0.0,
    max_symbols_per_frame: int = 5,
) -> list[list[BeamHypothesis]]:
    """Time-synchronous batched transducer beam search, several labels per frame.

    The "modified beam search" of k2 / icefall (Kang et al. 2022, "Fast and parallel decoding for
    transducer"), extended to several labels per frame. At each frame the live hypotheses of all
    utterances are expanded together, up to ``max_symbols_per_frame`` times: one joint call
    scores blank and every label for each of them; a hypothesis that takes blank ends the frame
    (ended hypotheses with equal labels merge, adding their probabilities), one that takes a label
    is expanded again, and each utterance keeps its ``beam`` best of the ended hypotheses and the
    new label extensions. After ``max_symbols_per_frame`` labels a hypothesis must take blank.
    The prediction network runs once per expansion on the labels just emitted. So each frame
    costs one to ``max_symbols_per_frame + 1`` batched joint calls (one when no label extension
    makes the beam), however many utterances and hypotheses: the fast choice for long files.

    Every alignment ends each frame with a blank, as in training, so with a beam that prunes
    nothing each hypothesis carries the exact sum over its alignments with at most
    ``max_symbols_per_frame`` labels per frame (Graves's sum when that cap is never reached). With
    ``beam=1`` it picks the labels of :func:`~seqkit.decoding.greedy.transducer_greedy` with the
    same cap. Shallow fusion works as in :func:`transducer_beam_search`: hypotheses are ranked by
    acoustic log-probability plus the fusion score of their labels, which merging leaves unchanged
    (equal labels, equal score).

    Args:
        model: transducer model (:class:`~seqkit.decoding.protocol.TransducerLike`); its
            prediction state is batched on axis 1, as torch's LSTM state (layers, N, H).
        f: (B, T, H) float, encoder output.
        lengths: (B,) int, valid encoder frames per utterance.
        beam: hypotheses kept per utterance. Default 8.
        blank: index of the blank symbol. Default 0.
        lm: optional label LM, as for :func:`ctc_beam_search`.
        lm_weight: weight of the LM log-probability. Default 0 (LM ignored).
        insertion_bonus: added per emitted label. Default 0.
        max_symbols_per_frame: most labels emitted at one frame. Default 5, as for the greedy
            search (at 60 ms joint frames, ``model.joint_stride = 2``, one is too few).

    Returns:
        Per utterance, up to ``beam`` hypotheses, best first.

    Raises:
        TensorInputError: if the shapes or lengths do not fit.
        ConfigError: if ``beam`` < 1 or ``max_symbols_per_frame`` < 1.
    """
    _check_beam(beam)
    check_max_symbols(max_symbols_per_frame)
    valid = checked_lengths(f, lengths, "transducer_beam_search_batched", TRANSDUCER_INPUT)
    batch, frames = f.shape[0], f.shape[1]
    with torch.no_grad():
        fusing = (lm is not None and lm_weight != 0.0) or insertion_bonus != 0.0
        vocab = _vocab_size(model, f, blank) if fusing and batch and frames else 0
        fusion = FusionScorer(lm, lm_weight, insertion_bonus, vocab, blank)
        live = _start_hypotheses(model, batch, blank, f.device)
        ends = torch.tensor(valid, dtype=torch.long)  # (B,)
        for t in range(frames):
            in_frame = ends[live.utt] > t  # (N,) rows of utterances that still have frames
            if not bool(in_frame.any()):
                break
            if fusion.active:  # this frame reads the live labels and their extensions
                fusion.retain(set(live.labels).__contains__)
            finished = live.take(torch.nonzero(~in_frame).flatten())
            ended = _search_frame(model, f[:, t], live.take(torch.nonzero(in_frame).flatten()),
                                  fusion, beam=beam, blank=blank,
                                  max_symbols=max_symbols_per_frame)
            live = finished.join(ended)
    out: list[list[BeamHypothesis]] = [[] for _ in range(batch)]
    for u, labels, acoustic in zip(live.utt.tolist(), live.labels, live.scores.tolist(),
                                   strict=True):
        out[u].append(BeamHypothesis(labels, acoustic + fusion.final(labels), acoustic))
    for hyps in out:
        hyps.sort(key=lambda h: h.score, reverse=True)
    return out


def _start_hypotheses(
    model: TransducerLike, batch: int, blank: int, device: torch.device
) -> _Hypotheses:
    """One empty hypothesis per utterance, the prediction network run once on the start symbol."""
    start = torch.full((1, 1), blank, dtype=torch.long, device=device)
    g0, state0 = model.predict(start, None)  # g0: (1, 1, H_g)
    index0 = torch.zeros(batch, dtype=torch.long, device=device)
    return _Hypotheses(
        utt=torch.arange(batch),
        labels=[()] * batch,
        scores=torch.zeros(batch, dtype=torch.float64),
        g=g0[:, 0].index_select(0, index0),  # (B, H_g)
        state=select_state(state0, index0),
    )


def _search_frame(
    model: TransducerLike, ft: torch.Tensor, hyps: _Hypotheses, fusion: FusionScorer, *,
    beam: int, blank: int, max_symbols: int,
) -> _Hypotheses:
    """One frame of the batched search: every utterance's best hypotheses that end it with blank.

    Args:
        ft: (B, H_f) the frame's encoder output, every utterance.
        hyps: the live hypotheses of the utterances this frame lies within.
        fusion: LM and insertion-bonus scores; hypotheses are ranked by acoustic + fusion
            score, and their scores stay acoustic.

    Returns:
        Up to ``beam`` hypotheses per utterance of ``hyps``, equal labels merged.
    """
    ended = hyps.take(torch.zeros(0, dtype=torch.long))
    expanding = hyps  # hypotheses that may still emit at this frame
    for emitted in range(max_symbols + 1):
        if not len(expanding):
            break
        f_rows = ft.index_select(0, expanding.utt.to(ft.device))  # (N, H_f)
        logits = model.joint(f_rows[:, None, None, :], expanding.g[:, None, None, :])  # (N,1,1,V)
        logp = torch.log_softmax(logits.reshape(len(expanding), -1).double(), dim=-1).cpu()
        # blank ends the frame; an ended hypothesis reached again (through other labels) merges
        blank_ended = _Hypotheses(expanding.utt, expanding.labels,
                                  expanding.scores + logp[:, blank], expanding.g, expanding.state)
        ended = _merge_equal_labels(ended.join(blank_ended))
        ended_rank = ended.scores + _fusion_totals(fusion, ended.labels)  # (N_e,)
        if emitted == max_symbols:  # the cap reached: nothing expands further
            return ended.take(_best_per_utterance(ended.utt, ended_rank, beam))
        # (N, V) rank of each row's extension by each label; each row offers its best `beam`
        ranked = expanding.scores[:, None] + logp
        if fusion.active:
            ranked = ranked + torch.from_numpy(np.stack(
                [fusion.row(labels) + fusion.total(labels) for labels in expanding.labels]))
        ranked[:, blank] = _NEG_INF
        top = ranked.topk(min(beam, ranked.shape[1] - 1), dim=1)  # (N, k)
        per_row = top.values.shape[1]
        extension_rank = top.values.reshape(-1)  # (N * k,)
        # the ended hypotheses and the extensions compete for each utterance's beam
        pool_utt = torch.cat([ended.utt, expanding.utt.repeat_interleave(per_row)])
        pool_rank = torch.cat([ended_rank, extension_rank])
        kept = _best_per_utterance(pool_utt, pool_rank, beam)
        n_ended = len(ended)
        ended = ended.take(kept[kept < n_ended])
        chosen = kept[kept >= n_ended] - n_ended  # (N',) into the flattened (N * k) extensions
        chosen = chosen[extension_rank[chosen] > _NEG_INF]
        expanding = _emit(model, expanding, chosen // per_row, top.indices.reshape(-1)[chosen],
                          logp)
    return ended


def _fusion_totals(fusion: FusionScorer, labels: list[tuple[int, ...]]) -> torch.Tensor:
    """(N,) float64 fusion score of each label sequence (zeros without fusion)."""
    if not fusion.active:
        return torch.zeros(len(labels), dtype=torch.float64)
    return torch.tensor([fusion.total(y) for y in labels], dtype=torch.float64)


def _best_per_utterance(utt: torch.Tensor, rank: torch.Tensor, beam: int) -> torch.Tensor:
    """Indices of each utterance's ``beam`` best entries, by utterance, best first within each.

    Args:
        utt: (N,) int64 utterance of each entry.
        rank: (N,) float64 score of each entry; ties keep the earlier entry first.
    """
    order = torch.argsort(rank, descending=True, stable=True)
    order = order[torch.argsort(utt[order], stable=True)]  # grouped by utterance, best first
    grouped = utt[order]
    place = torch.arange(len(order)) - torch.searchsorted(grouped, grouped)  # place in its group
    return order[place < beam]


def _merge_equal_labels(hyps: _Hypotheses) -> _Hypotheses:
    """One row per utterance and label sequence, probabilities added (the first row's state)."""
    first: dict[tuple[int, tuple[int, ...]], int] = {}
    rows: list[int] = []
    scores: list[float] = []
    for i, (u, labels, score) in enumerate(zip(hyps.utt.tolist(), hyps.labels,
                                               hyps.scores.tolist(), strict=True)):
        j = first.setdefault((u, labels), len(rows))
        if j == len(rows):
            rows.append(i)
            scores.append(score)
        else:
            scores[j] = _logaddexp(scores[j], score)
    if len(rows) == len(hyps):
        return hyps
    merged = hyps.take(torch.tensor(rows, dtype=torch.long))
    merged.scores = torch.tensor(scores, dtype=torch.float64)
    return merged


def _emit(
    model: TransducerLike, hyps: _Hypotheses, rows: torch.Tensor, labels: torch.Tensor,
    logp: torch.Tensor,
) -> _Hypotheses:
    """Rows ``rows`` (N',) of ``hyps`` extended by ``labels`` (N',): the prediction network runs
    on the labels, the scores add their log-probabilities ``logp`` (N, V)."""
    parents = hyps.take(rows)
    if not len(parents):
        return parents
    device = parents.g.device
    g, state = model.predict(labels.to(device)[:, None], parents.state)  # g: (N', 1, H_g)
    return _Hypotheses(
        parents.utt,
        [(*y, k) for y, k in zip(parents.labels, labels.tolist(), strict=True)],
        parents.scores + logp[rows, labels],
        g[:, 0],
        state,
    )
