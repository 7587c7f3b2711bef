"""The embedded speech corpus: espeak-ng speakers reading seeded sentences, in TIMIT's format.

seqkit must train and score a phoneme recognizer on a machine without licensed data, so it
synthesizes a corpus laid out exactly like TIMIT (LDC93S1)::

    OUT/TRAIN|TEST/DR1..DR8/<M|F><3 letters><digit>/<SX|SI><n>.WAV|.PHN|.WRD|.TXT
    OUT/splits.json        train / dev / test speaker lists plus per-speaker metadata

``.WAV`` is NIST SPHERE, 16 kHz, 16-bit mono; ``.PHN`` and ``.WRD`` hold ``start end label`` in
16 kHz sample indices (``.PHN`` contiguous from 0 to the end of the audio, ``h#`` at both ends,
labels from TIMIT's 61); ``.TXT`` holds ``start end text``. Labels come from espeak-ng's own
phoneme and word events (see :mod:`seqkit.synth.espeak_phones`), so they say what the audio says.

Speakers (accent + voice variant + rate and pitch, disjoint voice pools per split) are planned
by :mod:`seqkit.synth.speakers`. Each speaker reads a few ``SX`` sentences shared
with other speakers of its split and ``SI`` sentences of its own. Unless ``clean``, every
utterance gets its own rate/pitch jitter, optional light reverberation, coloured babble-like
noise at a random SNR and a random gain.

Everything random is drawn from generators seeded by ``(seed, speaker, utterance)``, so the
corpus is byte-identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import multiprocessing
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqkit.atomic import check_output_dir, staged_dir
from seqkit.audio.corruption import Corruption, corrupt
from seqkit.audio.load import SAMPLE_RATE
from seqkit.data.splits import SPLITS, SPLITS_FILE
from seqkit.errors import ConfigError, CorpusError
from seqkit.locks import output_lock
from seqkit.progress import ProgressFn
from seqkit.synth.engines import ESPEAK, check_engines, engine_info, open_engine
from seqkit.synth.espeak import Espeak
from seqkit.synth.espeak_phones import label_segments
from seqkit.synth.pronounce import pronounce
from seqkit.synth.sentences import SentenceGenerator
from seqkit.synth.speakers import (
    ENGINE_BASE_RATE,
    Speaker,
    plan_speakers,
    plan_voice_speakers,
    voice_text,
)
from seqkit.synth.voices import Spoken, VoiceEngine, VoiceError

# Defaults of `seqkit data synth` (what `make demo` trains on); measured on a 2-core CPU.
DEFAULT_SPEAKERS = 144
DEFAULT_SENTENCES = 18
DEFAULT_SEED = 0
# What splits.json's "corpus_format" says: which plan made the corpus, beyond its settings (2:
# voices of people read the espeak-ng training sentences, unwarped). A demo reuses only its own.
CORPUS_FORMAT = 2
DEFAULT_VOICE_SPEAKERS = 8  # training speakers made from each voice of people

_READERS_PER_SX = 5  # each shared sentence is read by about this many speakers of its split


@dataclass(frozen=True)
class Realism:
    """How far utterances depart from clean espeak-ng output (all off with ``clean``).

    Attributes:
        rate_jitter: relative per-utterance change of the speaker's rate (+-).
        pitch_jitter: per-utterance change of the speaker's espeak pitch (+- units of 0-99).
        corruption: reverberation, noise and gain (:mod:`seqkit.audio.corruption`).
    """

    rate_jitter: float = 0.08
    pitch_jitter: int = 6
    corruption: Corruption = Corruption()


@dataclass(frozen=True)
class SplitSummary:
    """Size of one split: speakers, utterances and hours of audio."""

    speakers: int
    utterances: int
    hours: float


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`synthesize_corpus` wrote.

    Attributes:
        path: the corpus directory.
        splits: ``"train"``, ``"dev"``, ``"test"`` -> their sizes.
    """

    path: Path
    splits: dict[str, SplitSummary]


@dataclass(frozen=True)
class _Job:
    """One utterance to synthesize (picklable, sent to workers)."""

    speaker: Speaker
    speaker_index: int
    utterance_index: int
    name: str
    text: str
    directory: str
    seed: int
    clean: bool
    # Sentences to say instead, in order, when a voice cannot say ``text`` (a diphone it lacks).
    alternatives: tuple[str, ...] = ()


# Spare sentences per utterance of a voice of people: festival's ked refuses about 1 sentence
# in 100 (diphones it lacks); three refusals in a row did not occur in 300 sentences.
_ALTERNATIVES = 3
# Voice job j reads the espeak-ng training sentence 7 j places on (see _plan_voice_jobs).
_SENTENCE_STRIDE = 7


def _plan_jobs(
    speakers: list[Speaker], sentences: int, seed: int, clean: bool
) -> list[_Job]:
    n_sx = 0 if sentences < 2 else max(1, round(sentences * 0.3))
    n_si = sentences - n_sx
    generator = SentenceGenerator(seed)
    jobs: list[_Job] = []
    sx_offset, si_number = 0, 0
    for split in SPLITS:
        members = [(i, s) for i, s in enumerate(speakers) if s.split == split]
        pool_size = max(n_sx, math.ceil(len(members) * n_sx / _READERS_PER_SX)) if n_sx else 0
        shared = generator.sentences(pool_size)
        for rank, (index, speaker) in enumerate(members):
            top = "TRAIN" if split == "train" else "TEST"
            directory = f"{top}/{speaker.region}/{speaker.id}"
            texts: list[tuple[str, str]] = []
            for j in range(n_sx):
                k = (rank * n_sx + j) % pool_size
                texts.append((f"SX{sx_offset + k + 1}", shared[k]))
            for _ in range(n_si):
                si_number += 1
                texts.append((f"SI{si_number}", generator.sentence()))
            for u, (name, text) in enumerate(texts):
                jobs.append(_Job(speaker, index, u, name, text, directory, seed, clean))
        sx_offset += pool_size
    return jobs


def _plan_voice_jobs(
    speakers: list[tuple[int, Speaker]], sentences: int, seed: int, clean: bool,
    texts: list[str],
) -> list[_Job]:
    """Jobs of the speakers made from voices of people.

    They read the espeak-ng training speakers' sentences (``texts``, in plan order), voice job
    ``j`` the sentence ``7 j`` places on, so that a speaker's sentences come from several
    espeak-ng speakers: each sentence is then heard from both kinds of voice, which took 2.6
    points off the real-speech PER against sentences of their own (docs/real-speech.md). Their
    spare sentences (for a voice that cannot say one) come from a generator of their own, so
    adding them changes no espeak-ng utterance.
    """
    generator = SentenceGenerator(f"voices-{seed}")
    jobs = []
    for index, speaker in speakers:
        directory = f"TRAIN/{speaker.region}/{speaker.id}"
        for u in range(sentences):
            text = texts[(len(jobs) * _SENTENCE_STRIDE) % len(texts)]
            # the first of each draw is unused (it was the voice's own sentence before they
            # read espeak-ng's): drawing it keeps the spares, and so the corpora, as they were
            spare = generator.sentences(1 + _ALTERNATIVES)[1:]
            jobs.append(_Job(speaker, index, u, f"SV{index}{u:03d}", text, directory, seed,
                             clean, tuple(spare)))
    return jobs


@functools.cache
def _resampler(rate: int) -> Any:
    """A ``rate`` -> 16 kHz resampler whose filter is built once per process (building it cost
    a third of each utterance's synthesis time)."""
    import torch
    import torchaudio.transforms as AT

    return AT.Resample(rate, SAMPLE_RATE, dtype=torch.float64)


def _synthesize_utterance(engine: Espeak, job: _Job, root: Path) -> float:
    """Synthesize one utterance into ``root / job.directory``; return its duration in seconds."""
    speaker, realism = job.speaker, Realism()
    rng = _utterance_rng(job)
    rate, pitch = speaker.rate, speaker.pitch
    if not job.clean:
        rate = round(rate * (1.0 + rng.uniform(-realism.rate_jitter, realism.rate_jitter)))
        pitch = int(np.clip(pitch + rng.integers(-realism.pitch_jitter,
                                                  realism.pitch_jitter + 1), 0, 99))
    engine.seed_random(int(rng.integers(2**31)))
    voice = f"seqkit-{speaker.id}"  # the speaker's own variant (seqkit.synth.speakers.voice_text)
    engine.define_variant(voice, voice_text(speaker, engine.variant_text(speaker.variant)))
    engine.set_voice(f"{speaker.accent}+{voice}")
    engine.set_prosody(rate=rate, pitch=pitch, pitch_range=speaker.pitch_range)
    synthesis = engine.synthesize(job.text)
    sr = synthesis.sample_rate
    lead, trail = _pause(rng, sr), _pause(rng, sr)
    clean = np.concatenate([np.zeros(lead, np.int16), synthesis.audio, np.zeros(trail, np.int16)])
    segments = label_segments(synthesis.phonemes, clean, speaker.accent, sample_rate=sr,
                              speech_start=lead)
    audio = clean.astype(np.float64) / 32768.0
    pcm, phones, to16 = _finish(rng, job, audio, sr, segments)
    words = _word_segments(synthesis, job.text, phones, lead, sr, to16)
    return _write_utterance(root, job, pcm, phones, words)


def _speak_utterance(engine: VoiceEngine, espeak: Espeak, job: _Job, root: Path) -> float:
    """One utterance of a voice made from people: its pronunciation, spoken by the engine at the
    speaker's rate, then the same room, noise and files as an espeak-ng utterance."""
    speaker, realism = job.speaker, Realism()
    rng = _utterance_rng(job)
    rate = speaker.rate / ENGINE_BASE_RATE
    if not job.clean:
        rate *= 1.0 + rng.uniform(-realism.rate_jitter, realism.rate_jitter)
    spoken, text = _say_one_of(engine, espeak, job, rate)
    job = dataclasses.replace(job, text=text)
    sr = spoken.sample_rate
    lead, trail = _pause(rng, sr), _pause(rng, sr)
    audio = np.concatenate([np.zeros(lead), spoken.audio.astype(np.float64), np.zeros(trail)])
    segments = _padded(spoken.phones, lead, trail)
    pcm, phones, _ = _finish(rng, job, audio, sr, segments)
    return _write_utterance(root, job, pcm, phones, [])


def _say_one_of(
    engine: VoiceEngine, espeak: Espeak, job: _Job, rate: float
) -> tuple[Spoken, str]:
    """The first of the job's sentences the voice can say, and that sentence.

    Raises:
        VoiceError: the voice can say none of them (the last refusal).
    """
    *first, last = (job.text, *job.alternatives)
    for text in first:
        try:
            return engine.speak(pronounce(espeak, text), job.speaker.variant, rate=rate), text
        except VoiceError:
            continue
    return engine.speak(pronounce(espeak, last), job.speaker.variant, rate=rate), last


def _utterance_rng(job: _Job) -> np.random.Generator:
    return np.random.default_rng([job.seed, job.speaker_index, job.utterance_index])


def _pause(rng: np.random.Generator, sample_rate: int) -> int:
    """Silence before or after an utterance: 0.12-0.3 s."""
    return int(rng.uniform(0.12, 0.3) * sample_rate)


def _padded(
    segments: list[tuple[int, int, str]], lead: int, trail: int
) -> list[tuple[int, int, str]]:
    """Segments shifted by ``lead`` samples of silence, the added silence joining the h# ends."""
    moved = [(s + lead, e + lead, label) for s, e, label in segments]
    end = moved[-1][1] + trail
    if moved[0][2] == "h#":
        moved[0] = (0, moved[0][1], "h#")
    else:
        moved.insert(0, (0, lead, "h#"))
    if moved[-1][2] == "h#":
        moved[-1] = (moved[-1][0], end, "h#")
    else:
        moved.append((moved[-1][1], end, "h#"))
    return [m for m in moved if m[1] > m[0]]


def _finish(
    rng: np.random.Generator,
    job: _Job,
    audio: np.ndarray,
    sr: int,
    segments: list[tuple[int, int, str]],
) -> tuple[np.ndarray, list[tuple[int, int, str]], Any]:
    """Resample to 16 kHz (boundaries move with the same ratio, the last one to the end), add
    room and noise unless clean, peak-limit, quantize.

    Returns:
        16-bit samples, the 16 kHz phone segments, and the sr -> 16 kHz position map.
    """
    import torch

    with torch.no_grad():
        wave = _resampler(sr)(torch.from_numpy(audio))
    audio = wave.numpy()
    n = len(audio)

    def to16(x: int) -> int:
        return min(n, round(x * SAMPLE_RATE / sr))

    phones = [(to16(s), to16(e), label) for s, e, label in segments]
    phones[-1] = (phones[-1][0], n, phones[-1][2])
    phones = [p for p in phones if p[1] > p[0]]

    if not job.clean:
        audio = corrupt(rng, audio, phones, Realism().corruption, SAMPLE_RATE)
    peak = float(np.max(np.abs(audio))) if n else 0.0
    if peak > 0.98:
        audio = audio * (0.98 / peak)
    return np.round(audio * 32767.0).astype(np.int16), phones, to16


def _write_utterance(root: Path, job: _Job, pcm: np.ndarray, phones: list, words: list) -> float:
    """The utterance's ``.WAV .PHN .WRD .TXT``; returns its duration in seconds."""
    out = root / job.directory
    out.mkdir(parents=True, exist_ok=True)
    _write_sphere(out / f"{job.name}.WAV", pcm)
    (out / f"{job.name}.PHN").write_text("".join(f"{s} {e} {p}\n" for s, e, p in phones))
    (out / f"{job.name}.WRD").write_text("".join(f"{s} {e} {w}\n" for s, e, w in words))
    (out / f"{job.name}.TXT").write_text(f"0 {len(pcm)} {job.text}\n")
    return len(pcm) / SAMPLE_RATE


def _word_segments(synthesis, text: str, phones, lead: int, sr: int, to16) -> list:
    """Word spans from espeak-ng's word events, ending where the next word or a silence starts.

    espeak-ng speaks some word pairs as one unit with one event ("on the"); the words of such a
    unit share its span in proportion to their number of letters.
    """
    tokens = [(m.start() + 1, m.group().lower()) for m in re.finditer(r"[A-Za-z']+", text)]
    events = list(synthesis.words)
    owners: list[int] = []  # index of the first token of each event
    for w in events:
        index = next((i for i, (pos, _) in enumerate(tokens) if pos >= w.text_position), None)
        owners.append(len(tokens) if index is None else index)
    head = phones[0][1]  # the end of the leading h#: espeak-ng puts the first word at 0
    starts = [max(head, to16(lead + w.sample)) for w in events]
    silences = [s for s, _, label in phones if label in ("h#", "pau") and s > 0]
    words: list[tuple[int, int, str]] = []
    for i, start in enumerate(starts):
        group = [t for _, t in tokens[owners[i]: owners[i + 1] if i + 1 < len(owners) else None]]
        nxt = starts[i + 1] if i + 1 < len(starts) else phones[-1][0]
        end = min([nxt, *[s for s in silences if s > start]])
        if not group or end <= start:
            continue
        letters = sum(len(t) for t in group)
        done = 0
        for t in group:
            a = start + (end - start) * done // letters
            done += len(t)
            b = start + (end - start) * done // letters
            if b > a:
                words.append((a, b, t))
    return words


def _write_sphere(path: Path, pcm: np.ndarray) -> None:
    import soundfile

    soundfile.write(str(path), pcm, SAMPLE_RATE, format="NIST", subtype="PCM_16")


def _synthesize_speaker(args: tuple[list[_Job], str]) -> tuple[str, int, float]:
    """Worker task: all utterances of one speaker, in order, in a fresh process.

    espeak-ng carries state from one utterance to the next, so a speaker's audio is reproducible
    only when its utterances are the first and only ones its process synthesizes; the pool runs
    one speaker per process (``maxtasksperchild=1``).
    """
    import torch

    torch.set_num_threads(1)  # the same floating-point results whatever the number of workers
    speaker_jobs, root = args
    espeak = Espeak()
    name = speaker_jobs[0].speaker.engine
    if name == ESPEAK:
        seconds = sum(_synthesize_utterance(espeak, job, Path(root)) for job in speaker_jobs)
    else:
        engine = open_engine(name)
        seconds = sum(_speak_utterance(engine, espeak, job, Path(root)) for job in speaker_jobs)
    return speaker_jobs[0].speaker.split, len(speaker_jobs), seconds


def synthesize_corpus(
    out: Path,
    *,
    speakers: int = DEFAULT_SPEAKERS,
    sentences: int = DEFAULT_SENTENCES,
    seed: int = DEFAULT_SEED,
    clean: bool = True,
    engines: tuple[str, ...] = (ESPEAK,),
    voice_speakers: int = DEFAULT_VOICE_SPEAKERS,
    jobs: int = 1,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> CorpusSummary:
    """Synthesize a speaker-disjoint corpus in TIMIT's layout (see the module docstring).

    The corpus is built in a temporary directory beside ``out`` and moved into place at the end
    (:func:`seqkit.atomic.staged_dir`), so an interrupted run leaves no half corpus and a
    failed ``force`` keeps the previous one.

    Args:
        out: corpus directory to create; must be absent or empty unless ``force``.
        speakers: number of speakers, at least 3 (about 20% go to test, 12.5% to dev).
        sentences: sentences per speaker, at least 1 (about 30% shared ``SX``, rest ``SI``).
        seed: same seed, byte-identical corpus.
        clean: no noise, gain, reverberation or rate/pitch jitter (the default: a corpus
            with them cost 5 points of real-speech PER, docs/real-speech.md).
        engines: the engines whose voices speak the train split
            (:data:`seqkit.synth.engines.ENGINE_NAMES`). Without ``"espeak"`` the train split
            has only voices of people; dev and test are always held-out espeak-ng voices.
        voice_speakers: training speakers made from each voice of a phone-driven engine.
        jobs: worker processes; the corpus does not depend on it.
        force: replace a non-empty ``out``.
        progress: called as ``progress("synthesizing speakers", done, total)`` after each
            speaker.

    Returns:
        Speakers, utterances and hours per split.

    Raises:
        ConfigError: an argument out of range.
        OutputExistsError: ``out`` is not empty and ``force`` is not set.
        OutputLockedError: another process writes ``out`` (its lock is taken before the
            check above, see :mod:`seqkit.locks`).
        BackendUnavailableError: espeak-ng or a chosen engine cannot be used here.
    """
    if speakers < 3:
        raise ConfigError(f"--speakers must be at least 3 (one per split), found {speakers}")
    if sentences < 1:
        raise ConfigError(f"--sentences must be at least 1, found {sentences}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, found {jobs}")
    if voice_speakers < 0:
        raise ConfigError(f"--voice-speakers must be at least 0, found {voice_speakers}")
    engines = check_engines(engines)
    out = Path(out)
    # the lock first, then the check: checked unlocked, OUT could be published by another
    # synth between the two, and this one would replace it without --force
    with output_lock(out, command="seqkit data synth"):
        check_output_dir(out, force=force)
        plan, work = _plan(speakers, sentences, seed, clean, engines, voice_speakers)
        with staged_dir(out) as tmp:  # published when the block ends, removed if it raises
            counts, seconds = _synthesize_speakers(work, tmp, jobs, progress)
            _write_splits(tmp / SPLITS_FILE, plan, engines, {
                "seed": seed, "clean": clean, "espeak_speakers": speakers,
                "sentences_per_speaker": sentences, "voice_speakers": voice_speakers})
    return CorpusSummary(out, {
        s: SplitSummary(sum(p.split == s for p in plan), counts[s], seconds[s] / 3600.0)
        for s in SPLITS
    })


def _plan(
    speakers: int,
    sentences: int,
    seed: int,
    clean: bool,
    engines: tuple[str, ...],
    voice_speakers: int,
) -> tuple[list[Speaker], list[_Job]]:
    """Every speaker and utterance. The espeak-ng plan (and so dev and test) is the same
    whatever the engines: without espeak-ng its train speakers are dropped, and the voices of
    people add train speakers after it."""
    plan = plan_speakers(speakers, seed)
    work = _plan_jobs(plan, sentences, seed, clean)
    train_texts = [job.text for job in work if job.speaker.split == "train"]
    if ESPEAK not in engines:
        work = [job for job in work if job.speaker.split != "train"]
    voices = [(name, voice, sex) for name in engines if name != ESPEAK
              for voice, sex in engine_info(name).voices]
    voiced = plan_voice_speakers(voices, voice_speakers, seed, {p.id for p in plan})
    indexed = list(enumerate(voiced, start=len(plan)))
    work += _plan_voice_jobs(indexed, sentences, seed, clean, train_texts)
    kept = {job.speaker.id for job in work}
    return [p for p in plan + voiced if p.id in kept], work


def _synthesize_speakers(
    work: list[_Job], root: Path, jobs: int, progress: ProgressFn | None
) -> tuple[dict[str, int], dict[str, float]]:
    """Synthesize every job into ``root``, one worker process per speaker.

    Returns:
        Utterances and seconds of audio per split.
    """
    seconds = {s: 0.0 for s in SPLITS}
    counts = {s: 0 for s in SPLITS}
    by_speaker: dict[int, list[_Job]] = {}
    for job in work:
        by_speaker.setdefault(job.speaker_index, []).append(job)
    tasks = [(speaker_jobs, str(root)) for speaker_jobs in by_speaker.values()]
    if progress:
        progress("synthesizing speakers", 0, len(tasks))
    # Workers fork from a server process that imported torch once (cheap starts, no OpenMP
    # state inherited from the caller); every speaker gets a fresh process (see above).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["seqkit.synth.corpus", "torch", "torchaudio"])
    with context.Pool(min(jobs, len(tasks)), maxtasksperchild=1) as pool:
        results = pool.imap_unordered(_synthesize_speaker, tasks)
        for done, (split, count, duration) in enumerate(results, 1):
            seconds[split] += duration
            counts[split] += count
            if progress:
                progress("synthesizing speakers", done, len(tasks))
    return counts, seconds


def _write_splits(
    path: Path, plan: list[Speaker], engines: tuple[str, ...], settings: dict[str, Any]
) -> None:
    """``splits.json``: speaker lists per split, each speaker's voice, and what made the corpus
    (``settings``: the arguments of :func:`synthesize_corpus` that decide its content)."""
    import seqkit

    meta = {
        **{s: [p.id for p in plan if p.split == s] for s in SPLITS},
        "corpus": f"seqkit synthesized ({', '.join(engines)}), TIMIT layout",
        "engines": {name: "espeak-ng (espeakng-loader)" if name == ESPEAK
                    else engine_info(name).origin for name in engines},
        **settings,
        "seqkit_version": seqkit.__version__,
        "espeak_ng_version": Espeak().version,
        "sample_rate": SAMPLE_RATE,
        "corpus_format": CORPUS_FORMAT,
        "speakers": {p.id: {k: v for k, v in asdict(p).items() if k != "id"} for p in plan},
    }
    path.write_text(json.dumps(meta, indent=2) + "\n")


def read_speakers(corpus: Path) -> list[Speaker]:
    """The speakers a synthesized corpus's ``splits.json`` describes, in file order.

    Raises:
        CorpusError: the corpus has no readable ``splits.json`` with speaker metadata.
    """
    path = Path(corpus) / SPLITS_FILE
    try:
        meta = json.loads(path.read_text())
        return [Speaker(id=sid, **fields) for sid, fields in meta["speakers"].items()]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CorpusError(
            f"{path}: expected a seqkit-synthesized corpus's splits.json with speakers ({err}); "
            "run `seqkit data synth` to make one"
        ) from None


def synthesize_utterance(
    directory: Path, name: str, text: str, speaker: Speaker, *, seed: int = 0, clean: bool = True
) -> Path:
    """Synthesize one utterance outside any corpus (``NAME.WAV/.PHN/.WRD/.TXT`` in ``directory``).

    Used to decode a sentence no model has seen, spoken by a voice of the test split.

    Returns:
        The path of the ``.WAV`` file.
    """
    job = _Job(speaker, 0, 0, name, text, ".", seed, clean)
    _synthesize_utterance(Espeak(), job, Path(directory))
    return Path(directory) / f"{name}.WAV"
