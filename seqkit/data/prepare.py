"""``seqkit data prepare``: turn a TIMIT-layout corpus into manifests and feature statistics.

Output directory::

    train.jsonl  dev.jsonl  test.jsonl   manifests (seqkit.data.manifest)
    stats.json                           global CMVN statistics on train + the FeatureConfig
                                         (none for an evaluation-only corpus: nothing to train)
    skipped.json                         with skip_bad only: each skipped utterance and why

An evaluation-only corpus (the NLTK TIMIT sample: TIMIT training speakers, all in test) gets
empty train and dev manifests; models trained elsewhere are scored on its test split.

Everything is built in a hidden temp directory beside the output and renamed into place at the
end, so an error or an interrupt never leaves a partial output behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqkit.atomic import check_output_dir, staged_dir, write_json
from seqkit.audio.features import (
    FeatureConfig,
    FeatureStats,
    compute_features,
    compute_stats,
    one_torch_thread,
    write_stats,
)
from seqkit.data.manifest import Utterance, write_manifest
from seqkit.data.timit import (
    NLTK_SAMPLE_PART,
    SPLITS,
    UtteranceFiles,
    find_utterances,
    read_utterance,
    split_utterances,
)
from seqkit.errors import AudioError, ConfigError, CorpusError, SeqkitError
from seqkit.progress import ProgressFn


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
            :data:`seqkit.data.timit.CLAMP_SAMPLES`).
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
) -> tuple[SplitSummary, ...]:
    """Write what every prepared directory holds, from utterances already read and checked.

    The corpus readers (TIMIT here, LibriSpeech in :mod:`seqkit.data.librispeech_prepare`)
    differ in how they read and label utterances, not in these files, which training and
    evaluation read the same way for every corpus.

    Args:
        out: the (staged) prepared directory.
        manifests: the utterances of each of train, dev and test.
        features: the front end ``stats`` were computed with.
        stats: train normalization statistics; None writes no ``stats.json`` (evaluation only).
        skipped: utterances left out and why, written to ``skipped.json`` with ``skip_bad``.
        skip_bad: whether bad utterances were skipped (else there is no ``skipped.json``).

    Returns:
        Counts for train, dev and test, in that order.
    """
    for name in SPLITS:
        write_manifest(out / f"{name}.jsonl", manifests[name])
    if stats is not None:
        write_stats(out / "stats.json", features, stats)
    if skip_bad:
        write_json(out / "skipped.json", [s.to_dict() for s in skipped])
    return tuple(_summarize(name, manifests[name]) for name in SPLITS)


def _summarize(name: str, utterances: list[Utterance]) -> SplitSummary:
    return SplitSummary(
        name=name,
        speakers=len({u.speaker for u in utterances}),
        utterances=len(utterances),
        seconds=sum(u.duration for u in utterances),
        phones=sum(len(u.phones) for u in utterances),
    )


def prepare_corpus(
    corpus_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    features: FeatureConfig = FeatureConfig(),
    skip_bad: bool = False,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> PrepareSummary:
    """Read and check a TIMIT-layout corpus; write manifests and train feature statistics.

    Splits come from the corpus's ``splits.json`` or TIMIT's standard lists (see
    :func:`seqkit.data.timit.split_utterances`); SA sentences are left out. The NLTK TIMIT sample
    goes to test in full and gets no ``stats.json`` (see the module docstring).

    Args:
        corpus_dir: root of a real TIMIT copy (any name case), of the NLTK TIMIT sample
            (``nltk_data/corpora/timit``) or of ``seqkit data synth`` output.
        out_dir: directory to create with ``train.jsonl``, ``dev.jsonl``, ``test.jsonl``,
            ``stats.json`` (and ``skipped.json`` with ``skip_bad``).
        features: front end the statistics are computed with. Default: 123-dim fbank.
        skip_bad: leave out utterances that fail their checks (listed in ``skipped.json``)
            instead of stopping at the first. Default: False.
        force: replace an existing non-empty ``out_dir``. Default: False.
        progress: called as ``progress(description, done, total)`` while utterances are read.

    torch runs single-threaded during the call (restored after): per-utterance feature
    extraction gains nothing from intra-op threads and loses a lot on a busy CPU.

    Returns:
        Per-split counts, skipped utterances and where the output went.

    Raises:
        OutputExistsError: ``out_dir`` exists and is not empty, and ``force`` is False.
        CorpusError: the corpus is not in TIMIT's layout, or an utterance's transcription is
            missing or malformed (without ``skip_bad``), or no train utterance is usable.
        AudioError: an utterance's audio is missing, unreadable or empty (without ``skip_bad``).
    """
    corpus = Path(corpus_dir)
    out = Path(out_dir)
    check_output_dir(out, force=force)
    splits = split_utterances(corpus, find_utterances(corpus))

    with staged_dir(out) as tmp, one_torch_thread():  # published when the block ends
        summary = _prepare_into(tmp, corpus, out, splits, features, skip_bad, progress)
    return summary


def _prepare_into(
    tmp: Path,
    corpus: Path,
    out: Path,
    splits: dict[str, list[UtteranceFiles]],
    features: FeatureConfig,
    skip_bad: bool,
    progress: ProgressFn | None,
) -> PrepareSummary:
    skipped: list[SkippedUtterance] = []
    clamped = 0

    def read_split(name: str) -> Iterator[tuple[Utterance, torch.Tensor | None]]:
        """Good utterances of a split, with their features for train (None otherwise)."""
        nonlocal clamped
        files = splits[name]
        description = f"{name}: reading{' + features' if name == 'train' else ''}"
        if progress is not None:
            progress(description, 0, len(files))
        for done, utt_files in enumerate(files, start=1):
            try:
                utterance, wave, moved = read_utterance(utt_files)
                clamped += moved
                feats = _features(utterance, wave, features) if name == "train" else None
            except (CorpusError, AudioError) as err:
                if not skip_bad:
                    raise
                path = str(utt_files.any_path())
                skipped.append(SkippedUtterance(utt_files.id, name, path, str(err)))
            else:
                yield utterance, feats
            if progress is not None:
                progress(description, done, len(files))

    manifests: dict[str, list[Utterance]] = {name: [] for name in SPLITS}

    def train_features() -> Iterator[torch.Tensor]:
        for utterance, feats in read_split("train"):
            manifests["train"].append(utterance)
            assert feats is not None  # read_split computes them for train
            yield feats

    evaluation_only = not splits["train"] and any(
        u.part == NLTK_SAMPLE_PART for u in splits["test"]
    )
    stats = None if evaluation_only else _train_stats(corpus, train_features(), skipped, manifests)
    for name in ("dev", "test"):
        manifests[name] = [utterance for utterance, _ in read_split(name)]
    summaries = write_prepared(tmp, manifests, features=features, stats=stats, skipped=skipped,
                               skip_bad=skip_bad)
    note = (
        "NLTK TIMIT sample: every utterance is in test (its speakers are TIMIT training "
        "speakers): an evaluation set for models not trained on TIMIT; no stats.json"
        if evaluation_only else ""
    )
    return PrepareSummary(
        corpus_dir=corpus.resolve(),
        out_dir=out.resolve(),
        features=features,
        splits=summaries,
        skipped=tuple(skipped),
        stats_frames=stats.frames if stats is not None else 0,
        clamped=clamped,
        note=note,
    )


def _train_stats(
    corpus: Path,
    feature_stream: Iterator[torch.Tensor],
    skipped: list[SkippedUtterance],
    manifests: dict[str, list[Utterance]],
) -> FeatureStats:
    """Normalization statistics of the train features (streamed: one utterance at a time)."""
    try:
        return compute_stats(feature_stream)
    except ConfigError:
        if manifests["train"]:
            raise
        first = skipped[0].reason if skipped else "none found"
        raise CorpusError(
            f"{corpus}: no usable train utterance: all {len(skipped)} failed their checks "
            f"(first: {first}); fix the corpus or synthesize it again"
        ) from None


def _features(utterance: Utterance, wave: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    try:
        return compute_features(wave, config)
    except SeqkitError as err:
        raise AudioError(f"{utterance.audio}: {err}") from None


