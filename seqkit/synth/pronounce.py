"""A sentence's pronunciation in TIMIT phones: what every phone-driven voice is asked to say.

espeak-ng's US English dictionary and letter-to-sound rules give the phonemes (with the reduced
vowels and flaps of connected speech: ``ax``, ``ix``, ``axr``, ``dx``), mapped onto TIMIT's 61
symbols by the same table that labels espeak-ng's own audio
(:func:`seqkit.synth.espeak_phones.timit_phones`), so labels mean the same whichever engine spoke.
Stops come without closures: each engine's timing decides them.
"""

from __future__ import annotations

from seqkit.synth.espeak import Espeak
from seqkit.synth.espeak_phones import timit_phones

PRONUNCIATION_ACCENT = "en-us"


def pronounce(engine: Espeak, text: str) -> tuple[str, ...]:
    """TIMIT-61 phones of ``text`` as a US English speaker says it (no closures, no pauses).

    Args:
        engine: this process's espeak-ng (its voice is set to US English).
        text: the sentence.

    Returns:
        The phones in order; empty for a text without words.
    """
    engine.set_voice(PRONUNCIATION_ACCENT)
    phones: list[str] = []
    for word in engine.text_to_phonemes(text):
        for mnemonic in word:
            phones.extend(p for p in timit_phones(mnemonic, PRONUNCIATION_ACCENT) if p != "pau")
    return tuple(phones)
