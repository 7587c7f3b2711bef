"""The prepared folder every corpus becomes: manifests, feature statistics, what was skipped.

Each corpus reads and labels its utterances its own way (:mod:`seqkit.corpora.timit.prepare`,
:mod:`seqkit.corpora.librispeech.prepare`); :func:`write_prepared` writes what they have in
common, which training and evaluation read the same way for every corpus::

    train.jsonl  dev.jsonl  test.jsonl   manifests (seqkit.data.manifest)
    stats.json                           global CMVN statistics on train + the FeatureConfig
                                         (none for an evaluation-only corpus: nothing to train)
    skipped.json                         with skip_bad only: each skipped utterance and why
    (a corpus's own records, written before write_prepared: LibriSpeech's oov.tsv; for lhotse
    and Kaldi corpora splits.json, the speakers of each split and the rule, and oov.tsv)
    audio/                               lhotse / Kaldi corpora only: utterances cut from longer
                                         recordings or resampled, 16-bit FLAC at the front end's
                                         rate (manifests name them by absolute path)
    checksums.json                       length and SHA-256 of each file above, written last;
                                         readers verify what they read (seqkit.data.checksums)

An evaluation-only corpus (the NLTK TIMIT sample: TIMIT training speakers, all in test) gets
empty train and dev manifests; models trained elsewhere are scored on its test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqkit.atomic import write_json
from seqkit.audio.features import FeatureConfig, FeatureStats, write_stats
from seqkit.data.checksums import write_checksums
from seqkit.data.manifest import Utterance, write_manifest
from seqkit.data.splits import SPLITS, split_manifest


@dataclass(frozen=True)
class SplitSummary:
    """What one prepared split holds.

    Attributes:
        name: ``train``, ``dev`` or ``test``.
        speakers: distinct speakers.
        utterances: utterances written to the manifest.
        seconds: total audio duration.
        phones: phone segments (61-phone labels) over all utterances.
    """

    name: str
    speakers: int
    utterances: int
    seconds: float
    phones: int

    @property
    def hours(self) -> float:
        """Total audio duration in hours."""
        return self.seconds / 3600

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "split": self.name,
            "speakers": self.speakers,
            "utterances": self.utterances,
            "hours": round(self.hours, 4),
            "phones": self.phones,
        }


@dataclass(frozen=True)
class SkippedUtterance:
    """An utterance left out by ``skip_bad``, with the error that would have stopped prepare."""

    id: str
    split: str
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-able form."""
        return {"id": self.id, "split": self.split, "path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class PrepareSummary:
    """Result of :func:`prepare_corpus`.

    Attributes:
        corpus_dir: the corpus read.
        out_dir: the directory written.
        features: the feature config the statistics were computed with.
        splits: per-split summaries, in train / dev / test order.
        skipped: utterances left out (empty unless ``skip_bad``).
        stats_frames: train frames the normalization statistics were computed on.
        clamped: last boundaries moved back to the end of the audio (see
            :data:`seqkit.corpora.timit.layout.CLAMP_SAMPLES`).
        note: a sentence about the corpus for the reader ("" when there is nothing to say).
    """

    corpus_dir: Path
    out_dir: Path
    features: FeatureConfig
    splits: tuple[SplitSummary, ...]
    skipped: tuple[SkippedUtterance, ...] = field(default=())
    stats_frames: int = 0
    clamped: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what ``seqkit data prepare --format json`` prints)."""
        return {
            "corpus": str(self.corpus_dir),
            "out": str(self.out_dir),
            "features": self.features.to_dict(),
            "splits": [s.to_dict() for s in self.splits],
            "skipped": [s.to_dict() for s in self.skipped],
            "stats_frames": self.stats_frames,
            "clamped_boundaries": self.clamped,
            "note": self.note,
        }


def write_prepared(
    out: Path,
    manifests: dict[str, list[Utterance]],
    *,
    features: FeatureConfig,
    stats: FeatureStats | None,
    skipped: list[SkippedUtterance],
    skip_bad: bool,
    corpus: Path | None = None,
    extra: Sequence[str] = (),
) -> tuple[SplitSummary, ...]:
    """Write what every prepared directory holds, from utterances already read and checked.

    The corpus readers (TIMIT here, LibriSpeech in :mod:`seqkit.corpora.librispeech.prepare`)
    differ in how they read and label utterances, not in these files, which training and
    evaluation read the same way for every corpus.

    Args:
        out: the (staged) prepared directory.
        manifests: the utterances of each of train, dev and test.
        features: the front end ``stats`` were computed with.
        stats: train normalization statistics; None writes no ``stats.json`` (evaluation only).
        skipped: utterances left out and why, written to ``skipped.json`` with ``skip_bad``.
        skip_bad: whether bad utterances were skipped (else there is no ``skipped.json``).
        corpus: the corpus read, recorded in ``checksums.json`` for the message a reader gives
            when a file changed (the command that makes the folder again).
        extra: files of ``out`` the corpus reader wrote itself, before this call (LibriSpeech's
            ``oov.tsv``), listed in ``checksums.json`` with the rest.

    Returns:
        Counts for train, dev and test, in that order.
    """
    written = []
    for name in SPLITS:
        write_manifest(split_manifest(out, name), manifests[name])
        written.append(split_manifest(out, name).name)
    if stats is not None:
        write_stats(out / "stats.json", features, stats)
        written.append("stats.json")
    if skip_bad:
        write_json(out / "skipped.json", [s.to_dict() for s in skipped])
        written.append("skipped.json")
    written.extend(extra)
    write_checksums(out, written, corpus=corpus)  # last: it covers what is above
    return tuple(_summarize(name, manifests[name]) for name in SPLITS)


def _summarize(name: str, utterances: list[Utterance]) -> SplitSummary:
    return SplitSummary(
        name=name,
        speakers=len({u.speaker for u in utterances}),
        utterances=len(utterances),
        seconds=sum(u.duration for u in utterances),
        phones=sum(len(u.phones) for u in utterances),
    )
