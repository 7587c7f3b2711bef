"""Reader for LibriSpeech and Libri-Light's fine-tuning sets, laid out as their archives unpack.

LibriSpeech (Panayotov et al. 2015, CC BY 4.0)::

    <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

with subsets ``train-clean-100``, ``train-clean-360``, ``train-other-500``, ``dev-clean``,
``dev-other``, ``test-clean``, ``test-other``. A ``.trans.txt`` line is ``<utterance id> WORDS``,
upper case, apostrophes kept (``DON'T``).

Libri-Light's limited-supervision sets (Kahn et al. 2020) unpack as
``<root>/librispeech_finetuning/{1h/0..5,9h}/{clean,other}/<speaker>/<chapter>/`` with the same
files. Their subsets are torchaudio's ``LibriLightLimited`` names: ``10min`` = ``1h/0``, ``1h`` =
``1h/0..5``, ``10h`` = ``1h`` + ``9h``. They are train data only: dev and test come from
LibriSpeech (``dev-clean``, ``test-clean``) next to them.

CORPUS may be the folder holding ``LibriSpeech/`` and/or ``librispeech_finetuning/``, or either of
those folders itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from seqkit.errors import ConfigError, CorpusError

LIBRISPEECH_DIR = "LibriSpeech"
LIBRILIGHT_DIR = "librispeech_finetuning"
TRAIN_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500")
DEV_SUBSETS = ("dev-clean", "dev-other")
TEST_SUBSETS = ("test-clean", "test-other")
LIBRISPEECH_SUBSETS = TRAIN_SUBSETS + DEV_SUBSETS + TEST_SUBSETS
# torchaudio.datasets.LibriLightLimited's subsets -> their folders under librispeech_finetuning.
LIBRILIGHT_SUBSETS: dict[str, tuple[str, ...]] = {
    "10min": ("1h/0",),
    "1h": tuple(f"1h/{k}" for k in range(6)),
    "10h": (*(f"1h/{k}" for k in range(6)), "9h"),
}
_UTTERANCE_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_DOWNLOAD_HINT = "`seqkit data download librispeech CORPUS --subsets {subset}`"


@dataclass(frozen=True)
class LibriUtterance:
    """One utterance found in a LibriSpeech-layout folder.

    Attributes:
        id: ``<speaker>-<chapter>-<utt>``, unique across LibriSpeech.
        audio: the ``.flac`` file (None when the transcript names a file that is missing).
        speaker: speaker id (digits).
        folder: the folder it came from relative to its root (``train-clean-100``, ``1h/0/clean``).
        words: the transcript's words as written (upper case).
        transcript: the ``.trans.txt`` file that holds the words.
    """

    id: str
    audio: Path | None
    speaker: str
    folder: str
    words: tuple[str, ...]
    transcript: Path


@dataclass(frozen=True)
class LibriLayout:
    """Where the LibriSpeech and Libri-Light folders of a corpus are (None: absent)."""

    librispeech: Path | None
    librilight: Path | None

    def present_subsets(self) -> dict[str, tuple[Path, ...]]:
        """Every subset present, in a fixed order, with the folders that hold it."""
        found: dict[str, tuple[Path, ...]] = {}
        if self.librispeech is not None:
            for name in LIBRISPEECH_SUBSETS:
                if (self.librispeech / name).is_dir():
                    found[name] = (self.librispeech / name,)
        if self.librilight is not None:
            for name, parts in LIBRILIGHT_SUBSETS.items():
                if all((self.librilight / p).is_dir() for p in parts):
                    found[name] = tuple(
                        d for p in parts for d in _subdirs(self.librilight / p)
                    )
        return found


def _subdirs(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: p.name)


def find_layout(corpus_dir: str | os.PathLike[str]) -> LibriLayout | None:
    """The LibriSpeech / Libri-Light folders of ``corpus_dir``; None when it has neither."""
    root = Path(corpus_dir)
    if not root.is_dir():
        return None
    librispeech = librilight = None
    if root.name == LIBRISPEECH_DIR or any((root / s).is_dir() for s in LIBRISPEECH_SUBSETS):
        librispeech = root
    elif (root / LIBRISPEECH_DIR).is_dir():
        librispeech = root / LIBRISPEECH_DIR
    if root.name == LIBRILIGHT_DIR:
        librilight = root
        if librispeech is None and (root.parent / LIBRISPEECH_DIR).is_dir():
            librispeech = root.parent / LIBRISPEECH_DIR
    elif (root / LIBRILIGHT_DIR).is_dir():
        librilight = root / LIBRILIGHT_DIR
    if librispeech is None and librilight is None:
        return None
    return LibriLayout(librispeech, librilight)


def choose_subsets(
    layout: LibriLayout, train: tuple[str, ...] | None, dev: str, test: str
) -> dict[str, tuple[str, ...]]:
    """The subsets of each split: ``{"train": (...), "dev": (dev,), "test": (test,)}``.

    Args:
        layout: from :func:`find_layout`.
        train: train subsets to use; None = the LibriSpeech train subsets present, or, when
            there are none, the largest Libri-Light subset present.
        dev: ``dev-clean`` or ``dev-other``.
        test: ``test-clean`` or ``test-other``.

    Raises:
        ConfigError: a name is not a subset of its split.
        CorpusError: a chosen subset is not in the corpus.
    """
    train_names = TRAIN_SUBSETS + tuple(LIBRILIGHT_SUBSETS)
    checks = [("train", name, train_names) for name in train or ()]
    checks += [("dev", dev, DEV_SUBSETS), ("test", test, TEST_SUBSETS)]
    for split, name, valid in checks:
        if name not in valid:
            raise ConfigError(
                f"unknown {split} subset {name!r}: choose from {', '.join(valid)}"
            )
    present = layout.present_subsets()
    if train is None:
        train = tuple(s for s in TRAIN_SUBSETS if s in present)
        train = train or tuple(s for s in reversed(LIBRILIGHT_SUBSETS) if s in present)[:1]
        if not train:
            raise CorpusError(
                f"no train subset in {layout.librispeech or layout.librilight}: expected one of "
                f"{', '.join(train_names)}; download one with "
                + _DOWNLOAD_HINT.format(subset="train-clean-100")
            )
    for name in (*train, dev, test):
        if name not in present:
            where = layout.librilight if name in LIBRILIGHT_SUBSETS else layout.librispeech
            if where is None:  # the other corpus is there: say where this one would be
                other = layout.librispeech or layout.librilight
                assert other is not None  # find_layout found at least one
                where = other.parent / (
                    LIBRILIGHT_DIR if name in LIBRILIGHT_SUBSETS else LIBRISPEECH_DIR
                )
            hint = (
                "`seqkit data download librilight CORPUS`" if name in LIBRILIGHT_SUBSETS
                else _DOWNLOAD_HINT.format(subset=name)
            )
            raise CorpusError(f"subset {name} not found in {where}: download it with {hint}")
    return {"train": tuple(train), "dev": (dev,), "test": (test,)}


def read_folder(folder: Path, root: Path) -> list[LibriUtterance]:
    """Utterances under ``folder/<speaker>/<chapter>/`` from their ``.trans.txt`` files.

    Raises:
        CorpusError: the folder does not hold ``<speaker>/<chapter>/`` folders, a chapter has no
            transcript, a transcript line is malformed or names another chapter, or a
            ``.flac`` has no transcript line.
    """
    name = folder.relative_to(root).as_posix()
    speakers = _subdirs(folder)
    if not speakers or not any(_subdirs(s) for s in speakers):
        raise CorpusError(
            f"{folder} is not a LibriSpeech subset: expected <speaker>/<chapter>/ folders with "
            "<speaker>-<chapter>-<utt>.flac and <speaker>-<chapter>.trans.txt; unpack the "
            "archive again"
        )
    found: list[LibriUtterance] = []
    for speaker_dir in speakers:
        for chapter_dir in _subdirs(speaker_dir):
            found.extend(_read_chapter(chapter_dir, speaker_dir.name, name))
    return found


def _read_chapter(chapter_dir: Path, speaker: str, folder: str) -> list[LibriUtterance]:
    transcript = chapter_dir / f"{speaker}-{chapter_dir.name}.trans.txt"
    flacs = {p.stem: p for p in chapter_dir.glob("*.flac")}
    if not transcript.is_file():
        raise CorpusError(
            f"{chapter_dir}: missing transcript {transcript.name}: expected one .trans.txt per "
            "chapter; unpack the archive again"
        )
    found: list[LibriUtterance] = []
    prefix = f"{speaker}-{chapter_dir.name}-"
    for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        utt_id, _, text = line.strip().partition(" ")
        if not _UTTERANCE_ID.match(utt_id) or not utt_id.startswith(prefix) or not text.strip():
            raise CorpusError(
                f"{transcript}:{number}: expected '<speaker>-<chapter>-<utt> WORDS' with id "
                f"{prefix}NNNN, found {line.strip()[:60]!r}"
            )
        found.append(LibriUtterance(utt_id, flacs.pop(utt_id, None), speaker, folder,
                                    tuple(text.split()), transcript))
    if flacs:
        extra = sorted(flacs)[0]
        raise CorpusError(
            f"{chapter_dir / (extra + '.flac')} has no line in {transcript.name}: add its "
            "transcript or remove the file"
        )
    return found
