"""Manifests: one JSON object per line (JSONL), one utterance per object.

A line looks like::

    {"id": "FCJF0_SI1027", "audio": "/abs/TRAIN/DR1/FCJF0/SI1027.WAV", "samples": 50381,
     "sample_rate": 16000, "speaker": "FCJF0", "dialect": "DR1",
     "phones": [[0, 3050, "h#"], [3050, 4559, "sh"], ...],
     "words": [[3050, 5723, "she"], ...], "text": "She had your dark suit ..."}

``phones`` are TIMIT 61-phone labels and, like ``words``, carry ``[start, end)`` boundaries in
sample indices at ``sample_rate``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqkit.atomic import write_atomic
from seqkit.errors import CorpusError

Segment = tuple[int, int, str]  # (start sample, end sample, label)


@dataclass(frozen=True)
class Utterance:
    """One utterance of a manifest.

    Attributes:
        id: ``<SPEAKER>_<SENTENCE>``, unique within a corpus.
        audio: absolute path of the audio file.
        samples: length of the audio in samples at ``sample_rate``.
        sample_rate: rate the boundaries are counted at, in Hz.
        speaker: speaker id (upper case).
        dialect: dialect region, ``DR1`` .. ``DR8``.
        phones: 61-phone segments ``(start, end, label)`` in time order.
        words: word segments ``(start, end, word)``; may overlap, as in TIMIT.
        text: the orthographic transcript.
    """

    id: str
    audio: str
    samples: int
    sample_rate: int
    speaker: str
    dialect: str
    phones: tuple[Segment, ...]
    words: tuple[Segment, ...]
    text: str

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return self.samples / self.sample_rate

    @property
    def phone_labels(self) -> list[str]:
        """The phone labels alone, in order."""
        return [label for _, _, label in self.phones]

    def to_dict(self) -> dict[str, Any]:
        """The manifest line's JSON object."""
        return {
            "id": self.id,
            "audio": self.audio,
            "samples": self.samples,
            "sample_rate": self.sample_rate,
            "speaker": self.speaker,
            "dialect": self.dialect,
            "phones": [list(seg) for seg in self.phones],
            "words": [list(seg) for seg in self.words],
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Utterance:
        """Build from a manifest line's JSON object.

        Raises:
            ValueError, KeyError, TypeError: a field is missing or has the wrong type
                (:func:`read_manifest` turns these into a CorpusError with the line number).
        """
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, found {type(data).__name__}")

        def segments(key: str) -> tuple[Segment, ...]:
            out: list[Segment] = []
            for seg in data[key]:
                start, end, label = seg
                if not (isinstance(start, int) and isinstance(end, int)):
                    raise TypeError(f"{key}: expected integer sample boundaries, found {seg}")
                if not isinstance(label, str):
                    raise TypeError(f"{key}: expected a string label, found {seg}")
                out.append((start, end, label))
            return tuple(out)

        strings = {k: data[k] for k in ("id", "audio", "speaker", "dialect", "text")}
        for key, value in strings.items():
            if not isinstance(value, str):
                raise TypeError(f"{key}: expected a string, found {value!r}")
        for key in ("samples", "sample_rate"):
            if not isinstance(data[key], int):
                raise TypeError(f"{key}: expected an integer, found {data[key]!r}")
        return cls(
            samples=data["samples"],
            sample_rate=data["sample_rate"],
            phones=segments("phones"),
            words=segments("words"),
            **strings,
        )


def write_manifest(path: str | os.PathLike[str], utterances: Iterable[Utterance]) -> int:
    """Write utterances as JSONL, atomically (temp file beside ``path``, then rename).

    Returns:
        The number of utterances written.
    """
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with tmp.open("w", encoding="utf-8") as f:
            for utt in utterances:
                f.write(json.dumps(utt.to_dict(), ensure_ascii=False) + "\n")
                count += 1

    write_atomic(path, write)
    return count


def read_manifest(path: str | os.PathLike[str]) -> list[Utterance]:
    """Read a JSONL manifest written by :func:`write_manifest` (blank lines are ignored).

    Raises:
        CorpusError: the file is missing or unreadable, or a line is not a valid utterance
            (the message names the file and the line number).
    """
    return list(iter_manifest(path))


def iter_manifest(path: str | os.PathLike[str]) -> Iterator[Utterance]:
    """The utterances of a manifest one line at a time, as :func:`read_manifest` reads them.

    For callers that keep a little of each utterance: a 960-hour manifest read whole holds
    gigabytes of phone segments.

    Raises:
        CorpusError: as :func:`read_manifest`, when the bad line is reached.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    yield _parse_line(path, number, line)
    except FileNotFoundError:
        raise CorpusError(
            f"manifest {path} not found: run `seqkit data prepare CORPUS OUT` to make it"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CorpusError(f"cannot read manifest {path} ({err}): prepare it again") from None


def _parse_line(path: Path, number: int, line: str) -> Utterance:
    try:
        return Utterance.from_dict(json.loads(line))
    except json.JSONDecodeError as err:
        raise CorpusError(
            f"{path}:{number}: not valid JSON ({err.msg}): expected one utterance object per "
            "line; prepare the manifest again"
        ) from None
    except KeyError as err:
        raise CorpusError(
            f"{path}:{number}: missing field {err}: expected id, audio, samples, "
            "sample_rate, speaker, dialect, phones, words, text; prepare the manifest again"
        ) from None
    except (TypeError, ValueError) as err:
        raise CorpusError(
            f"{path}:{number}: malformed utterance ({err}); prepare the manifest again"
        ) from None
