"""The three splits every corpus is cut into, and the files that name them.

A corpus in TIMIT's layout may name its speakers per split in ``splits.json`` (the synthesized
corpus always does); a prepared folder holds one manifest per split, ``<split>.jsonl``. Writers
(synthesis, the corpus readers) and readers (training, evaluation) meet here, below both.

A corpus that defines no split of its own (CMU ARCTIC, L2-ARCTIC, a Kaldi data dir of someone's
recordings) is cut by :func:`split_speakers`: speaker-disjoint, by a seeded rule, so a model is
always scored on voices it never trained on. :func:`merge_splits` puts everything in one split
(``--all-to``), as the NLTK TIMIT sample goes to test in full.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from seqkit.errors import ConfigError, CorpusError

SPLITS = ("train", "dev", "test")
SPLITS_FILE = "splits.json"
# Shares of the speakers a seeded split sends to dev and to test (at least one each).
HELD_OUT_SHARE = 0.1
# The rule split_speakers applies, as the summary and a prepared folder's splits.json state it.
SEEDED_RULE = (
    "speaker-disjoint by seed: speakers sorted, shuffled with Python's random.Random(seed); the "
    f"first {HELD_OUT_SHARE:.0%} (at least 1) to test, the next {HELD_OUT_SHARE:.0%} (at least 1) "
    "to dev, the rest to train"
)

T = TypeVar("T")


def split_manifest(prepared_dir: Path, split: str) -> Path:
    """The manifest of ``split`` in a prepared folder: ``PREPARED/<split>.jsonl``."""
    return prepared_dir / f"{split}.jsonl"


def check_split_name(name: str, option: str = "--all-to") -> str:
    """``name`` if it is train, dev or test.

    Raises:
        ConfigError: any other name.
    """
    if name not in SPLITS:
        raise ConfigError(f"{option} {name!r}: choose one of {', '.join(SPLITS)}")
    return name


def split_speakers(speakers: Iterable[str], seed: int) -> dict[str, tuple[str, ...]]:
    """A speaker-disjoint train / dev / test assignment by :data:`SEEDED_RULE`.

    The same speakers and seed give the same split on any machine (the order the speakers come
    in does not matter).

    Args:
        speakers: speaker ids (repeats are fine).
        seed: the shuffle's seed.

    Returns:
        ``{"train": (...), "dev": (...), "test": (...)}``, each sorted.

    Raises:
        CorpusError: fewer than 3 speakers (no disjoint dev and test can be cut); the message
            names ``--all-to``.
    """
    ordered = sorted(set(speakers))
    if len(ordered) < 3:
        raise CorpusError(
            f"the corpus has {len(ordered)} speaker(s) ({', '.join(ordered) or 'none'}) and "
            "defines no splits: a speaker-disjoint train/dev/test needs at least 3; put it all "
            "in one split with --all-to train (an extra training set) or --all-to test "
            "(a measurement set)"
        )
    random.Random(seed).shuffle(ordered)
    held_out = max(1, round(HELD_OUT_SHARE * len(ordered)))
    return {
        "test": tuple(sorted(ordered[:held_out])),
        "dev": tuple(sorted(ordered[held_out:2 * held_out])),
        "train": tuple(sorted(ordered[2 * held_out:])),
    }


def merge_splits(splits: dict[str, list[T]], into: str) -> dict[str, list[T]]:
    """Everything of ``splits`` in split ``into``, the other two empty (``--all-to``).

    Raises:
        ConfigError: ``into`` is not train, dev or test.
    """
    check_split_name(into)
    merged: dict[str, list[T]] = {name: [] for name in SPLITS}
    for name in SPLITS:
        merged[into].extend(splits.get(name, []))
    return merged
