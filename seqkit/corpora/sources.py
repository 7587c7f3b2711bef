"""Which reader prepares a corpus: named with ``--corpus``, or found from its layout.

``seqkit data prepare SRC OUT`` without ``--corpus`` looks at SRC in this order:

1. a file ``*.jsonl.gz`` / ``*.jsonl``: a lhotse CutSet (:mod:`seqkit.corpora.lhotse_manifests`);
2. ``LibriSpeech/`` or ``librispeech_finetuning/`` inside: seqkit's LibriSpeech reader;
3. ``wav.scp`` and ``text`` (or subfolders named for splits holding them): a Kaldi data dir
   (:mod:`seqkit.corpora.kaldi`);
4. ``*_recordings_*.jsonl.gz`` / ``*_supervisions_*`` / ``*_cuts_*`` inside: lhotse manifests;
5. anything else: TIMIT's layout (real TIMIT, the NLTK sample, ``seqkit data synth`` output),
   whose reader says what it expected when SRC is none of these.

``--corpus timit`` / ``librispeech`` name seqkit's readers; ``--corpus kaldi`` and
``--corpus lhotse-manifests`` name the two layouts; any other name is a lhotse recipe
(:mod:`seqkit.corpora.lhotse_recipes`), ``lhotse:NAME`` forcing lhotse's even for TIMIT.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqkit.atomic import check_output_dir
from seqkit.audio.features import FeatureConfig
from seqkit.corpora.kaldi import is_kaldi_dir, kaldi_split_dirs, read_kaldi
from seqkit.corpora.lhotse_manifests import is_lhotse_manifest, read_lhotse_manifests
from seqkit.corpora.lhotse_recipes import LHOTSE_PREFIX, OWN_READERS, read_recipe
from seqkit.corpora.librispeech.prepare import is_libri_corpus, prepare_librispeech
from seqkit.corpora.prepared import PrepareSummary
from seqkit.corpora.source import CorpusSource
from seqkit.corpora.source_prepare import prepare_source
from seqkit.corpora.timit.prepare import prepare_corpus
from seqkit.data.splits import check_split_name
from seqkit.errors import ConfigError, CorpusError
from seqkit.progress import ProgressFn

KALDI = "kaldi"
LHOTSE_MANIFESTS = "lhotse-manifests"
LIBRISPEECH = "librispeech"
TIMIT = "timit"


def find_reader(corpus_dir: str | os.PathLike[str], corpus: str | None = None) -> str:
    """The reader for a corpus: ``timit``, ``librispeech``, ``kaldi``, ``lhotse-manifests`` or
    ``lhotse:<recipe>`` (see the module docstring).

    Raises:
        CorpusError: a file that is not a lhotse manifest.
    """
    path = Path(corpus_dir)
    if corpus is not None:
        name = corpus.strip().lower()
        if name in (*OWN_READERS, KALDI, LHOTSE_MANIFESTS):
            return name
        return name if name.startswith(LHOTSE_PREFIX) else LHOTSE_PREFIX + name
    if path.is_file():
        if is_lhotse_manifest(path):
            return LHOTSE_MANIFESTS
        raise CorpusError(
            f"{path} is a file: expected a corpus folder, a Kaldi data dir or a lhotse CutSet "
            "(*.jsonl.gz)"
        )
    if is_libri_corpus(path):
        return LIBRISPEECH
    if is_kaldi_dir(path) or kaldi_split_dirs(path):
        return KALDI
    if path.is_dir() and is_lhotse_manifest(path):
        return LHOTSE_MANIFESTS
    return TIMIT


def read_source(
    reader: str, corpus_dir: str | os.PathLike[str], *,
    options: dict[str, Any] | None = None, jobs: int = 1,
) -> CorpusSource:
    """The corpus source of a Kaldi, lhotse-manifest or lhotse-recipe reader.

    Raises:
        ConfigError: ``options`` given to a reader that is not a lhotse recipe.
        CorpusError: what the reader raises.
    """
    if options and not reader.startswith(LHOTSE_PREFIX):
        raise ConfigError(f"--lhotse-option is for lhotse's recipes (--corpus NAME), not for a "
                          f"{reader} corpus: drop it")
    if reader == KALDI:
        return read_kaldi(corpus_dir)
    if reader == LHOTSE_MANIFESTS:
        return read_lhotse_manifests(corpus_dir)
    return read_recipe(reader, corpus_dir, options=options, jobs=jobs)


def prepare_any(
    corpus_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    corpus: str | None = None,
    options: dict[str, Any] | None = None,
    features: FeatureConfig = FeatureConfig(),
    seed: int = 0,
    all_to: str | None = None,
    skip_bad: bool = False,
    force: bool = False,
    jobs: int = 1,
    train: Sequence[str] | None = None,
    dev: str | None = None,
    test: str | None = None,
    progress: ProgressFn | None = None,
) -> PrepareSummary:
    """Prepare any corpus seqkit reads (see the module docstring for which reader).

    Args:
        corpus_dir: the corpus (folder, or a lhotse CutSet file).
        out_dir: the prepared folder to create.
        corpus: the reader or lhotse recipe; None: found from the layout.
        options: a lhotse recipe's further arguments.
        features: front end of the statistics.
        seed: the seeded speaker split's seed (corpora that define no splits).
        all_to: put everything in this split (train, dev or test).
        skip_bad: leave out bad utterances (listed in skipped.json) instead of stopping.
        force: replace a non-empty ``out_dir``.
        jobs: worker processes reading audio (LibriSpeech, lhotse, Kaldi).
        train, dev, test: LibriSpeech subsets (None: its defaults).
        progress: called as ``progress(description, done, total)``.

    Raises:
        ConfigError: LibriSpeech subsets for another corpus, an unknown split or recipe.
        CorpusError, AudioError, OutputExistsError: as the reader's prepare raises them.
    """
    if all_to is not None:
        check_split_name(all_to)
    reader = find_reader(corpus_dir, corpus)
    if reader != LIBRISPEECH and (train or dev or test):
        raise ConfigError(
            f"--subsets, --dev and --test are for LibriSpeech layouts, but {corpus_dir} is read "
            f"as {reader}: drop them"
        )
    if reader == TIMIT:
        if options:
            raise ConfigError("--lhotse-option is for lhotse's recipes: drop it for TIMIT, or "
                              "read the corpus with lhotse's recipe (--corpus lhotse:timit)")
        return prepare_corpus(corpus_dir, out_dir, features=features, skip_bad=skip_bad,
                              force=force, all_to=all_to, progress=progress)
    if reader == LIBRISPEECH:
        return prepare_librispeech(
            corpus_dir, out_dir, train=train, dev=dev or "dev-clean", test=test or "test-clean",
            features=features, jobs=jobs, skip_bad=skip_bad, force=force, all_to=all_to,
            progress=progress)
    check_output_dir(out_dir, force=force)  # before the reader's work, which may be long
    source = read_source(reader, corpus_dir, options=options, jobs=jobs)
    return prepare_source(source, out_dir, features=features, seed=seed, all_to=all_to,
                          skip_bad=skip_bad, force=force, jobs=jobs, progress=progress)
