"""``seqkit data prepare`` for a corpus read by the field's readers (lhotse, Kaldi data dirs).

From a :class:`seqkit.corpora.source.CorpusSource` to a prepared folder, in four steps:

1. **Check.** Each utterance needs audio, a transcript (or phones) and a speaker; one that lacks
   one stops prepare with a line naming it, or is left out with ``skip_bad`` (``skipped.json``).
   A corpus that names no speaker at all is one speaker (LJSpeech).
2. **Split.** A corpus that defines splits keeps them; any other is cut speaker-disjoint by a
   seeded rule (:func:`seqkit.data.splits.split_speakers`); ``all_to`` puts everything in one
   split. ``splits.json`` in the prepared folder lists the speakers of each split and the rule.
3. **Label.** Phones come from the corpus's own alignment where it has one, mapped to TIMIT's
   symbols (:mod:`seqkit.corpora.phone_alignment`); otherwise from the words, through CMUdict and
   espeak-ng's letter-to-sound for words it lacks (:mod:`seqkit.corpora.lexicon`; those words are
   counted in the summary and listed in ``oov.tsv``, as LibriSpeech's are).
4. **Audio.** An utterance that is a whole file at the front end's rate is used where it is. One
   cut from a longer recording, on one channel of several, or at another rate (LJSpeech's
   22.05 kHz) is cut, mixed down and resampled once, here, and written as 16-bit FLAC to
   ``OUT/audio/`` at the front end's rate: every manifest line then names a file the front end
   reads whole, as for every other corpus. Normalization statistics come from (a sample of) train
   (:mod:`seqkit.corpora.train_stats`).

The folder is staged and published whole (:func:`seqkit.atomic.staged_dir`): an error or an
interrupt leaves no half-written OUT.
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from seqkit.atomic import check_output_dir, staged_dir, write_json
from seqkit.audio.features import (
    FeatureConfig,
    FeatureStats,
    compute_features,
    compute_stats,
    one_torch_thread,
)
from seqkit.audio.load import load_audio
from seqkit.corpora.lexicon import (
    Pronunciations,
    normalize_word,
    pronounce_words,
    transcript_words,
    write_oov,
)
from seqkit.corpora.phone_alignment import timit_segments
from seqkit.corpora.prepared import PrepareSummary, SkippedUtterance, write_prepared
from seqkit.corpora.source import CorpusSource, SourceUtterance
from seqkit.corpora.train_stats import merge_stats, stats_sample
from seqkit.data.manifest import Segment, Utterance
from seqkit.data.splits import SEEDED_RULE, SPLITS, SPLITS_FILE, merge_splits, split_speakers
from seqkit.errors import AudioError, ConfigError, CorpusError, SeqkitError
from seqkit.locks import output_lock
from seqkit.progress import ProgressFn

AUDIO_DIR = "audio"  # cut / resampled audio inside a prepared folder
OOV_FILE = "oov.tsv"
# A segment may end this far past the end of its file (rounding in segments files); it is cut at
# the end. Further out, the segment and the recording do not belong together.
END_SLACK_S = 0.1
# A segment that ends this close to the end of its file counts as the whole file.
WHOLE_FILE_SLACK_S = 0.01
_CHUNK = 32  # utterances per worker task
_SKIP_HINT = "(or prepare with --skip-bad to leave it out)"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class SourcePrepareSummary(PrepareSummary):
    """:class:`PrepareSummary` plus what a corpus of the field's readers needed.

    Attributes:
        kind: what read the corpus (``"Kaldi data dir"``, ``"lhotse recipe cmu_arctic"``).
        split_rule: how the splits were made (the corpus's own, seeded, ``--all-to``).
        split_speakers: the speakers of each split.
        phone_sources: utterances per source of their phones (``"words (CMUdict + espeak-ng)"``,
            ``"L2-ARCTIC annotation"``, ...).
        words, oov_words, tokens, oov_tokens: the lexicon's counts, as LibriSpeech's (distinct
            words, those CMUdict lacks, running words, running words CMUdict lacks).
        audio_written: utterances whose audio was cut or resampled into ``OUT/audio/``.
        stats_utterances: train utterances the normalization statistics were computed on.
    """

    kind: str = ""
    split_rule: str = ""
    split_speakers: dict[str, tuple[str, ...]] | None = None
    phone_sources: dict[str, int] | None = None
    words: int = 0
    oov_words: int = 0
    tokens: int = 0
    oov_tokens: int = 0
    audio_written: int = 0
    stats_utterances: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the TIMIT summary's keys plus the source, splits, phones, lexicon."""
        return {
            **super().to_dict(),
            "source": self.kind,
            "split_rule": self.split_rule,
            "split_speakers": {k: list(v) for k, v in (self.split_speakers or {}).items()},
            "phones_from": dict(self.phone_sources or {}),
            "lexicon": {
                "source": "CMUdict (cmudict package), espeak-ng en-us letter-to-sound for OOV",
                "words": self.words,
                "oov_words": self.oov_words,
                "tokens": self.tokens,
                "oov_tokens": self.oov_tokens,
            },
            "audio_written": self.audio_written,
            "stats_utterances": self.stats_utterances,
        }


def prepare_source(
    source: CorpusSource,
    out_dir: str | Path,
    *,
    features: FeatureConfig = FeatureConfig(),
    seed: int = 0,
    all_to: str | None = None,
    skip_bad: bool = False,
    force: bool = False,
    jobs: int = 1,
    progress: ProgressFn | None = None,
) -> SourcePrepareSummary:
    """Write manifests, statistics and (where needed) 16 kHz audio for a corpus source.

    Args:
        source: what a reader made of the corpus (lhotse, Kaldi).
        out_dir: directory to create (see the module docstring).
        features: front end of the statistics; its rate is the rate audio is written at.
        seed: the seeded speaker split's seed (unused when the corpus defines splits).
        all_to: put every utterance in this split (train, dev or test) instead.
        skip_bad: leave out utterances with missing audio, an empty transcript, no speaker or
            audio that cannot be read (listed in ``skipped.json``) instead of stopping.
        force: replace an existing non-empty ``out_dir``.
        jobs: worker processes reading (and writing) audio.
        progress: called as ``progress(description, done, total)``.

    Returns:
        Per-split counts, the split rule and speakers, where the phones came from.

    Raises:
        OutputExistsError: ``out_dir`` is not empty and ``force`` is False.
        ConfigError: ``all_to`` is not a split name, or ``jobs`` < 1.
        CorpusError: two utterances share an id, a transcript or speaker is missing, the corpus
            has too few speakers for a seeded split, an alignment label is unknown.
        AudioError: an audio file is missing or unreadable (without ``skip_bad``).
    """
    out = Path(out_dir)
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, found {jobs}")
    with output_lock(out, command="seqkit data prepare"):
        check_output_dir(out, force=force)
        utterances, skipped, speaker_note = _checked(source, skip_bad)
        splits, rule = _assign_splits(source, utterances, seed, all_to)
        pronunciations, words_of = _pronounce(utterances)
        with staged_dir(out) as tmp:
            summary = _prepare_into(tmp, out, source, splits, rule, words_of, pronunciations,
                                    features, skipped, skip_bad, jobs, progress)
    notes = [*source.notes, *([speaker_note] if speaker_note else [])]
    if summary["stats"] is None:
        notes.append("no train split: an evaluation set (no stats.json)")
    return SourcePrepareSummary(
        corpus_dir=source.root.resolve(),
        out_dir=out.resolve(),
        features=features,
        splits=summary["splits"],
        skipped=tuple(skipped),
        stats_frames=summary["stats"].frames if summary["stats"] is not None else 0,
        note="; ".join(notes),
        kind=source.kind,
        split_rule=rule,
        split_speakers={name: _speakers(splits[name]) for name in SPLITS},
        phone_sources=summary["phone_sources"],
        audio_written=summary["audio_written"],
        stats_utterances=summary["stats_utterances"],
        **_lexicon_counts(utterances, words_of, pronunciations),
    )


def _checked(
    source: CorpusSource, skip_bad: bool
) -> tuple[list[SourceUtterance], list[SkippedUtterance], str]:
    """The utterances with audio, transcript and speaker; those without, skipped or refused."""
    seen: dict[str, str] = {}
    for utt in source.utterances:
        if utt.id in seen:
            raise CorpusError(
                f"utterance id {utt.id!r} is used twice ({seen[utt.id]} and {utt.where}): "
                "expected unique ids; rename one"
            )
        seen[utt.id] = utt.where
    if not source.utterances:
        raise CorpusError(f"{source.root}: the {source.kind} holds no utterance: check the path")
    utterances = list(source.utterances)
    note = ""
    if all(u.speaker is None for u in utterances):  # a single-speaker corpus names none
        speaker = source.root.name
        utterances = [replace(u, speaker=speaker) for u in utterances]
        note = f"the corpus names no speaker: all of it is one speaker, {speaker!r}"
    good: list[SourceUtterance] = []
    skipped: list[SkippedUtterance] = []
    for utt in utterances:
        problem = _problem(utt)
        if problem is None:
            good.append(utt)
        elif skip_bad:
            skipped.append(SkippedUtterance(utt.id, utt.split or "", str(utt.audio or ""),
                                            str(problem)))
        else:
            raise problem
    if not good:
        raise CorpusError(
            f"{source.root}: no usable utterance: all {len(skipped)} failed their checks "
            f"(first: {skipped[0].reason})"
        )
    return good, skipped, note


def _problem(utt: SourceUtterance) -> SeqkitError | None:
    where = f"utterance {utt.id} ({utt.where})" if utt.where else f"utterance {utt.id}"
    if utt.audio is None:
        return AudioError(f"{where}: no audio file names it: add its recording {_SKIP_HINT}")
    if not utt.audio.is_file():
        return AudioError(f"{where}: audio file {utt.audio} does not exist: check the path "
                          f"{_SKIP_HINT}")
    if utt.phones is None and not transcript_words(utt.text):
        return CorpusError(f"{where}: empty transcript: expected words to take phones from "
                           f"{_SKIP_HINT}")
    if utt.speaker is None or not utt.speaker.strip():
        return CorpusError(f"{where}: no speaker: name its speaker (utt2spk, the manifest's "
                           f"speaker) {_SKIP_HINT}")
    return None


def _assign_splits(
    source: CorpusSource, utterances: list[SourceUtterance], seed: int, all_to: str | None
) -> tuple[dict[str, list[SourceUtterance]], str]:
    by_split: dict[str, list[SourceUtterance]] = {name: [] for name in SPLITS}
    if source.defines_splits:
        for utt in utterances:
            by_split[utt.split or "train"].append(utt)
        rule = "the corpus's own"
    else:
        speakers = split_speakers((u.speaker or "" for u in utterances), seed) if all_to is None \
            else {"train": ()}
        split_of = {s: name for name, members in speakers.items() for s in members}
        for utt in utterances:
            by_split[split_of.get(utt.speaker or "", "train")].append(utt)
        rule = f"{SEEDED_RULE} (seed {seed})"
    if all_to is not None:
        return merge_splits(by_split, all_to), f"all in {all_to} (--all-to)"
    return by_split, rule


def _speakers(utterances: Sequence[SourceUtterance]) -> tuple[str, ...]:
    return tuple(sorted({u.speaker or "" for u in utterances}))


def _pronounce(
    utterances: list[SourceUtterance],
) -> tuple[Pronunciations, dict[str, list[str]]]:
    """Pronunciations of the words of every utterance that has no phones of its own."""
    words_of = {u.id: transcript_words(u.text) for u in utterances if u.phones is None}
    pronunciations = (
        pronounce_words(w for words in words_of.values() for w in words)
        if words_of else Pronunciations({}, frozenset())
    )
    return pronunciations, words_of


def _lexicon_counts(utterances: list[SourceUtterance], words_of: dict[str, list[str]],
                    pronunciations: Pronunciations) -> dict[str, int]:
    tokens = [w for u in utterances for w in words_of.get(u.id, ())]
    return {
        "words": len(pronunciations.phones),
        "oov_words": len(pronunciations.oov),
        "tokens": len(tokens),
        "oov_tokens": sum(1 for w in tokens if normalize_word(w) in pronunciations.oov),
    }


@dataclass(frozen=True)
class _AudioTask:
    """What a worker does for one utterance: read its audio, write it when it must."""

    audio: Path
    start: float
    duration: float | None
    channel: int | None
    staged: Path  # where to write it if it must be written (inside the staging folder)
    final: Path  # the same file once the folder is published
    featured: bool


# Per utterance (audio path, samples, rate, written) or an error message.
_Header = tuple[str, int, int, bool] | str


def _prepare_into(
    tmp: Path,
    out: Path,
    source: CorpusSource,
    splits: dict[str, list[SourceUtterance]],
    rule: str,
    words_of: dict[str, list[str]],
    pronunciations: Pronunciations,
    features: FeatureConfig,
    skipped: list[SkippedUtterance],
    skip_bad: bool,
    jobs: int,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    names = _file_names([u for name in SPLITS for u in splits[name]])
    (tmp / AUDIO_DIR).mkdir()
    manifests: dict[str, list[Utterance]] = {}
    phone_sources: dict[str, int] = {}
    stats: FeatureStats | None = None
    stats_count = written = 0
    for split in SPLITS:
        utts = splits[split]
        sample = stats_sample(len(utts)) if split == "train" else frozenset()
        tasks = [_AudioTask(u.audio, u.start, u.duration, u.channel, tmp / AUDIO_DIR / names[u.id],
                            out.resolve() / AUDIO_DIR / names[u.id], i in sample)
                 for i, u in enumerate(utts) if u.audio is not None]  # _checked: all have
        headers, parts = _run_tasks(tasks, features, jobs, f"{split}: audio", progress)
        manifests[split] = []
        for utt, header in zip(utts, headers, strict=True):
            try:
                if isinstance(header, str):
                    raise AudioError(f"utterance {utt.id}: {header} {_SKIP_HINT}")
                path, samples, rate, was_written = header
                phones, origin = _phones(utt, samples, rate, words_of, pronunciations)
            except SeqkitError as err:
                if not skip_bad:
                    raise
                skipped.append(SkippedUtterance(utt.id, split, str(utt.audio), str(err)))
                if not isinstance(header, str) and header[3]:  # written, now not wanted
                    (tmp / AUDIO_DIR / names[utt.id]).unlink()
                continue
            written += was_written
            phone_sources[origin] = phone_sources.get(origin, 0) + 1
            manifests[split].append(Utterance(
                id=utt.id, audio=path, samples=samples, sample_rate=rate,
                speaker=utt.speaker or "", dialect=utt.group, phones=phones, words=(),
                text=utt.text,
            ))
        if split == "train" and utts:
            stats = merge_stats(parts, source.root)
            stats_count = len(sample)
    if not any((tmp / AUDIO_DIR).iterdir()):
        (tmp / AUDIO_DIR).rmdir()
    extra = [SPLITS_FILE]
    write_json(tmp / SPLITS_FILE, {
        **{name: list(_speakers(splits[name])) for name in SPLITS},
        "rule": rule, "source": source.kind,
    })
    if pronunciations.phones:
        write_oov(tmp / OOV_FILE, pronunciations)
        extra.append(OOV_FILE)
    summaries = write_prepared(tmp, manifests, features=features, stats=stats, skipped=skipped,
                               skip_bad=skip_bad, corpus=source.root, extra=extra)
    return {"splits": summaries, "stats": stats, "phone_sources": phone_sources,
            "audio_written": written, "stats_utterances": stats_count}


def _file_names(utterances: list[SourceUtterance]) -> dict[str, str]:
    """A distinct, file-system-safe FLAC name per utterance id."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for utt in utterances:
        stem = _UNSAFE.sub("_", utt.id) or "utterance"
        name, n = f"{stem}.flac", 1
        while name.lower() in used:
            n += 1
            name = f"{stem}-{n}.flac"
        used.add(name.lower())
        names[utt.id] = name
    return names


def _phones(
    utt: SourceUtterance, samples: int, rate: int, words_of: dict[str, list[str]],
    pronunciations: Pronunciations,
) -> tuple[tuple[Segment, ...], str]:
    if utt.phones is not None:
        try:
            phones = timit_segments(utt.phones, sample_rate=rate, samples=samples)
        except CorpusError as err:
            raise CorpusError(f"utterance {utt.id} ({utt.phone_source}): {err}") from None
        if not phones:
            raise CorpusError(f"utterance {utt.id}: its {utt.phone_source} phones are empty "
                              f"{_SKIP_HINT}")
        return phones, utt.phone_source
    labels = pronunciations.transcript_phones(words_of[utt.id])
    if not labels:
        raise CorpusError(f"utterance {utt.id}: no pronounceable word in {utt.text!r} "
                          f"{_SKIP_HINT}")
    return tuple((0, 0, p) for p in labels), "words (CMUdict + espeak-ng)"


def _run_tasks(
    tasks: list[_AudioTask], features: FeatureConfig, jobs: int, description: str,
    progress: ProgressFn | None,
) -> tuple[list[_Header], list[FeatureStats]]:
    """Headers of every task's audio (in order) and stats of the featured ones, over ``jobs``."""
    chunks = [(tasks[i:i + _CHUNK], features) for i in range(0, len(tasks), _CHUNK)]
    headers: list[_Header] = []
    parts: list[FeatureStats] = []
    if progress is not None:
        progress(description, 0, len(tasks))

    def collect(result: tuple[list[_Header], FeatureStats | None]) -> None:
        headers.extend(result[0])
        if result[1] is not None:
            parts.append(result[1])
        if progress is not None:
            progress(description, len(headers), len(tasks))

    if jobs == 1 or len(chunks) <= 1:
        for chunk in chunks:
            collect(_run_chunk(chunk))
        return headers, parts
    with multiprocessing.get_context("forkserver").Pool(min(jobs, len(chunks))) as pool:
        for result in pool.imap(_run_chunk, chunks):  # in order: headers line up with tasks
            collect(result)
    return headers, parts


def _run_chunk(
    chunk: tuple[list[_AudioTask], FeatureConfig],
) -> tuple[list[_Header], FeatureStats | None]:
    """Worker: each task's audio read (and written where it must be), stats of featured ones."""
    tasks, config = chunk
    headers: list[_Header] = []
    feats: list[torch.Tensor] = []
    with one_torch_thread():
        for task in tasks:
            try:
                header, wave = _read_task(task, config.sample_rate)
                if task.featured:
                    feats.append(compute_features(wave if wave is not None else load_audio(
                        task.audio, config.sample_rate), config))
            except SeqkitError as err:
                headers.append(str(err))
                continue
            headers.append(header)
    stats = compute_stats(feats) if any(f.shape[0] for f in feats) else None
    return headers, stats


def _read_task(task: _AudioTask, rate: int) -> tuple[_Header, torch.Tensor | None]:
    """Use the file as it is, or cut / mix / resample it to ``task.staged``.

    Returns:
        The header, and the waveform at ``rate`` when it was read (None when only the header
        was).
    """
    try:
        info = soundfile.info(task.audio)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"cannot read audio file {task.audio} ({err}): expected a file "
                         "soundfile reads (WAV, FLAC, OGG, MP3, NIST SPHERE)") from None
    file_rate, frames = int(info.samplerate), int(info.frames)
    first = round(task.start * file_rate)
    last = frames if task.duration is None else round((task.start + task.duration) * file_rate)
    if first >= frames or last <= first or last > frames + END_SLACK_S * file_rate:
        raise AudioError(
            f"segment {task.start:.3f}-{task.start + (task.duration or 0):.3f} s is outside "
            f"{task.audio} ({frames / file_rate:.3f} s): check the segment times"
        )
    last = min(last, frames)
    whole = first == 0 and last >= frames - WHOLE_FILE_SLACK_S * file_rate
    one_channel = task.channel is None or info.channels == 1
    if whole and one_channel and file_rate == rate:
        return (str(task.audio.resolve()), frames, file_rate, False), None
    if task.channel is not None and not 0 <= task.channel < info.channels:
        raise AudioError(f"{task.audio} has {info.channels} channel(s), the utterance is on "
                         f"channel {task.channel}: check the manifest")
    try:
        data, _ = soundfile.read(task.audio, start=first, stop=last, dtype="float32",
                                 always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"cannot read audio file {task.audio} ({err})") from None
    mono = data[:, task.channel] if task.channel is not None else data.mean(axis=1)
    wave = torch.from_numpy(np.ascontiguousarray(mono))
    if file_rate != rate:
        wave = AF.resample(wave, file_rate, rate)
    if wave.numel() == 0:
        raise AudioError(f"{task.audio}: the utterance has no samples: check the segment times")
    pcm = wave.clamp(-1.0, 32767 / 32768).numpy()
    soundfile.write(task.staged, pcm, rate, format="FLAC", subtype="PCM_16")
    return (str(task.final), int(wave.numel()), rate, True), wave
