"""``seqkit data prepare`` for a TIMIT-layout corpus: real TIMIT, the NLTK sample, synthesized.

Reads and checks every utterance (audio, ``.PHN`` / ``.WRD`` boundaries), computes the train
features' normalization statistics as it goes, and hands the rest to the shared writer
(:func:`seqkit.corpora.prepared.write_prepared`). The NLTK TIMIT sample (TIMIT training speakers)
goes to test in full and gets no ``stats.json``: it scores models trained elsewhere.

Everything is built in a hidden temp directory beside the output and renamed into place at the
end, so an error or an interrupt never leaves a partial output behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch

from seqkit.atomic import check_output_dir, staged_dir
from seqkit.audio.features import (
    FeatureConfig,
    FeatureStats,
    compute_features,
    compute_stats,
    one_torch_thread,
)
from seqkit.corpora.prepared import PrepareSummary, SkippedUtterance, write_prepared
from seqkit.corpora.timit.layout import (
    NLTK_SAMPLE_PART,
    UtteranceFiles,
    find_utterances,
    read_utterance,
    split_utterances,
)
from seqkit.data.manifest import Utterance
from seqkit.data.splits import SPLITS, merge_splits
from seqkit.errors import AudioError, ConfigError, CorpusError, SeqkitError
from seqkit.locks import output_lock
from seqkit.progress import ProgressFn


def prepare_corpus(
    corpus_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    features: FeatureConfig = FeatureConfig(),
    skip_bad: bool = False,
    force: bool = False,
    all_to: str | None = None,
    progress: ProgressFn | None = None,
) -> PrepareSummary:
    """Read and check a TIMIT-layout corpus; write manifests and train feature statistics.

    Splits come from the corpus's ``splits.json`` or TIMIT's standard lists (see
    :func:`seqkit.corpora.timit.layout.split_utterances`); SA sentences are left out. The NLTK
    TIMIT sample goes to test in full and gets no ``stats.json`` (see the module docstring).

    Args:
        corpus_dir: root of a real TIMIT copy (any name case), of the NLTK TIMIT sample
            (``nltk_data/corpora/timit``) or of ``seqkit data synth`` output.
        out_dir: directory to create with ``train.jsonl``, ``dev.jsonl``, ``test.jsonl``,
            ``stats.json`` (and ``skipped.json`` with ``skip_bad``).
        features: front end the statistics are computed with. Default: 123-dim fbank.
        skip_bad: leave out utterances that fail their checks (listed in ``skipped.json``)
            instead of stopping at the first. Default: False.
        force: replace an existing non-empty ``out_dir``. Default: False.
        all_to: put every utterance (SA sentences aside) in this split (train, dev or test)
            instead of the corpus's splits; without train there is no ``stats.json``.
        progress: called as ``progress(description, done, total)`` while utterances are read.

    torch runs single-threaded during the call (restored after): per-utterance feature
    extraction gains nothing from intra-op threads and loses a lot on a busy CPU.

    Returns:
        Per-split counts, skipped utterances and where the output went.

    Raises:
        OutputExistsError: ``out_dir`` exists and is not empty, and ``force`` is False.
        OutputLockedError: another process writes ``out_dir``.
        CorpusError: the corpus is not in TIMIT's layout, or an utterance's transcription is
            missing or malformed (without ``skip_bad``), or no train utterance is usable.
        AudioError: an utterance's audio is missing, unreadable or empty (without ``skip_bad``).
    """
    corpus = Path(corpus_dir)
    out = Path(out_dir)
    # the lock first: a second prepare into OUT fails now instead of replacing the first's
    with output_lock(out, command="seqkit data prepare"):
        check_output_dir(out, force=force)
        utterances = find_utterances(corpus)
        if all_to is not None:
            splits = merge_splits(
                {"train": [u for u in utterances if not u.is_dialect_sentence]}, all_to)
        else:
            splits = split_utterances(corpus, utterances)
        with staged_dir(out) as tmp, one_torch_thread():  # published when the block ends
            summary = _prepare_into(tmp, corpus, out, splits, features, skip_bad, all_to,
                                    progress)
    return summary


def _prepare_into(
    tmp: Path,
    corpus: Path,
    out: Path,
    splits: dict[str, list[UtteranceFiles]],
    features: FeatureConfig,
    skip_bad: bool,
    all_to: str | None,
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

    nltk = any(u.part == NLTK_SAMPLE_PART for name in SPLITS for u in splits[name])
    evaluation_only = not splits["train"] and (nltk or all_to is not None)
    stats = None if evaluation_only else _train_stats(corpus, train_features(), skipped, manifests)
    for name in ("dev", "test"):
        manifests[name] = [utterance for utterance, _ in read_split(name)]
    summaries = write_prepared(tmp, manifests, features=features, stats=stats, skipped=skipped,
                               skip_bad=skip_bad, corpus=corpus)
    if all_to is not None:
        note = f"every utterance in {all_to} (--all-to)" + (
            ": an evaluation set; no stats.json" if evaluation_only else "")
    elif evaluation_only:
        note = ("NLTK TIMIT sample: every utterance is in test (its speakers are TIMIT training "
                "speakers): an evaluation set for models not trained on TIMIT; no stats.json")
    else:
        note = ""
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


