"""Phone n-gram language model for shallow fusion in CTC and transducer beam search.

Estimated from training transcripts with interpolated absolute discounting (Ney, Essen & Kneser
1994): every order keeps a fixed discount per seen n-gram and gives the freed mass to the next
lower order, down to a uniform distribution, so each conditional distribution sums to one over
the phones plus the end-of-sequence symbol. Saved and loaded as JSON.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqkit.atomic import write_json
from seqkit.errors import ConfigError

BOS = "<s>"
EOS = "</s>"
FORMAT = "seqkit-phone-ngram"


@dataclass(frozen=True)
class PhoneNgram:
    """An interpolated, absolutely discounted phone n-gram model.

    Attributes:
        order: n (1 = unigram, 2 = bigram, ...).
        symbols: phones the model predicts (``EOS`` is added on top).
        counts: per history (tuple of up to n-1 phones, ``BOS``-padded), the counts of the next
            symbol.
        discount: absolute discount in (0, 1).
    """

    order: int
    symbols: tuple[str, ...]
    counts: dict[tuple[str, ...], dict[str, int]]
    discount: float = 0.5
    _totals: dict[tuple[str, ...], int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for history, nexts in self.counts.items():
            self._totals[history] = sum(nexts.values())

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Every symbol a distribution covers: the phones and ``EOS``."""
        return (*self.symbols, EOS)

    def prob(self, history: Sequence[str], symbol: str) -> float:
        """P(symbol | last n-1 symbols of history); ``history`` may be shorter (BOS-padded).

        Raises:
            ConfigError: if ``symbol`` is not a phone of the model nor ``EOS``.
        """
        if symbol != EOS and symbol not in self.symbols:
            raise ConfigError(
                f"phone {symbol!r} is not in the n-gram LM's {len(self.symbols)} phones: "
                "estimate the LM on transcripts with the model's phone set"
            )
        padded = (BOS,) * (self.order - 1) + tuple(history)
        context = padded[len(padded) - (self.order - 1) :] if self.order > 1 else ()
        return self._interpolated(context, symbol)

    def log_prob(self, history: Sequence[str], symbol: str) -> float:
        """Natural log of :meth:`prob`."""
        return math.log(self.prob(history, symbol))

    def _interpolated(self, context: tuple[str, ...], symbol: str) -> float:
        # the shorter history's distribution (uniform below the unigram) gets the freed mass
        lower = self._interpolated(context[1:], symbol) if context else 1.0 / len(self.outcomes)
        nexts = self.counts.get(context)
        if not nexts:
            return lower
        return self._discounted(context, nexts, symbol, lower)

    def _discounted(
        self, context: tuple[str, ...], nexts: dict[str, int], symbol: str, lower: float
    ) -> float:
        total = self._totals[context]
        seen = len(nexts)
        return (max(nexts.get(symbol, 0) - self.discount, 0.0) + self.discount * seen * lower) / (
            total
        )

    def label_scorer(self, vocab: Sequence[str]) -> LabelScorer:
        """A ``lm(context labels, label or None) -> log-prob`` function over model label indices.

        Symbols of the model the LM does not know score a hundredth of the uniform probability.

        Args:
            vocab: the model's output symbols, index 0 the blank.
        """
        return LabelScorer(self, tuple(vocab))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "format": FORMAT,
            "order": self.order,
            "discount": self.discount,
            "symbols": list(self.symbols),
            "counts": [[list(h), dict(sorted(n.items()))] for h, n in sorted(self.counts.items())],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhoneNgram:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: if the dict is not a seqkit phone n-gram.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(
                f"expected a {FORMAT} JSON object, found {str(data)[:60]!r}: "
                "build one with seqkit.decoding.ngram.estimate_ngram"
            )
        try:
            counts = {tuple(h): {str(k): int(v) for k, v in n.items()} for h, n in data["counts"]}
            return cls(
                order=int(data["order"]),
                symbols=tuple(data["symbols"]),
                counts=counts,
                discount=float(data["discount"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(
                f"malformed {FORMAT} JSON ({err}): rebuild it with estimate_ngram"
            ) from None


class LabelScorer:
    """:meth:`PhoneNgram.label_scorer`: the LM over model label indices.

    Attributes:
        context: labels of history a score reads (n - 1): beam searches keep only that much of
            the labels they have already decided.
    """

    def __init__(self, lm: PhoneNgram, vocab: tuple[str, ...]) -> None:
        self.lm = lm
        self.vocab = vocab
        self.context = lm.order - 1
        self.known = frozenset(lm.symbols)
        # a model symbol the LM never saw (e.g. ``q``): a hundredth of the uniform probability
        self.unseen = math.log(0.01 / len(lm.outcomes))

    def __call__(self, context: Sequence[int], label: int | None) -> float:
        if label is not None and self.vocab[label] not in self.known:
            return self.unseen
        recent = context[max(len(context) - self.context, 0) :]  # all the n-gram reads
        history = [self.vocab[i] for i in recent]
        return self.lm.log_prob(history, EOS if label is None else self.vocab[label])


def estimate_ngram(
    sentences: Iterable[Sequence[str]],
    symbols: Sequence[str],
    *,
    order: int = 3,
    discount: float = 0.5,
) -> PhoneNgram:
    """Estimate a phone n-gram LM from transcripts.

    Args:
        sentences: phone sequences (e.g. training transcripts in the model's phone set).
        symbols: the phone inventory (every phone in ``sentences`` must be in it).
        order: n. Default 3.
        discount: absolute discount in (0, 1). Default 0.5.

    Returns:
        The model; every conditional distribution sums to one over ``symbols`` + ``EOS``.

    Raises:
        ConfigError: on a bad order or discount, or a phone outside ``symbols``.
    """
    if order < 1:
        raise ConfigError(f"expected n-gram order >= 1, found {order}: use 2 or 3 for phones")
    if not 0.0 < discount < 1.0:
        raise ConfigError(f"expected discount in (0, 1), found {discount}: 0.5 is a good default")
    known = set(symbols)
    counts: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    for sentence in sentences:
        for phone in sentence:
            if phone not in known:
                raise ConfigError(
                    f"phone {phone!r} in a transcript is not in the given {len(known)}-phone set: "
                    "fold the transcripts to the model's phone set first"
                )
        padded = (BOS,) * (order - 1) + tuple(sentence) + (EOS,)
        for i in range(order - 1, len(padded)):
            for n in range(order):  # history lengths 0..order-1
                history = padded[i - n : i]
                counts[history][padded[i]] += 1
    return PhoneNgram(
        order=order,
        symbols=tuple(symbols),
        counts={h: dict(c) for h, c in counts.items()},
        discount=discount,
    )


def save_ngram(lm: PhoneNgram, path: str | os.PathLike[str]) -> Path:
    """Write the LM as JSON, atomically (temp file in the same folder + os.replace)."""
    return write_json(path, lm.to_dict(), indent=None)


def load_ngram(path: str | os.PathLike[str]) -> PhoneNgram:
    """Read an LM written by :func:`save_ngram`.

    Raises:
        ConfigError: if the file is missing or not a seqkit phone n-gram.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(
            f"n-gram LM {source} not found: build one with seqkit.decoding.ngram.estimate_ngram"
        )
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"n-gram LM {source} is not JSON ({err}): rebuild it") from None
    return PhoneNgram.from_dict(data)


def ngram_from_manifest(
    path: str | os.PathLike[str], phone_set: int, *, order: int = 3, discount: float = 0.5
) -> PhoneNgram:
    """Estimate a phone LM from a manifest's transcripts (e.g. ``prepared/train.jsonl``).

    Args:
        path: a manifest (``.jsonl``) or a prepared directory (its ``train.jsonl`` is used).
        phone_set: the model's phone set (61, 48 or 39): transcripts are folded to it and the
            glottal stop ``q`` is dropped, as for training targets.
        order: n. Default 3.
        discount: absolute discount. Default 0.5.

    Raises:
        CorpusError: the manifest is missing or malformed (from ``read_manifest``), or it
            changed since prepare wrote it (:mod:`seqkit.data.checksums`).
        ConfigError: a bad phone set, order or discount.
    """
    from seqkit.data.checksums import verify_manifest, verify_prepared
    from seqkit.data.manifest import read_manifest
    from seqkit.data.phones import fold_phones
    from seqkit.data.phones import phone_set as phones_of
    from seqkit.data.splits import split_manifest

    source = Path(path)
    if source.is_dir():
        source = split_manifest(source, "train")
        verify_prepared(source.parent, [source.name])
    else:
        verify_manifest(source)  # checked when it lies in a prepared folder
    symbols = [p for p in phones_of(phone_set) if p != "q"]
    sentences = [
        [p for p in fold_phones(u.phone_labels, to=phone_set) if p != "q"]
        for u in read_manifest(source)
    ]
    return estimate_ngram(sentences, symbols, order=order, discount=discount)


def load_lm_source(path: str | os.PathLike[str], phone_set: int) -> PhoneNgram:
    """An LM from a saved JSON file, a manifest (``.jsonl``) or a prepared directory.

    Raises:
        ConfigError, CorpusError: as :func:`load_ngram` and :func:`ngram_from_manifest`.
    """
    source = Path(path)
    if source.is_dir() or source.suffix == ".jsonl":
        return ngram_from_manifest(source, phone_set)
    return load_ngram(source)
