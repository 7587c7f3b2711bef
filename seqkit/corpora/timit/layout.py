"""Reader for corpora in TIMIT's layout: real TIMIT (LDC93S1), the NLTK TIMIT sample and
``seqkit data synth`` output.

Layout: ``<root>/{TRAIN,TEST}/DR1..DR8/<SPEAKER>/<SENTENCE>.{WAV,PHN,WRD,TXT}``, where ``.WAV``
is audio (NIST SPHERE in TIMIT; anything soundfile reads is accepted), ``.PHN`` and ``.WRD`` hold
``<start> <end> <label>`` lines in 16 kHz sample indices and ``.TXT`` holds
``<start> <end> <text>``. Names are matched case-insensitively (``TRAIN/DR1/FCJF0/SA1.WAV`` and
``train/dr1/fcjf0/sa1.wav`` both circulate).

Splits: a ``splits.json`` at the root (``{"train": [speakers], "dev": [...], "test": [...]}``)
when there is one, as the synthesized corpus has; otherwise TIMIT's standard split: train = every
TRAIN/ speaker, dev = the 50-speaker dev set, test = the 24-speaker core test set
(:mod:`seqkit.corpora.timit.speakers`). The SA dialect sentences are left out of every split.

The NLTK TIMIT sample (``nltk.download('timit')``, 16 speakers) is laid out flat instead:
``<root>/<dr>-<speaker>/<sentence>.{wav,phn,wrd,txt}`` with ``spkrinfo.txt`` beside the speaker
folders. Its speakers are TIMIT *training* speakers, so all of it goes to the test split: it is
an evaluation set for models not trained on TIMIT.

Real transcriptions have small defects: a last boundary a few samples past the end of the audio
is clamped to the end and counted (:data:`CLAMP_SAMPLES`); anything else out of place is refused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import soundfile
import torch

from seqkit.audio.load import SAMPLE_RATE, load_audio
from seqkit.corpora.timit.speakers import (
    CORE_TEST_SPEAKERS,
    DEV_SPEAKERS,
    DIALECT_SENTENCE_PREFIX,
    normalize_speaker,
)
from seqkit.data.manifest import Segment, Utterance
from seqkit.data.phones import PHONES_61
from seqkit.data.splits import SPLITS, SPLITS_FILE
from seqkit.errors import AudioError, CorpusError

_PARTS = ("TRAIN", "TEST")
# The part of every utterance of the NLTK sample (they all go to the test split).
NLTK_SAMPLE_PART = "NLTK"
_DIALECT_DIR = re.compile(r"^dr[1-8]$", re.IGNORECASE)
_NLTK_SPEAKER_DIR = re.compile(r"^(dr[1-8])-([a-z]{4}[0-9])$", re.IGNORECASE)
# A last .PHN/.WRD boundary at most this many samples past the end of the audio is clamped to the
# end: 10 ms, one feature frame, less than any phone, so no frame changes its label. Further out,
# the transcription and the audio do not belong together.
CLAMP_SAMPLES = 160
# <SENTENCE>.<EXT>; names with more dots (e.g. a converted "SA1.WAV.wav") are not ours.
_UTTERANCE_FILE = re.compile(r"^([A-Za-z0-9_-]+)\.(wav|phn|wrd|txt)$", re.IGNORECASE)
_PHONES = frozenset(PHONES_61)

_NOT_A_CORPUS = (
    "{root} is not a TIMIT corpus: expected TRAIN/ and TEST/ with DR1..DR8 speaker folders, "
    "NLTK's <dr>-<speaker> folders, or a splits.json; run `seqkit data synth` to make one"
)


@dataclass(frozen=True)
class UtteranceFiles:
    """The files of one utterance found in the corpus (None where a file is missing).

    Attributes:
        part: the corpus part it sits in, ``TRAIN`` or ``TEST`` (``NLTK`` for the NLTK sample).
        dialect: ``DR1`` .. ``DR8``.
        speaker: speaker id, upper case.
        sentence: sentence id, upper case (``SA1``, ``SX23``, ``SI1027``, ...).
    """

    part: str
    dialect: str
    speaker: str
    sentence: str
    wav: Path | None
    phn: Path | None
    wrd: Path | None
    txt: Path | None

    @property
    def id(self) -> str:
        """``<SPEAKER>_<SENTENCE>``."""
        return f"{self.speaker}_{self.sentence}"

    @property
    def is_dialect_sentence(self) -> bool:
        """An SA sentence (read by every speaker; excluded from all splits)."""
        return self.sentence.startswith(DIALECT_SENTENCE_PREFIX)

    def any_path(self) -> Path:
        """A path naming this utterance in messages (its audio, else its first file)."""
        for path in (self.wav, self.phn, self.wrd, self.txt):
            if path is not None:
                return path
        raise CorpusError(f"utterance {self.id} has no files")  # not reachable from the scanner


def _subdirs(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: p.name)


def find_utterances(corpus_dir: str | os.PathLike[str]) -> list[UtteranceFiles]:
    """All utterances under ``TRAIN|TEST/DR*/<SPEAKER>/`` (any name case), or under the NLTK
    sample's ``<dr>-<speaker>/`` folders, in a stable order.

    Raises:
        CorpusError: ``corpus_dir`` is not a directory or has neither TRAIN/ or TEST/ folders with
            dialect-region folders nor NLTK sample speaker folders.
    """
    root = Path(corpus_dir)
    if not root.is_dir():
        raise CorpusError(f"corpus directory {root} does not exist: check the path")
    found: list[UtteranceFiles] = []
    saw_part = False
    for part_dir in _subdirs(root):
        nltk = _NLTK_SPEAKER_DIR.match(part_dir.name)
        if nltk is not None:
            saw_part = True
            found.extend(_speaker_utterances(NLTK_SAMPLE_PART, nltk.group(1).upper(), part_dir))
            continue
        part = part_dir.name.upper()
        if part not in _PARTS:
            continue
        saw_part = True
        for dialect_dir in _subdirs(part_dir):
            if not _DIALECT_DIR.match(dialect_dir.name):
                continue
            for speaker_dir in _subdirs(dialect_dir):
                found.extend(_speaker_utterances(part, dialect_dir.name.upper(), speaker_dir))
    if not saw_part:
        raise CorpusError(_NOT_A_CORPUS.format(root=root) + _nested_hint(root))
    found.sort(key=lambda u: (u.part, u.dialect, u.speaker, u.sentence))
    return found


def _nested_hint(root: Path) -> str:
    """`` (did you mean ROOT/x?)`` when a folder one level down holds a corpus, else ``""``."""
    for d in _subdirs(root):
        for p in d.iterdir():
            if p.is_dir() and (p.name.upper() in _PARTS or _NLTK_SPEAKER_DIR.match(p.name)):
                return f" (did you mean {d}?)"
    return ""


def _speaker_utterances(part: str, dialect: str, speaker_dir: Path) -> list[UtteranceFiles]:
    by_sentence: dict[str, dict[str, Path]] = {}
    for path in sorted(speaker_dir.iterdir(), key=lambda p: p.name):
        match = _UTTERANCE_FILE.match(path.name)
        if match is None or not path.is_file():
            continue
        sentence, ext = match.group(1).upper(), match.group(2).lower()
        by_sentence.setdefault(sentence, {})[ext] = path
    nltk = _NLTK_SPEAKER_DIR.match(speaker_dir.name)
    speaker = normalize_speaker(nltk.group(2) if nltk else speaker_dir.name)
    return [
        UtteranceFiles(
            part=part,
            dialect=dialect,
            speaker=speaker,
            sentence=sentence,
            wav=files.get("wav"),
            phn=files.get("phn"),
            wrd=files.get("wrd"),
            txt=files.get("txt"),
        )
        for sentence, files in by_sentence.items()
        if "wav" in files or "phn" in files  # a lone .WRD/.TXT is not an utterance
    ]


def _find_splits_file(root: Path) -> Path | None:
    for path in root.iterdir():
        if path.name.lower() == SPLITS_FILE and path.is_file():
            return path
    return None


def read_splits_file(path: str | os.PathLike[str]) -> dict[str, frozenset[str]]:
    """Speaker lists of a ``splits.json``: ``{"train": [...], "dev": [...], "test": [...]}``.

    Other keys (metadata) are ignored. Speaker ids are returned upper case.

    Raises:
        CorpusError: not JSON, a split missing or not a list of strings, or a speaker in two
            splits.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CorpusError(
            f"cannot read split file {path} ({err}): expected JSON with train/dev/test speaker "
            "lists; fix it or synthesize the corpus again"
        ) from None
    splits: dict[str, frozenset[str]] = {}
    for name in SPLITS:
        speakers = data.get(name) if isinstance(data, dict) else None
        if not isinstance(speakers, list) or not all(isinstance(s, str) for s in speakers):
            raise CorpusError(
                f"split file {path}: expected {name!r} to be a list of speaker ids, found "
                f"{type(speakers).__name__}; fix it or synthesize the corpus again"
            )
        splits[name] = frozenset(normalize_speaker(s) for s in speakers)
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            shared = sorted(splits[a] & splits[b])
            if shared:
                raise CorpusError(
                    f"split file {path}: speaker {shared[0]} is in both {a} and {b}: expected "
                    "speaker-disjoint splits; list each speaker once"
                )
    return splits


def split_utterances(
    corpus_dir: str | os.PathLike[str], utterances: Iterable[UtteranceFiles]
) -> dict[str, list[UtteranceFiles]]:
    """Assign utterances to train / dev / test (SA sentences left out).

    With a ``splits.json`` in ``corpus_dir`` its speaker lists decide; otherwise TIMIT's standard
    split does (train = TRAIN/, dev = 50 dev speakers, test = 24 core test speakers, from TEST/).
    Every utterance of the NLTK sample goes to test: its speakers are TIMIT training speakers.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}``, each in the input's order.

    Raises:
        CorpusError: a split file lists a speaker the corpus lacks, or (without a split file) the
            corpus has no TRAIN/ speakers or none of TIMIT's dev and core test speakers.
    """
    root = Path(corpus_dir)
    kept = [u for u in utterances if not u.is_dialect_sentence]
    out: dict[str, list[UtteranceFiles]] = {name: [] for name in SPLITS}
    if kept and all(u.part == NLTK_SAMPLE_PART for u in kept):
        out["test"] = kept
        return out
    splits_file = _find_splits_file(root)
    if splits_file is not None:
        splits = read_splits_file(splits_file)
        present = {u.speaker for u in kept}
        for name in SPLITS:
            missing = sorted(splits[name] - present)
            if missing:
                raise CorpusError(
                    f"split file {splits_file} lists {name} speaker {missing[0]}"
                    f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''} but "
                    f"{root} has no utterances of it under TRAIN|TEST/DR*/: fix the split file "
                    "or synthesize the corpus again"
                )
        for utt in kept:
            for name in SPLITS:
                if utt.speaker in splits[name]:
                    out[name].append(utt)
        return out
    for utt in kept:
        if utt.part == "TRAIN":
            out["train"].append(utt)
        elif utt.speaker in DEV_SPEAKERS:
            out["dev"].append(utt)
        elif utt.speaker in CORE_TEST_SPEAKERS:
            out["test"].append(utt)
    if not out["train"] or not (out["dev"] or out["test"]):
        raise CorpusError(_NOT_A_CORPUS.format(root=root))
    for name in ("dev", "test"):
        if not out[name]:
            which = "50-speaker dev" if name == "dev" else "24-speaker core test"
            raise CorpusError(
                f"{root} has none of TIMIT's {which} speakers under TEST/DR*/: expected a "
                f"complete TIMIT TEST/ part, or a {SPLITS_FILE} naming the {name} speakers"
            )
    return out


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a transcription file with their 1-based numbers."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CorpusError(
            f"{path} is not a text file (not UTF-8/ASCII): expected '<start> <end> <label>' "
            "lines; replace it with the corpus's original file"
        ) from None
    except OSError as err:
        raise CorpusError(f"cannot read {path} ({err.strerror}): check its permissions") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _parse_segments(path: Path, what: str) -> list[tuple[int, int, int, str]]:
    """``(line number, start, end, label)`` of a .PHN/.WRD file."""
    out: list[tuple[int, int, int, str]] = []
    for number, line in _read_lines(path):
        fields = line.split()
        try:
            if len(fields) != 3:
                raise ValueError
            start, end = int(fields[0]), int(fields[1])
        except ValueError:
            raise CorpusError(
                f"{path}:{number}: expected '<start sample> <end sample> <{what}>', found "
                f"{line!r}: fix the line"
            ) from None
        out.append((number, start, end, fields[2]))
    return out


def _clamp_last(
    rows: list[tuple[int, int, int, str]], samples: int
) -> tuple[list[tuple[int, int, int, str]], int]:
    """``rows`` with a last end at most :data:`CLAMP_SAMPLES` past ``samples`` moved to
    ``samples``, and how many ends moved (0 or 1)."""
    if rows:
        number, start, end, label = rows[-1]
        if samples < end <= samples + CLAMP_SAMPLES and start < samples:
            return [*rows[:-1], (number, start, samples, label)], 1
    return rows, 0


def _read_phones(path: Path, samples: int) -> tuple[tuple[Segment, ...], int]:
    rows, clamped = _clamp_last(_parse_segments(path, "phone"), samples)
    if not rows:
        raise CorpusError(
            f"{path} has no phone segments: expected '<start> <end> <phone>' lines covering the "
            "utterance; restore the file from the corpus"
        )
    phones: list[Segment] = []
    previous_end = 0
    for number, start, end, label in rows:
        phone = label.lower()
        if phone not in _PHONES:
            raise CorpusError(
                f"{path}:{number}: phone {label!r} is not one of TIMIT's 61 phones "
                "(seqkit.data.phones.PHONES_61): fix the label"
            )
        if start < previous_end or end < start or start < 0:
            raise CorpusError(
                f"{path}:{number}: boundaries {start} {end} are not monotone (previous segment "
                f"ends at {previous_end}): expected segments in time order without overlap; "
                "fix the boundaries"
            )
        if end > samples:
            raise CorpusError(
                f"{path}:{number}: segment ends at sample {end}, past the end of the audio "
                f"({samples} samples, {CLAMP_SAMPLES} more are clamped at the last boundary): "
                "expected boundaries within the audio; fix the boundary or the audio file"
            )
        phones.append((start, end, phone))
        previous_end = end
    return tuple(phones), clamped


def _read_words(path: Path, samples: int) -> tuple[tuple[Segment, ...], int]:
    rows, clamped = _clamp_last(_parse_segments(path, "word"), samples)
    words: list[Segment] = []
    for number, start, end, word in rows:
        if not 0 <= start <= end <= samples:
            raise CorpusError(
                f"{path}:{number}: word boundaries {start} {end} are outside the audio "
                f"(0..{samples} samples) or reversed: fix the boundaries"
            )
        words.append((start, end, word))
    return tuple(words), clamped


def _read_text(path: Path) -> str:
    lines = _read_lines(path)
    if not lines:
        return ""
    fields = lines[0][1].split(maxsplit=2)
    if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
        return fields[2].strip() if len(fields) == 3 else ""
    return lines[0][1]


def read_utterance(files: UtteranceFiles) -> tuple[Utterance, torch.Tensor, int]:
    """Read, check and load one utterance.

    Args:
        files: an utterance from :func:`find_utterances`.

    Returns:
        The manifest entry (61-phone labels, lower case), its waveform, (N,) float32 at
        16 kHz with N = ``utterance.samples``, and how many last boundaries (.PHN, .WRD; 0-2)
        were clamped to the end of the audio.

    Raises:
        CorpusError: the .PHN file is missing, empty or malformed; a label is not one of the 61;
            boundaries are not monotone or run past the end of the audio (more than
            :data:`CLAMP_SAMPLES` for the last one); the audio is not
            16 kHz.
        AudioError: the audio file is missing, unreadable, not audio or empty.
    """
    skip_hint = "(or prepare with --skip-bad to leave the utterance out)"
    if files.phn is None:
        wav = files.any_path()
        where = wav.with_suffix(".phn" if wav.suffix.islower() else ".PHN")
        raise CorpusError(
            f"utterance {files.id}: missing phone transcription {where}: add the .PHN file "
            f"{skip_hint}"
        )
    if files.wav is None:
        where = files.phn.with_suffix(".wav" if files.phn.suffix.islower() else ".WAV")
        raise AudioError(
            f"utterance {files.id}: missing audio file {where}: add the .WAV file {skip_hint}"
        )
    wave = load_audio(files.wav, SAMPLE_RATE)
    file_rate = soundfile.info(files.wav).samplerate
    if file_rate != SAMPLE_RATE:
        raise CorpusError(
            f"{files.wav} is sampled at {file_rate} Hz: expected {SAMPLE_RATE} Hz, as TIMIT's "
            ".PHN/.WRD boundaries count 16 kHz samples; resample the corpus to 16 kHz"
        )
    samples = int(wave.numel())
    phones, clamped = _read_phones(files.phn, samples)
    words, clamped_words = _read_words(files.wrd, samples) if files.wrd is not None else ((), 0)
    text = _read_text(files.txt) if files.txt is not None else " ".join(w for _, _, w in words)
    utterance = Utterance(
        id=files.id,
        audio=str(files.wav.resolve()),
        samples=samples,
        sample_rate=SAMPLE_RATE,
        speaker=files.speaker,
        dialect=files.dialect,
        phones=phones,
        words=words,
        text=text,
    )
    return utterance, wave, clamped + clamped_words
