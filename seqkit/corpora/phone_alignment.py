"""A corpus's own phone alignment, in TIMIT's symbols: what a manifest's ``phones`` hold.

Corpora label phones in one of two alphabets:

* TIMIT's 61 symbols (TIMIT itself, through seqkit's reader or lhotse's ``timit`` recipe): kept.
* ARPAbet, as CMUdict and the aligners built on it write it, with or without stress digits
  (L2-ARCTIC's hand annotations and forced alignments, Montreal Forced Aligner output): each
  phoneme through :data:`seqkit.corpora.lexicon.ARPABET_TO_TIMIT39`, the table the lexicon
  uses (``AO`` -> ``aa``, ``ZH`` -> ``sh`` as TIMIT's folding merges them; ``AX`` -> ``ah``).

An aligner's silence marks (``sil``, ``sp``, ``spn``, an empty interval) become TIMIT's: ``h#``
at either end of the utterance, ``pau`` between words; runs of them merge into one. TIMIT's own
``h#`` and ``pau`` are kept where they are. A label in neither alphabet is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Iterable

from seqkit.corpora.lexicon import ARPABET_TO_TIMIT39
from seqkit.data.manifest import Segment
from seqkit.data.phones import PHONES_61
from seqkit.errors import CorpusError

_TIMIT = frozenset(PHONES_61)
_SILENCE_MARKS = frozenset({"", "sil", "sp", "spn", "<sil>", "silence"})
# ARPAbet symbols CMUdict lacks that aligners and annotators write.
_EXTRA_ARPABET = {"AX": "ah", "AXR": "er", "IX": "ih", "UX": "uw", "DX": "dx", "EL": "l",
                  "EM": "m", "EN": "n", "NX": "n", "Q": "q"}


def timit_symbol(label: str) -> str | None:
    """The TIMIT symbol of one phone label; None for an aligner's silence mark.

    Raises:
        CorpusError: a label that is neither a TIMIT symbol nor ARPAbet.
    """
    name = label.strip()
    if name.lower() in _SILENCE_MARKS:
        return None
    if name.lower() in _TIMIT and not name.isupper():
        return name.lower()
    arpabet = name.upper().rstrip("012")
    if arpabet in ARPABET_TO_TIMIT39:
        return ARPABET_TO_TIMIT39[arpabet]
    if arpabet in _EXTRA_ARPABET:
        return _EXTRA_ARPABET[arpabet]
    if name.lower() in _TIMIT:  # an upper-case TIMIT symbol (H#, PCL) that is not ARPAbet
        return name.lower()
    raise CorpusError(
        f"phone label {label!r} is neither one of TIMIT's 61 phones nor ARPAbet: map it in the "
        "corpus's alignment, or prepare without its phones"
    )


def timit_segments(
    items: Iterable[tuple[float, float, str]], *, sample_rate: int, samples: int
) -> tuple[Segment, ...]:
    """Phone segments in TIMIT's symbols from ``(start s, end s, label)`` items of a recording.

    Times are relative to the utterance's start. Boundaries are rounded to samples and
    clipped to ``[0, samples]``; a segment that clipping empties is dropped. Silence marks
    become ``h#`` at either end and ``pau`` inside, consecutive marks merged.

    Raises:
        CorpusError: an unknown label (see :func:`timit_symbol`), or segments that overlap or
            go back in time.
    """
    rows: list[tuple[int, int, str | None]] = []
    previous_end = 0
    for start_s, end_s, label in sorted(items, key=lambda item: item[0]):
        start = min(max(round(start_s * sample_rate), 0), samples)
        end = min(max(round(end_s * sample_rate), 0), samples)
        if end <= start:
            continue
        if start < previous_end:
            raise CorpusError(
                f"phone {label!r} at {start_s:.3f} s starts before the previous one ends "
                f"({previous_end / sample_rate:.3f} s): expected segments in time order without "
                "overlap; fix the alignment"
            )
        symbol = timit_symbol(label)
        if symbol is None and rows and rows[-1][2] is None:
            rows[-1] = (rows[-1][0], end, None)
        else:
            rows.append((start, end, symbol))
        previous_end = end
    segments: list[Segment] = []
    for index, (start, end, symbol) in enumerate(rows):
        if symbol is None:
            symbol = "h#" if index in (0, len(rows) - 1) else "pau"
        segments.append((start, end, symbol))
    return tuple(segments)
