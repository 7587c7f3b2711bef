"""How fast ``seqkit data prepare`` reads LibriSpeech: a train-clean-100-sized layout, timed.

The corpus has train-clean-100's shape (251 speakers, 2 chapters each, 28,614 utterances at the
default size; the real set has 28,539 in 585 chapters) with dev-clean and test-clean beside it
(40 speakers each, ~2,700 utterances), and transcripts with its statistics: ~34.7 words per
utterance drawn with Zipf frequencies from a 33,800-word vocabulary, 5% of it words CMUdict lacks
(made-up letter strings, which espeak-ng must pronounce). ``distinct_audio`` recordings of ~12 s
are synthesized and every other utterance hard-links one of them, so the audio is warm in the
page cache: a real 6.3 GB copy read cold adds the disk time of 28,539 FLAC headers and of the
statistics sample. Each ``jobs`` value is timed on the same corpus, one after the other.

On a shared machine wall time depends on the load, so each row also gives the load average and,
for ``jobs = 1`` (all work in this process), the CPU seconds: CPU seconds / jobs is the wall
time on an idle machine with that many free cores, give or take the pool's start-up.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import string
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from seqkit.bench.librispeech_layout import write_librispeech_layout
from seqkit.corpora.lexicon import load_cmudict
from seqkit.corpora.librispeech.prepare import prepare_librispeech
from seqkit.progress import ProgressFn

TRAIN_CLEAN_100 = 28_539  # utterances in LibriSpeech's train-clean-100
# train-clean-100 + dev-clean + test-clean: what `seqkit data prepare` reads for the 100 h recipes
REAL_TOTAL = TRAIN_CLEAN_100 + 2_703 + 2_620
_VOCABULARY = 33_800  # distinct words in train-clean-100's transcripts
_WORDS_PER_UTTERANCE = 34.7  # 990k running words / 28,539 utterances
_OOV_SHARE = 0.05  # of the distinct words (an assumption: LibriSpeech's real share is unmeasured)


def _texts(seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    known = sorted(w for w in load_cmudict() if w.isalpha())
    vocabulary = rng.sample(known, int(_VOCABULARY * (1 - _OOV_SHARE)))
    vocabulary += ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 11)))
                   for _ in range(_VOCABULARY - len(vocabulary))]
    rng.shuffle(vocabulary)
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)  # Zipf: frequency ~ 1 / rank
    generator = np.random.default_rng(seed)
    while True:
        count = max(1, int(generator.normal(_WORDS_PER_UTTERANCE, 12)))
        picks = generator.choice(len(vocabulary), size=count, p=weights / weights.sum())
        yield " ".join(vocabulary[i] for i in picks)


def run(
    *,
    utterances: int = TRAIN_CLEAN_100,
    distinct_audio: int = 400,
    jobs: tuple[int, ...] = (1, 2),
    workdir: Path | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Time prepare on a synthesized train-clean-100-sized layout, once per ``jobs`` value.

    Returns:
        One row per ``jobs``: utterances, wall and (jobs = 1) CPU seconds, utterances per
        second, the load average, and the minutes train-clean-100 + dev-clean + test-clean
        (33,862 utterances) take at that rate.
    """
    chapters_per_speaker = 2
    per_chapter = max(1, round(utterances / (251 * chapters_per_speaker)))
    shapes = {"train-clean-100": (251, chapters_per_speaker, per_chapter),
              "dev-clean": (40, 2, 34), "test-clean": (40, 2, 33)}
    root = Path(tempfile.mkdtemp(prefix="seqkit-bench-prepare-", dir=workdir))
    try:
        corpus = root / "corpus"
        total = write_librispeech_layout(corpus, shapes, _texts(0),
                                         distinct_audio=distinct_audio, progress=progress)
        rows = []
        for n in jobs:
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            summary = prepare_librispeech(corpus, root / f"prepared-{n}", jobs=n,
                                          progress=progress)
            seconds = time.perf_counter() - start
            cpu_end = resource.getrusage(resource.RUSAGE_SELF)
            cpu_seconds = (cpu_end.ru_utime - cpu.ru_utime) + (cpu_end.ru_stime - cpu.ru_stime)
            rows.append({
                "jobs": n,
                "utterances": total,
                "oov words": summary.oov_words,
                "stats utterances": summary.stats_utterances,
                "wall s": round(seconds, 1),
                "cpu s": round(cpu_seconds, 1) if n == 1 else None,
                "utt/s": round(total / seconds, 1),
                "load avg": round(os.getloadavg()[0], 1),
                "100h+dev+test min": round(seconds * REAL_TOTAL / total / 60, 2),
            })
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


# The synthesized corpus `seqkit bench prepare-lhotse` times: 112 espeak-ng speakers x 18
# sentences = 2,016 utterances (the "2,000-utterance synthesized corpus").
READERS_SPEAKERS = 112
READERS_SENTENCES = 18


def run_timit_readers(
    *,
    corpus: Path | None = None,
    speakers: int = READERS_SPEAKERS,
    sentences: int = READERS_SENTENCES,
    repeats: int = 3,
    workdir: Path | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Time ``prepare`` of one synthesized TIMIT-layout corpus by seqkit's reader and lhotse's.

    Both write a prepared folder from the same corpus in this process (one job each): seqkit's
    TIMIT reader (:func:`seqkit.corpora.timit.prepare.prepare_corpus`) and lhotse's ``timit``
    recipe through :func:`seqkit.corpora.sources.prepare_any` (``--corpus lhotse:timit``), which
    also checks that they wrote the same phones. Each is run ``repeats`` times, alternating, and
    the median is kept. lhotse is imported before the clock starts (about 1.5 s, once per
    process, not per corpus).

    Args:
        corpus: an existing synthesized corpus (e.g. ``demo/corpus``); None synthesizes one with
            espeak-ng (``speakers`` x ``sentences``, seed 0) in a temporary folder first.

    Returns:
        One row per reader: utterances, wall and CPU seconds, utterances per second, the ratio
        of its wall time to seqkit's, and the load average.

    Raises:
        CorpusError: the two readers disagree on an utterance's phones.
    """
    from seqkit.corpora.lhotse_manifests import import_lhotse
    from seqkit.corpora.sources import prepare_any
    from seqkit.corpora.timit.prepare import prepare_corpus
    from seqkit.data.manifest import read_manifest
    from seqkit.errors import CorpusError
    from seqkit.synth.corpus import synthesize_corpus

    root = Path(tempfile.mkdtemp(prefix="seqkit-bench-readers-", dir=workdir))
    try:
        if corpus is None:
            corpus = root / "corpus"
            synthesize_corpus(corpus, speakers=speakers, sentences=sentences, seed=0,
                              engines=("espeak",), jobs=os.cpu_count() or 1, progress=progress)
        import_lhotse()
        readers = {
            "seqkit (timit)": lambda out: prepare_corpus(corpus, out),
            "lhotse (lhotse:timit)": lambda out: prepare_any(corpus, out, corpus="lhotse:timit",
                                                             jobs=1),
        }
        runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in readers}
        for n in range(repeats):
            for name, prepare in readers.items():
                out = root / f"{name.split()[0]}-{n}"
                cpu = resource.getrusage(resource.RUSAGE_SELF)
                start = time.perf_counter()
                summary = prepare(out)
                seconds = time.perf_counter() - start
                cpu_end = resource.getrusage(resource.RUSAGE_SELF)
                cpu_s = (cpu_end.ru_utime - cpu.ru_utime) + (cpu_end.ru_stime - cpu.ru_stime)
                count = sum(s.utterances for s in summary.splits)
                runs[name].append((seconds, cpu_s, count))
        ours = {u.id: u.phones for split in ("train", "dev", "test")
                for u in read_manifest(root / "seqkit-0" / f"{split}.jsonl")}
        theirs = {u.id.replace("-", "_"): u.phones for split in ("train", "dev", "test")
                  for u in read_manifest(root / "lhotse-0" / f"{split}.jsonl")}
        if ours != theirs:
            raise CorpusError("seqkit's and lhotse's TIMIT readers wrote different phones")
        # the median run by wall time (the middle one, so its CPU time is a measured one too)
        best = {name: sorted(times)[(len(times) - 1) // 2] for name, times in runs.items()}
        base = best["seqkit (timit)"][0]
        return [{
            "reader": name,
            "utterances": count,
            "wall s": round(seconds, 2),
            "cpu s": round(cpu_s, 2),
            "utt/s": round(count / seconds, 1),
            "x seqkit": round(seconds / base, 2),
            "load avg": round(os.getloadavg()[0], 1),
        } for name, (seconds, cpu_s, count) in best.items()]
    finally:
        shutil.rmtree(root, ignore_errors=True)
