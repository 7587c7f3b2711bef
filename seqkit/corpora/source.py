"""What every reader of the field's corpora hands over: utterances as the corpus describes them.

seqkit's own readers (TIMIT, LibriSpeech) know their layout down to the file. The others (lhotse's
recipes and manifests, Kaldi data dirs) describe an utterance as a stretch of an audio file with a
speaker and a transcript, sometimes with phone times; :class:`SourceUtterance` is that
description, and :func:`seqkit.corpora.source_prepare.prepare_source` turns a
:class:`CorpusSource` into a prepared folder the same way whichever reader made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from seqkit.corpora.textgrid import Interval


@dataclass(frozen=True)
class SourceUtterance:
    """One utterance as a corpus describes it.

    Attributes:
        id: unique within the corpus.
        audio: the audio file holding it; None when the corpus names no file for it (a Kaldi
            ``segments`` line whose recording ``wav.scp`` lacks).
        speaker: speaker id; None when the corpus gives none.
        text: the transcript ("" when there is none).
        start: where it starts in ``audio``, seconds.
        duration: its length in seconds; None: to the end of the file.
        channel: the channel it is on; None: all channels, averaged.
        phones: the corpus's own phone alignment, ``(start s, end s, label)`` relative to
            ``start``, in TIMIT symbols or ARPAbet; None: phones come from the words.
        phone_source: where ``phones`` came from, for the summary (``"TIMIT .PHN"``).
        split: the corpus's own split (train, dev or test); None when it defines none.
        group: what a manifest's ``dialect`` field holds: the corpus part or folder.
        where: where the corpus describes it (``wav.scp:12``), for messages.
    """

    id: str
    audio: Path | None
    speaker: str | None
    text: str
    start: float = 0.0
    duration: float | None = None
    channel: int | None = None
    phones: tuple[Interval, ...] | None = None
    phone_source: str = ""
    split: str | None = None
    group: str = ""
    where: str = ""


@dataclass(frozen=True)
class CorpusSource:
    """A corpus read by one of the field's readers, ready for ``prepare_source``.

    Attributes:
        kind: what read it, for the summary (``"Kaldi data dir"``, ``"lhotse recipe cmu_arctic"``).
        root: the folder or file read.
        utterances: in the corpus's order.
        defines_splits: the corpus assigns every utterance a split (kept as it is); otherwise
            a seeded speaker-disjoint split is cut.
        notes: sentences the summary adds (parts left out, how a layout was adapted).
    """

    kind: str
    root: Path
    utterances: list[SourceUtterance]
    defines_splits: bool
    notes: tuple[str, ...] = field(default=())


# How corpora name their parts: a part named like one of these is that split.
_PART_PREFIXES = {
    "train": ("train", "trn", "training"),
    "dev": ("dev", "valid", "val", "development", "cv"),
    "test": ("test", "tst", "eval", "evaluation"),
}


def split_of_part(name: str) -> str | None:
    """The split a corpus part's name says it is (``train-clean-100``, ``dev_other``, ``TEST``,
    ``valid``), or None (``read``, ``validated``, ``all``)."""
    lowered = name.lower()
    for split, prefixes in _PART_PREFIXES.items():
        for prefix in prefixes:
            if lowered == prefix or (lowered.startswith(prefix)
                                     and not lowered[len(prefix)].isalpha()):
                return split
    return None
