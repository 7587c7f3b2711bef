"""``seqkit data prepare`` for LibriSpeech and Libri-Light: word transcripts -> phone manifests.

Output directory (the same files as a TIMIT prepare, so training and evaluation read it as is)::

    train.jsonl  dev.jsonl  test.jsonl   manifests, TIMIT-39 phones (seqkit.corpora.lexicon)
    stats.json                           global CMVN statistics on (a sample of) train
    oov.tsv                              words CMUdict lacks and the phones espeak-ng gave them
    skipped.json                         with skip_bad only: each skipped utterance and why
    checksums.json                       length and SHA-256 of each file above, written last

The corpus has no phone timings and CTC and transducer training need none: every phone segment
is written as ``[0, 0, label]`` and ``words`` is empty. ``dialect`` holds the folder an
utterance came from (``train-clean-100``, ``1h/0/clean``).

Scale: pronunciations are looked up once per distinct word; the audio is only opened for its
header (length), in ``jobs`` processes, except for the train utterances the normalization
statistics are computed on: an evenly spaced sample of at most ``STATS_UTTERANCES`` (global mean
and variance of 123 features settle long before hours of speech; the TIMIT prepare uses all of
train because all of TIMIT's train set is 3.1 hours).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile
import torch

from seqkit.atomic import check_output_dir, staged_dir
from seqkit.audio.features import (
    FeatureConfig,
    FeatureStats,
    compute_features,
    compute_stats,
    one_torch_thread,
)
from seqkit.audio.load import load_audio
from seqkit.corpora.lexicon import Pronunciations, normalize_word, pronounce_words, write_oov
from seqkit.corpora.librispeech.layout import (
    LIBRISPEECH_SUBSETS,
    LibriLayout,
    LibriUtterance,
    choose_subsets,
    find_layout,
    read_folder,
)
from seqkit.corpora.prepared import PrepareSummary, SkippedUtterance, write_prepared
from seqkit.corpora.train_stats import merge_stats, stats_sample
from seqkit.data.manifest import Utterance
from seqkit.data.splits import merge_splits
from seqkit.errors import AudioError, ConfigError, CorpusError, SeqkitError
from seqkit.locks import output_lock
from seqkit.progress import ProgressFn

_CHUNK = 64  # utterances per worker task: progress granularity vs. pickling overhead


@dataclass(frozen=True)
class LibriPrepareSummary(PrepareSummary):
    """:class:`PrepareSummary` plus where the phones came from.

    Attributes:
        subsets: the corpus subsets of each split.
        words: distinct words over all splits.
        oov_words: distinct words CMUdict lacks (pronounced by espeak-ng; listed in oov.tsv).
        oov_tokens: running words among them, over all splits.
        tokens: running words over all splits.
        stats_utterances: train utterances the normalization statistics were computed on.
    """

    subsets: dict[str, tuple[str, ...]] | None = None
    words: int = 0
    oov_words: int = 0
    oov_tokens: int = 0
    tokens: int = 0
    stats_utterances: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the TIMIT summary's keys plus ``subsets`` and ``lexicon``."""
        return {
            **super().to_dict(),
            "subsets": {k: list(v) for k, v in (self.subsets or {}).items()},
            "lexicon": {
                "source": "CMUdict (cmudict package), espeak-ng en-us letter-to-sound for OOV",
                "words": self.words,
                "oov_words": self.oov_words,
                "tokens": self.tokens,
                "oov_tokens": self.oov_tokens,
            },
            "stats_utterances": self.stats_utterances,
        }


def is_libri_corpus(corpus_dir: str | os.PathLike[str]) -> bool:
    """Whether ``corpus_dir`` holds LibriSpeech or Libri-Light folders (see ``layout``)."""
    return find_layout(corpus_dir) is not None


def prepare_librispeech(
    corpus_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    train: Sequence[str] | None = None,
    dev: str = "dev-clean",
    test: str = "test-clean",
    features: FeatureConfig = FeatureConfig(),
    jobs: int = 1,
    skip_bad: bool = False,
    force: bool = False,
    all_to: str | None = None,
    progress: ProgressFn | None = None,
) -> LibriPrepareSummary:
    """Write phone manifests and feature statistics for a LibriSpeech / Libri-Light corpus.

    Args:
        corpus_dir: a folder as :mod:`seqkit.corpora.librispeech.layout` describes.
        out_dir: directory to create (see the module docstring).
        train: train subsets (LibriSpeech or Libri-Light names); None = those present.
        dev: ``dev-clean`` (default) or ``dev-other``.
        test: ``test-clean`` (default) or ``test-other``.
        features: front end of the statistics. Default: 123-dim fbank.
        jobs: worker processes reading audio. Default: 1 (in this process).
        skip_bad: leave out utterances whose audio is missing or unreadable (listed in
            skipped.json) instead of stopping. Default: False.
        force: replace an existing non-empty ``out_dir``. Default: False.
        all_to: put the utterances of every chosen subset in this split (train, dev or test);
            without train there is no ``stats.json``.
        progress: called as ``progress(description, done, total)``.

    Returns:
        Per-split counts, the subsets used and the lexicon counts.

    Raises:
        OutputExistsError: ``out_dir`` is not empty and ``force`` is False.
        ConfigError: an unknown subset name or ``jobs`` < 1.
        CorpusError: not a LibriSpeech layout, a chosen subset is missing, a transcript is
            malformed or the same utterance is in two splits.
        AudioError: an audio file is missing or unreadable (without ``skip_bad``).
    """
    corpus, out = Path(corpus_dir), Path(out_dir)
    layout = find_layout(corpus)
    if layout is None:
        raise CorpusError(
            f"{corpus} has no LibriSpeech/ or librispeech_finetuning/ folder: download one with "
            "`seqkit data download librispeech CORPUS`"
        )
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, found {jobs}")
    with output_lock(out, command="seqkit data prepare"):  # before any work
        check_output_dir(out, force=force)
        subsets = choose_subsets(layout, tuple(train) if train is not None else None, dev, test)
        splits = _read_splits(layout, subsets)
        if all_to is not None:
            splits = merge_splits(splits, all_to)
        pronunciations = pronounce_words(
            w for utts in splits.values() for u in utts for w in u.words)
        with staged_dir(out) as tmp:  # published when the block ends, deleted on an error
            summary = _prepare_into(tmp, corpus, out, splits, pronunciations, features, jobs,
                                    skip_bad, progress)
    return LibriPrepareSummary(**{**summary, "subsets": subsets})


def _read_splits(
    layout: LibriLayout, subsets: dict[str, tuple[str, ...]]
) -> dict[str, list[LibriUtterance]]:
    present = layout.present_subsets()
    splits: dict[str, list[LibriUtterance]] = {}
    seen: dict[str, str] = {}
    for split, names in subsets.items():
        splits[split] = []
        for name in names:
            root = layout.librispeech if name in LIBRISPEECH_SUBSETS else layout.librilight
            for folder in present[name]:
                for utt in read_folder(folder, root):
                    if utt.id in seen:
                        raise CorpusError(
                            f"utterance {utt.id} is in both {seen[utt.id]} and {name}: Libri-Light "
                            "is cut from LibriSpeech's train sets; name one of them with --subsets"
                        )
                    seen[utt.id] = name
                    splits[split].append(utt)
    return splits


def _prepare_into(
    tmp: Path,
    corpus: Path,
    out: Path,
    splits: dict[str, list[LibriUtterance]],
    pronunciations: Pronunciations,
    features: FeatureConfig,
    jobs: int,
    skip_bad: bool,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    skipped: list[SkippedUtterance] = []
    manifests: dict[str, list[Utterance]] = {}
    stats: FeatureStats | None = None
    stats_count = 0
    for split, utts in splits.items():
        sample = stats_sample(len(utts)) if split == "train" else frozenset()
        stats_count = len(sample) if split == "train" else stats_count
        results, parts = _read_audio(utts, sample, features, jobs, f"{split}: audio", progress)
        manifests[split] = []
        for utt, result in zip(utts, results, strict=True):
            if isinstance(result, str):
                if not skip_bad:
                    raise AudioError(f"{result} (or prepare with --skip-bad to leave it out)")
                skipped.append(SkippedUtterance(utt.id, split, str(utt.audio), result))
                continue
            manifests[split].append(_utterance(utt, result, pronunciations))
        if split == "train" and utts:
            stats = merge_stats(parts, corpus)
    write_oov(tmp / "oov.tsv", pronunciations)  # before write_prepared: its checksums cover it
    summaries = write_prepared(tmp, manifests, features=features, stats=stats, skipped=skipped,
                               skip_bad=skip_bad, corpus=corpus, extra=["oov.tsv"])
    tokens = [word for utts in splits.values() for u in utts for word in u.words]
    oov_tokens = sum(1 for w in tokens if normalize_word(w) in pronunciations.oov)
    return {
        "corpus_dir": corpus.resolve(),
        "out_dir": out.resolve(),
        "features": features,
        "splits": summaries,
        "skipped": tuple(skipped),
        "stats_frames": stats.frames if stats is not None else 0,
        "words": len(pronunciations.phones),
        "oov_words": len(pronunciations.oov),
        "oov_tokens": oov_tokens,
        "tokens": len(tokens),
        "stats_utterances": stats_count,
    }


def _utterance(utt: LibriUtterance, header: tuple[int, int], lexicon: Pronunciations) -> Utterance:
    samples, rate = header
    phones = lexicon.transcript_phones(utt.words)
    if not phones:
        raise CorpusError(f"{utt.transcript}: utterance {utt.id} has no pronounceable word")
    assert utt.audio is not None  # _read_audio reports a missing file as an error string
    return Utterance(
        id=utt.id,
        audio=str(utt.audio.resolve()),
        samples=samples,
        sample_rate=rate,
        speaker=utt.speaker,
        dialect=utt.folder,
        phones=tuple((0, 0, p) for p in phones),
        words=(),
        text=" ".join(utt.words),
    )


# One task: (audio paths, which of them get features, the feature config).
_Task = tuple[list[Path | None], list[bool], FeatureConfig]
# Its result: per utterance (samples, rate) or an error message; stats of the featured ones.
_Result = tuple[list[tuple[int, int] | str], FeatureStats | None]


def _read_audio(
    utts: list[LibriUtterance],
    sample: frozenset[int],
    features: FeatureConfig,
    jobs: int,
    description: str,
    progress: ProgressFn | None,
) -> tuple[list[tuple[int, int] | str], list[FeatureStats]]:
    """Audio headers of every utterance (in order) and stats of the sample, over ``jobs``."""
    tasks: list[_Task] = [
        ([u.audio for u in utts[i:i + _CHUNK]],
         [j in sample for j in range(i, min(i + _CHUNK, len(utts)))], features)
        for i in range(0, len(utts), _CHUNK)
    ]
    results: list[tuple[int, int] | str] = []
    parts: list[FeatureStats] = []
    if progress is not None:
        progress(description, 0, len(utts))

    def collect(done: int, result: _Result) -> None:
        headers, stats = result
        results.extend(headers)
        if stats is not None:
            parts.append(stats)
        if progress is not None:
            progress(description, done, len(utts))

    if jobs == 1 or len(tasks) == 1:
        for task in tasks:
            collect(len(results) + len(task[0]), _read_chunk(task))
        return results, parts
    context = multiprocessing.get_context("forkserver")
    with context.Pool(min(jobs, len(tasks))) as pool:
        for result in pool.imap(_read_chunk, tasks):  # in order: headers line up with utts
            collect(len(results) + len(result[0]), result)
    return results, parts


def _read_chunk(task: _Task) -> _Result:
    """Worker: headers of a chunk's audio files, stats over those flagged for features."""
    paths, want, config = task
    headers: list[tuple[int, int] | str] = []
    feats: list[torch.Tensor] = []
    with one_torch_thread():
        for path, featured in zip(paths, want, strict=True):
            try:
                header = _header(path)
                if featured:
                    assert path is not None  # _header raised for a missing file
                    feats.append(compute_features(load_audio(path, config.sample_rate), config))
            except SeqkitError as err:
                headers.append(str(err))
                continue
            headers.append(header)
    stats = compute_stats(feats) if any(f.shape[0] for f in feats) else None
    return headers, stats


def _header(path: Path | None) -> tuple[int, int]:
    if path is None:
        raise AudioError("audio file missing for a transcript line: unpack the archive again")
    try:
        info = soundfile.info(path)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(
            f"cannot read audio file {path} ({err}): unpack the archive again"
        ) from None
    if info.frames <= 0:
        raise AudioError(f"audio file {path} has no samples: unpack the archive again")
    return int(info.frames), int(info.samplerate)
