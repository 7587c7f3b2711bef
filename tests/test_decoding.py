"""Greedy and beam search: exhaustive-search agreement on tiny inputs, greedy properties, LM."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from seqkit.data.splits import split_manifest
from seqkit.decoding.beam import (
    CTCPrefixBeamSearch,
    FusionScorer,
    TransducerBeamSearch,
    ctc_beam_search,
    transducer_beam_search,
    transducer_beam_search_batched,
)
from seqkit.decoding.greedy import ctc_greedy, transducer_greedy
from seqkit.decoding.ngram import EOS, estimate_ngram, load_ngram, save_ngram
from seqkit.errors import ConfigError, TensorInputError
from seqkit.models import EncoderConfig, ModelConfig, PredictorConfig, build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny per-step tensors: one thread is fastest


class TinyTransducer(torch.nn.Module):
    """A randomly initialised transducer with the seqkit model contract (predict, joint)."""

    def __init__(self, vocab: int, hidden: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.lstm = torch.nn.LSTM(hidden, hidden, batch_first=True)
        self.w_f = torch.nn.Linear(hidden, hidden)
        self.w_g = torch.nn.Linear(hidden, hidden, bias=False)
        self.out = torch.nn.Linear(hidden, vocab)

    def predict(self, labels: torch.Tensor, state=None):
        g, state = self.lstm(self.embed(labels), state)
        return g, state

    def joint(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.w_f(f) + self.w_g(g))) * 3.0


def _ctc_sequence_log_prob(lp: torch.Tensor, labels: tuple[int, ...], blank: int = 0) -> float:
    """Sum over every frame path collapsing to labels (brute force)."""
    frames, vocab = lp.shape
    rows = lp.tolist()
    scores = []
    for path in itertools.product(range(vocab), repeat=frames):
        collapsed = [k for i, k in enumerate(path) if (i == 0 or k != path[i - 1]) and k != blank]
        if tuple(collapsed) == labels:
            scores.append(sum(rows[t][k] for t, k in enumerate(path)))
    if not scores:
        return -math.inf
    return float(torch.logsumexp(torch.tensor(scores, dtype=torch.float64), dim=0))


def _transducer_sequence_log_prob(lattice: torch.Tensor, labels: tuple[int, ...]) -> float:
    """Sum over all lattice paths (brute force over the positions of the labels)."""
    frames = lattice.shape[0]
    n = len(labels)
    lat = lattice.tolist()
    scores = []
    # a path is an interleaving of T blanks and U labels ending with a blank
    for label_slots in itertools.combinations(range(frames + n - 1), n):
        t = u = 0
        score = 0.0
        for step in range(frames + n):
            if step in label_slots:
                score += lat[t][u][labels[u]]
                u += 1
            else:
                score += lat[t][u][0]
                t += 1
        scores.append(score)
    return float(torch.logsumexp(torch.tensor(scores, dtype=torch.float64), dim=0))


def _lattice(model: TinyTransducer, f: torch.Tensor, labels: tuple[int, ...]) -> torch.Tensor:
    g, _ = model.predict(torch.tensor([[0, *labels]]))
    with torch.no_grad():
        return torch.log_softmax(model.joint(f[None, :, None], g[:, None]), dim=-1)[0]


def test_ctc_greedy_merges_repeats_and_drops_blanks() -> None:
    path = torch.tensor([[0, 1, 1, 0, 1, 2, 2], [3, 3, 0, 3, 0, 0, 0]])
    lp = torch.nn.functional.one_hot(path, 4).float().clamp_min(1e-6).log()
    assert ctc_greedy(lp, torch.tensor([7, 4])) == [[1, 1, 2], [3, 3]]
    assert ctc_greedy(lp, torch.tensor([0, 1])) == [[], [3]]


def test_ctc_greedy_rejects_lengths_past_the_time_axis() -> None:
    with pytest.raises(TensorInputError, match="lengths"):
        ctc_greedy(torch.zeros(1, 3, 4), torch.tensor([5]))
    with pytest.raises(TensorInputError, match=r"\(B, T, V\)"):
        ctc_greedy(torch.zeros(3, 4), torch.tensor([3]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctc_beam_search_finds_exhaustive_best_on_tiny_B1_T5_V3(seed: int) -> None:
    torch.manual_seed(seed)
    lp = torch.log_softmax(torch.randn(5, 3) * 2, dim=-1)
    sequences = {()}
    for n in range(1, 6):
        sequences |= set(itertools.product((1, 2), repeat=n))
    scores = {s: _ctc_sequence_log_prob(lp, s) for s in sequences}
    best = max(scores, key=scores.__getitem__)
    hyps = ctc_beam_search(lp[None], torch.tensor([5]), beam=64)[0]
    assert hyps[0].labels == best
    assert hyps[0].score == pytest.approx(scores[best], abs=1e-5)
    # every kept hypothesis carries its exact sum over alignments
    for h in hyps[:10]:
        assert h.acoustic == pytest.approx(scores[h.labels], abs=1e-5)


def test_ctc_beam_one_keeps_a_single_prefix_and_is_batch_consistent() -> None:
    torch.manual_seed(3)
    lp = torch.log_softmax(torch.randn(3, 20, 6) * 3, dim=-1)
    lengths = torch.tensor([20, 13, 7])
    batched = ctc_beam_search(lp, lengths, beam=4)
    for b in range(3):
        single = ctc_beam_search(lp[b : b + 1, : lengths[b]], lengths[b : b + 1], beam=4)[0]
        assert [h.labels for h in single] == [h.labels for h in batched[b]]
    assert all(len(h) == 1 for h in ctc_beam_search(lp, lengths, beam=1))


def test_ctc_beam_search_with_lm_weight_follows_the_lm() -> None:
    # acoustics are ambiguous between label 1 and 2 at every frame; the LM prefers 2 after 2
    lp = torch.log(torch.tensor([[0.1, 0.45, 0.45]] * 4))
    lm = estimate_ngram([["b", "b"]] * 20, ["a", "b"], order=2)
    scorer = lm.label_scorer(["<blank>", "a", "b"])
    with_lm = ctc_beam_search(lp[None], torch.tensor([4]), beam=16, lm=scorer, lm_weight=2.0)
    assert set(with_lm[0][0].labels) == {2}
    with pytest.raises(ConfigError, match="beam"):
        ctc_beam_search(lp[None], torch.tensor([4]), beam=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transducer_beam_search_finds_exhaustive_best_on_tiny_T3_V3(seed: int) -> None:
    model = TinyTransducer(vocab=3, seed=seed).eval()
    f = torch.randn(1, 3, 8) * 2
    sequences = {()}
    for n in range(1, 5):
        sequences |= set(itertools.product((1, 2), repeat=n))
    scores = {s: _transducer_sequence_log_prob(_lattice(model, f[0], s), s) for s in sequences}
    best = max(scores, key=scores.__getitem__)
    hyps = transducer_beam_search(model, f, torch.tensor([3]), beam=40)[0]
    assert hyps[0].labels == best
    assert hyps[0].score == pytest.approx(scores[best], abs=1e-4)


@pytest.mark.parametrize("cap", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 4])
def test_transducer_batched_beam_one_equals_greedy_with_the_same_symbol_cap(
    seed: int, cap: int
) -> None:
    model = TinyTransducer(vocab=5, seed=seed).eval()
    f = torch.randn(3, 12, 8, generator=torch.Generator().manual_seed(seed)) * 2
    lengths = torch.tensor([12, 9, 4])
    greedy = transducer_greedy(model, f, lengths, max_symbols_per_frame=cap)
    beam_one = transducer_beam_search_batched(model, f, lengths, beam=1,
                                              max_symbols_per_frame=cap)
    assert [h[0].labels for h in beam_one] == [tuple(g) for g in greedy]
    assert all(len(g) <= cap * int(n) for g, n in zip(greedy, lengths, strict=True))
    # the cap binds at some frames and not at others, so both paths of the search are tried
    assert 0 < sum(map(len, greedy)) < cap * int(lengths.sum())
    if cap > 1:
        one = transducer_greedy(model, f, lengths, max_symbols_per_frame=1)
        assert sum(map(len, greedy)) > sum(map(len, one))


def test_transducer_batched_beam_default_cap_is_the_greedy_one() -> None:
    model = TinyTransducer(vocab=5, seed=0).eval()
    f = torch.randn(2, 10, 8, generator=torch.Generator().manual_seed(0)) * 2
    lengths = torch.tensor([10, 7])
    beam_one = transducer_beam_search_batched(model, f, lengths, beam=1)
    assert [h[0].labels for h in beam_one] == \
        [tuple(g) for g in transducer_greedy(model, f, lengths)]
    with pytest.raises(ConfigError, match="max_symbols_per_frame"):
        transducer_beam_search_batched(model, f, lengths, beam=2, max_symbols_per_frame=0)


def test_transducer_batched_beam_is_batch_consistent() -> None:
    model = TinyTransducer(vocab=5, seed=6).eval()
    f = torch.randn(3, 10, 8) * 2
    lengths = torch.tensor([10, 6, 8])
    batched = transducer_beam_search_batched(model, f, lengths, beam=4)
    for b in range(3):
        single = transducer_beam_search_batched(
            model, f[b : b + 1, : lengths[b]], lengths[b : b + 1], beam=4
        )[0]
        assert batched[b][0].labels == single[0].labels
        assert batched[b][0].score == pytest.approx(single[0].score, abs=1e-4)


def _capped_sequence_log_prob(
    model, f: torch.Tensor, labels: tuple[int, ...], cap: int
) -> float:
    """Sum over the alignments of ``labels`` that emit at most ``cap`` labels at each frame, each
    frame ending with a blank (brute force over the labels emitted per frame)."""
    frames, n = f.shape[0], len(labels)
    lat = _lattice(model, f, labels).double().tolist()  # (T, U+1, V)
    scores = []
    for counts in itertools.product(range(cap + 1), repeat=frames):
        if sum(counts) != n:
            continue
        u, score = 0, 0.0
        for t, count in enumerate(counts):
            for _ in range(count):
                score += lat[t][u][labels[u]]
                u += 1
            score += lat[t][u][0]
        scores.append(score)
    if not scores:
        return -math.inf
    return float(torch.logsumexp(torch.tensor(scores, dtype=torch.float64), dim=0))


def _label_sequences(vocab: int, longest: int) -> list[tuple[int, ...]]:
    """Every sequence of labels 1..vocab-1 up to ``longest`` labels, the empty one included."""
    return [s for n in range(longest + 1) for s in itertools.product(range(1, vocab), repeat=n)]


@pytest.mark.parametrize(("vocab", "frames", "cap", "seed"),
                         [(3, 3, 1, 5), (3, 3, 2, 5), (3, 4, 2, 2), (4, 3, 2, 1), (3, 3, 3, 3)])
def test_transducer_batched_beam_finds_exhaustive_best_with_a_symbol_cap(
    vocab: int, frames: int, cap: int, seed: int
) -> None:
    """Issue #19: the batched search emitted one label per frame; now up to ``cap``."""
    model = TinyTransducer(vocab=vocab, seed=seed).eval()
    f = torch.randn(1, frames, 8, generator=torch.Generator().manual_seed(seed)) * 2
    sequences = _label_sequences(vocab, frames * cap)
    scores = {s: _capped_sequence_log_prob(model, f[0], s, cap) for s in sequences}
    best = max(scores, key=scores.__getitem__)
    if cap > 1:  # chosen so that the cap changes the answer
        one = {s: _capped_sequence_log_prob(model, f[0], s, 1) for s in sequences
               if len(s) <= frames}
        assert best != max(one, key=one.__getitem__)
    # a beam as large as all sequences twice (ended and still emitting) prunes nothing
    hyps = transducer_beam_search_batched(model, f, torch.tensor([frames]),
                                          beam=2 * len(sequences), max_symbols_per_frame=cap)[0]
    assert hyps[0].labels == best
    assert hyps[0].score == pytest.approx(scores[best], abs=1e-5)
    # every kept hypothesis carries its exact sum over the capped alignments (float32 joint)
    assert len(hyps) == len(sequences)
    for h in hyps:
        assert h.acoustic == pytest.approx(scores[h.labels], abs=1e-5)
    # a sequence no longer than the cap has every alignment: Graves's sum
    for s in sequences[: 1 + sum((vocab - 1) ** n for n in range(1, cap + 1))]:
        assert scores[s] == pytest.approx(
            _transducer_sequence_log_prob(_lattice(model, f[0], s), s), abs=1e-5)


def _joint_stride_2_transducer(seed: int) -> torch.nn.Module:
    """A real TransducerModel (V=3) whose joint sees 2 encoder outputs per frame, its joint
    sharpened as TinyTransducer's is so that the best sequence stands out."""
    torch.manual_seed(seed)
    config = ModelConfig(kind="transducer", encoder=EncoderConfig(layers=1, hidden=4),
                         predictor=PredictorConfig(embed=4, hidden=8), joint_dim=8,
                         joint_stride=2)
    model = build_model(config, input_dim=5, vocab_size=3).eval()
    with torch.no_grad():
        model.joint_out.weight.mul_(3.0)
        model.joint_out.bias.mul_(3.0)
    return model


@pytest.mark.parametrize("seed", [0, 3, 5])  # seeds whose best sequence is not empty
def test_joint_stride_2_searches_find_exhaustive_best_and_greedy_equals_beam_one(seed) -> None:
    model = _joint_stride_2_transducer(seed)
    feats = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(seed)) * 2
    with torch.no_grad():
        f, lengths = model.encode(feats, torch.tensor([6, 3]))  # (2, 3, 2 x 8): 6 -> 3 frames
    assert f.shape == (2, 3, 16) and lengths.tolist() == [3, 2]
    sequences = {()}
    for n in range(1, 7):
        sequences |= set(itertools.product((1, 2), repeat=n))
    scores = {s: _transducer_sequence_log_prob(_lattice(model, f[0], s), s) for s in sequences}
    best = max(scores, key=scores.__getitem__)
    assert 0 < len(best) < 6  # the enumeration also holds the best's longer rivals
    hyps = transducer_beam_search(model, f[:1], lengths[:1], beam=40)[0]
    assert hyps[0].labels == best
    assert hyps[0].score == pytest.approx(scores[best], abs=1e-4)
    greedy = transducer_greedy(model, f, lengths)  # both searches' default symbol cap
    beam_one = transducer_beam_search_batched(model, f, lengths, beam=1)
    assert [h[0].labels for h in beam_one] == [tuple(g) for g in greedy]
    batched = transducer_beam_search_batched(model, f, lengths, beam=4)
    graves = transducer_beam_search(model, f, lengths, beam=4)
    assert all(len(h) for h in batched) and all(len(h) for h in graves)


def test_ngram_distributions_sum_to_one_and_round_trip(tmp_path) -> None:
    lm = estimate_ngram([["a", "b", "a"], ["b", "b"], ["c"]], ["a", "b", "c", "d"], order=3)
    for history in ([], ["a"], ["b", "b"], ["d", "a"], ["c", "c", "c"]):
        assert sum(lm.prob(history, s) for s in lm.outcomes) == pytest.approx(1.0, abs=1e-12)
    assert lm.prob(["a"], "b") > lm.prob(["a"], "d") > 0
    assert lm.prob([], EOS) > 0
    path = save_ngram(lm, tmp_path / "lm.json")
    again = load_ngram(path)
    assert again.prob(["b"], "a") == lm.prob(["b"], "a")
    with pytest.raises(ConfigError, match="not in the given"):
        estimate_ngram([["zz"]], ["a"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="seqkit-phone-ngram"):
        load_ngram(tmp_path / "bad.json")


def test_ngram_from_manifest_folds_and_drops_q(tmp_path) -> None:
    from seqkit.data.manifest import Utterance, write_manifest
    from seqkit.decoding.ngram import load_lm_source

    phones = ((0, 10, "h#"), (10, 20, "q"), (20, 30, "ix"), (30, 40, "h#"))
    utterance = Utterance("S1_SX1", "/a.wav", 40, 16000, "S1", "DR1", phones, (), "a")
    write_manifest(split_manifest(tmp_path, "train"), [utterance])
    lm = load_lm_source(tmp_path, 39)
    assert "q" not in lm.symbols and lm.prob(["sil"], "ih") > lm.prob(["sil"], "aa")
    scorer = estimate_ngram([["a"]], ["a"]).label_scorer(["<blank>", "a", "q"])
    assert scorer([], 2) < scorer([], 1)  # a symbol the LM never saw is penalized, not an error


def _fusion_lm():
    """A bigram that prefers label 1 after 2 and ends after 1: fusion must change the answer."""
    lm = estimate_ngram([["b", "a"]] * 20 + [["a"]], ["a", "b"], order=2)
    return lm.label_scorer(["<blank>", "a", "b"]), lm


def _fused(lm, labels: tuple[int, ...], weight: float, bonus: float) -> float:
    phones = [("<blank>", "a", "b")[k] for k in labels]
    # the whole sequence's log-probability, its end included, from the LM itself
    log_prob = sum(lm.log_prob(phones[:i], p) for i, p in enumerate((*phones, EOS)))
    return weight * log_prob + bonus * len(labels)


@pytest.mark.parametrize(("weight", "bonus"), [(0.8, 0.0), (1.5, 1.0)])
def test_transducer_beam_search_with_lm_finds_exhaustive_fused_best_on_T3_V3(
    weight: float, bonus: float
) -> None:
    model = TinyTransducer(vocab=3, seed=1).eval()
    f = torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(7)) * 2
    scorer, lm = _fusion_lm()
    sequences = {()}
    for n in range(1, 6):
        sequences |= set(itertools.product((1, 2), repeat=n))
    acoustic = {s: _transducer_sequence_log_prob(_lattice(model, f[0], s), s) for s in sequences}
    fused = {s: acoustic[s] + _fused(lm, s, weight, bonus) for s in sequences}
    best = max(fused, key=fused.__getitem__)
    assert best != max(acoustic, key=acoustic.__getitem__)  # the LM changes the answer
    hyps = transducer_beam_search(model, f, torch.tensor([3]), beam=40, lm=scorer,
                                  lm_weight=weight, insertion_bonus=bonus)[0]
    assert hyps[0].labels == best
    assert hyps[0].score == pytest.approx(fused[best], abs=1e-4)
    assert hyps[0].acoustic == pytest.approx(acoustic[best], abs=1e-4)


@pytest.mark.parametrize(("weight", "bonus"), [(0.8, 0.0), (1.5, 1.0)])
def test_transducer_batched_beam_with_lm_finds_exhaustive_fused_best_on_T4_V3(
    weight: float, bonus: float
) -> None:
    model = TinyTransducer(vocab=3, seed=1).eval()
    f = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(7)) * 2
    scorer, lm = _fusion_lm()
    sequences = _label_sequences(3, 4 * 2)  # at most two labels in each of 4 frames
    acoustic = {s: _capped_sequence_log_prob(model, f[0], s, 2) for s in sequences}
    fused = {s: acoustic[s] + _fused(lm, s, weight, bonus) for s in sequences}
    best = max(fused, key=fused.__getitem__)
    assert best != max(acoustic, key=acoustic.__getitem__)  # the LM changes the answer
    # a beam as large as the number of sequences prunes nothing: scores are exact
    hyps = transducer_beam_search_batched(model, f, torch.tensor([4]), beam=len(sequences) * 2,
                                          lm=scorer, lm_weight=weight, insertion_bonus=bonus,
                                          max_symbols_per_frame=2)[0]
    assert hyps[0].labels == best
    assert hyps[0].score == pytest.approx(fused[best], abs=1e-6)
    assert hyps[0].acoustic == pytest.approx(acoustic[best], abs=1e-6)


class _UnprunedCTC(CTCPrefixBeamSearch):
    """The CTC search as it was before memo pruning: every LM score and label kept forever."""

    def _keep(self, beams) -> None:
        self.beams = beams


class _UnprunedTransducer(TransducerBeamSearch):
    """Graves's search as it was before memo pruning: every prefix's entries kept forever."""

    def _keep(self, kept) -> None:
        self.kept = kept


def _long_stream_lm(vocab: int):
    """A trigram over labels 1..vocab-1 from seeded random transcripts (context: 2 labels)."""
    phones = [chr(ord("a") + i) for i in range(vocab - 1)]
    rng = torch.Generator().manual_seed(3)
    sentences = [[phones[int(k)] for k in torch.randint(len(phones), (12,), generator=rng)]
                 for _ in range(40)]
    return estimate_ngram(sentences, phones, order=3).label_scorer(["<blank>", *phones])


def _chunks(total: int, size: int):
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def _two_way_frames(frames: int, vocab: int, seed: int) -> np.ndarray:
    """(T, V) CTC log-probs, every frame torn between two random symbols: fresh alternatives keep
    replacing old ones in the beam, so hypotheses agree on all but the last labels (on frames
    sure of one symbol, hypotheses that differ only long ago can stay in the beam for good)."""
    g = torch.Generator().manual_seed(seed)
    hot = torch.nn.functional.one_hot(torch.randint(vocab, (2, frames), generator=g), vocab)
    logits = torch.randn(frames, vocab, generator=g) * 0.5 + 2 * hot.sum(0)
    return torch.log_softmax(logits, dim=-1).numpy()


def test_ctc_stream_memo_and_hypotheses_stay_bounded_with_unpruned_results() -> None:
    beam, vocab, frames = 4, 6, 3000
    lp = _two_way_frames(frames, vocab, seed=5)
    options = dict(beam=beam, lm=_long_stream_lm(vocab), lm_weight=0.7, insertion_bonus=0.3,
                   top_k=beam + 1)
    reference = _UnprunedCTC(**options)
    reference.step(lp)
    search = CTCPrefixBeamSearch(**options)
    printed: list[int] = []
    for start, end in _chunks(frames, 37):
        search.step(lp[start:end])
        printed.extend(search.decided_since(len(printed)))
        assert search.memo_size() <= beam * (vocab + 1)
    want = reference.results()
    assert len(want[0].labels) > 1000 and reference.memo_size() > 1000  # it grew before
    got = search.results()
    assert [(h.labels, h.score, h.acoustic) for h in got] == \
        [(h.labels, h.score, h.acoustic) for h in want]
    assert tuple(printed) == want[0].labels[: len(printed)]
    assert len(search.committed.labels) > len(want[0].labels) - 100  # not kept in hypotheses


@pytest.mark.parametrize(("lm_weight", "frames"), [(0.0, 60), (0.5, 250)])
def test_transducer_stream_memo_and_hypotheses_stay_bounded_with_unpruned_results(
    lm_weight: float, frames: int
) -> None:
    """Without an LM this untrained model emits about 11 labels per frame; with it, 1 in 3."""
    beam, vocab = 3, 4
    model = TinyTransducer(vocab=vocab, seed=2).eval()
    f = torch.randn(frames, 8, generator=torch.Generator().manual_seed(6)) * 3
    fusion = FusionScorer(_long_stream_lm(vocab), lm_weight, 0.5, vocab)
    with torch.no_grad():
        reference = _UnprunedTransducer(model, beam=beam, fusion=fusion)
        reference.step(f)
        search = TransducerBeamSearch(model, beam=beam, fusion=fusion)
        printed: list[int] = []
        for start, end in _chunks(frames, 23):
            search.step(f[start:end])
            printed.extend(search.decided_since(len(printed)))
            assert len(search.predictor.cache) <= beam * (vocab + 1)
            assert search.fusion.memo_size() <= 2 * beam * (vocab + 1)
            assert max(map(len, search.kept)) <= 40
    want = reference.results(length_norm=True)
    assert len(want[0].labels) > 60 and len(reference.predictor.cache) > 60
    got = search.results(length_norm=True)
    assert [(h.labels, h.score, h.acoustic) for h in got] == \
        [(h.labels, h.score, h.acoustic) for h in want]
    assert tuple(printed) == want[0].labels[: len(printed)]
    assert len(printed) > len(want[0].labels) - 40
