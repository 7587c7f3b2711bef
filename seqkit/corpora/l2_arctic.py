"""L2-ARCTIC's hand-annotated phones, which lhotse's ``l2_arctic`` recipe does not read.

L2-ARCTIC (24 non-native speakers of English, ~27 h) ships, per speaker, ``wav/``,
``transcript/``, ``textgrid/`` (forced alignments) and ``annotation/``: about 150 utterances per
speaker whose phones people transcribed as they heard them (and one ``suitcase_corpus/annotation/``
TextGrid per speaker for the spontaneous part). The ``phones`` tier of an annotation holds
ARPAbet phones as read (``AH0``), or ``CPL,PPL,type`` where a speaker said something else: the
canonical phone, the perceived one and the error (``s`` substitution, ``d`` deletion, ``a``
addition). What the audio holds is the perceived phone, so that is the label: a substitution or
addition gives PPL, a deletion nothing. A perceived phone marked ``err`` (a sound outside
ARPAbet) is left unlabelled. Stray marks of the hand transcription (``*``, ``_``, a closing
parenthesis, backquotes) are stripped.

The annotated utterances take their phones from here (:func:`annotated_phones`); the rest of the
corpus gets its phones from its words, like any corpus without phone labels.
"""

from __future__ import annotations

from pathlib import Path

from seqkit.corpora.textgrid import Interval, read_tiers
from seqkit.errors import CorpusError

_STRAY = "0123456789*_)`' "
_DELETION = "d"


def annotation_file(corpus_dir: Path, speaker: str, stem: str) -> Path | None:
    """The annotation TextGrid of one utterance, if the corpus has one.

    ``<corpus>/<SPEAKER>/annotation/<stem>.TextGrid`` for the read sentences,
    ``<corpus>/suitcase_corpus/annotation/<speaker>.TextGrid`` for the spontaneous part
    (lhotse names those recordings ``suitcase_corpus-<speaker>``). Folder names are matched
    in any case.
    """
    if stem.startswith("suitcase_corpus"):
        folder, stem = "suitcase_corpus", speaker.lower()
    else:
        folder = speaker
    for candidate in (folder, folder.upper(), folder.lower()):
        directory = corpus_dir / candidate / "annotation"
        for name in (f"{stem}.TextGrid", f"{stem}.textgrid", f"{stem.upper()}.TextGrid"):
            if (directory / name).is_file():
                return directory / name
    return None


def annotated_phones(path: Path) -> list[Interval]:
    """The perceived phones of an annotation TextGrid, in ARPAbet (``sil`` for silence).

    Raises:
        CorpusError: no ``phones`` tier, or the file is not a TextGrid.
    """
    tiers = read_tiers(path)
    tier = next((t for name, t in tiers.items() if name.lower() == "phones"), None)
    if tier is None:
        raise CorpusError(
            f"{path} has no 'phones' tier (found: {', '.join(tiers) or 'none'}): expected "
            "L2-ARCTIC's annotation TextGrid; restore it from the corpus"
        )
    out: list[Interval] = []
    for start, end, mark in tier:
        fields = [f.strip() for f in mark.split(",")]
        if len(fields) >= 3 and fields[2].lower() == _DELETION:
            continue
        perceived = (fields[1] if len(fields) >= 2 else fields[0]).strip(_STRAY)
        if perceived.lower() == "err":
            continue
        out.append((start, end, perceived or "sil"))
    return out
