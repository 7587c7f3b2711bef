"""Normalization statistics of a corpus's train split, from a sample, in parallel parts.

Global mean and variance of 123 features settle long before hours of speech, so a large corpus's
statistics come from an evenly spaced sample of at most :data:`STATS_UTTERANCES` train
utterances (about 7 h of LibriSpeech); worker processes each return the statistics of their part,
merged here. The TIMIT prepare uses all of train because all of TIMIT's train set is 3.1 hours.
"""

from __future__ import annotations

from pathlib import Path

from seqkit.audio import features
from seqkit.audio.features import FeatureStats
from seqkit.errors import CorpusError

STATS_UTTERANCES = 2000  # train utterances (about 7 h of LibriSpeech) the CMVN stats use


def stats_sample(count: int) -> frozenset[int]:
    """Indices of an evenly spaced sample of at most STATS_UTTERANCES of ``count``."""
    if count <= STATS_UTTERANCES:
        return frozenset(range(count))
    return frozenset(i * count // STATS_UTTERANCES for i in range(STATS_UTTERANCES))


def merge_stats(parts: list[FeatureStats], corpus: Path) -> FeatureStats:
    """One FeatureStats from the workers' per-chunk ones
    (:func:`seqkit.audio.features.merge_stats`).

    Raises:
        CorpusError: no part (no usable train utterance).
    """
    if not parts:
        raise CorpusError(f"{corpus}: no usable train utterance to compute feature statistics on")
    return features.merge_stats(parts)
