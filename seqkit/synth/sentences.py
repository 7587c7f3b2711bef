"""Seeded English sentences for the synthesized corpus.

Sentences fill simple grammatical templates (determiner, adjective, noun, verb, preposition ...)
from the vocabulary shipped in ``seqkit/synth/words.txt`` (frequent English words with their part
of speech and inflections; its header says where it comes from). Templates rather than random
word strings give espeak-ng phrases it can put speech-like stress and intonation on. Every
sentence has 4 to 14 words; the same seed gives the same sentences.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from seqkit.errors import CorpusError

MIN_WORDS = 4
MAX_WORDS = 14

_DETERMINERS = ("the", "the", "the", "a", "this", "that", "every", "one", "her", "his", "our")
_PLURAL_DETERMINERS = ("the", "the", "some", "these", "those", "many", "two", "three", "few",
                       "their", "all the")
_PRONOUNS = ("he", "she", "they", "we", "i", "you")
_MODALS = ("will", "can", "should", "might", "would", "could", "must")
_PREPOSITIONS = ("in", "on", "at", "from", "with", "near", "under", "behind", "after", "before",
                 "for", "about", "over", "into", "across", "without")
_CONJUNCTIONS = ("and", "but", "while", "because", "so", "when", "before", "after")
_COPULAS = ("was", "is", "seemed", "looked", "became")
_PLURAL_COPULAS = ("were", "are", "seemed", "looked", "became")

# Slots: D det, Dp plural det, N noun, Np plural noun, A adjective (optional ones are "A?"),
# V verb base, Vd past, Vs third person, R adverb, P preposition, S pronoun, M modal,
# C conjunction, K copula, Kp plural copula; anything else is a literal word.
_TEMPLATES: tuple[str, ...] = (
    "D A? N Vd D A? N",
    "D A? N Vd D A? N P D A? N",
    "S Vd D A? N R",
    "Dp A? Np M V D A? N",
    "D A? N Vs Dp A? Np P D A? N",
    "S M V D A? N C S Vd",
    "D A? N K A",
    "Dp A? Np Kp A P D N",
    "R D A? N Vd P D A? N",
    "S Vd D A? N C D A? N Vd R",
    "did S V D A? N P D N ?",
    "Dp A? Np Vd C Dp A? Np Vd",
    "P D A? N S Vd Dp A? Np",
    "why did D A? N V Dp Np ?",
    "S R Vd D A? N",
)


@dataclass(frozen=True)
class Vocabulary:
    """Open-class English words by part of speech, most frequent first.

    Attributes:
        nouns: (singular, plural) pairs.
        verbs: (base, past, third person singular) triples.
        adjectives: adjectives.
        adverbs: adverbs.
    """

    nouns: tuple[tuple[str, str], ...]
    verbs: tuple[tuple[str, str, str], ...]
    adjectives: tuple[str, ...]
    adverbs: tuple[str, ...]


@cache
def load_vocabulary() -> Vocabulary:
    """Read the vocabulary shipped as ``seqkit/synth/words.txt``.

    Raises:
        CorpusError: the word list is missing or malformed (a broken installation).
    """
    try:
        text = files("seqkit.synth").joinpath("words.txt").read_text(encoding="utf-8")
    except OSError as err:
        raise CorpusError(f"seqkit's word list is missing ({err}): reinstall seqkit") from err
    nouns: list[tuple[str, str]] = []
    verbs: list[tuple[str, str, str]] = []
    adjectives: list[str] = []
    adverbs: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        pos, *forms = line.split()
        expected = {"noun": 2, "verb": 3, "adj": 1, "adv": 1}.get(pos)
        if expected != len(forms):
            raise CorpusError(f"words.txt line {number}: expected 'noun|verb|adj|adv' and its "
                              f"forms, found {line!r}: reinstall seqkit")
        if pos == "noun":
            nouns.append((forms[0], forms[1]))
        elif pos == "verb":
            verbs.append((forms[0], forms[1], forms[2]))
        elif pos == "adj":
            adjectives.append(forms[0])
        else:
            adverbs.append(forms[0])
    return Vocabulary(tuple(nouns), tuple(verbs), tuple(adjectives), tuple(adverbs))


class SentenceGenerator:
    """Draws template sentences of 4-14 words; a given seed always yields the same sequence.

    Words are drawn with a bias to frequent ones (the square of a uniform draw over the
    frequency-ordered list), so sentences sound ordinary but the whole vocabulary occurs.

    Args:
        seed: seed of the generator's own random stream.
    """

    def __init__(self, seed: int | str) -> None:
        self._rng = random.Random(seed)
        self._vocab = load_vocabulary()

    def _pick(self, words: tuple):
        index = int(self._rng.random() ** 2 * len(words))
        return words[index]

    def _fill(self, slot: str) -> str | None:
        rng = self._rng
        v = self._vocab
        if slot == "A?":
            return self._pick(v.adjectives) if rng.random() < 0.4 else None
        table = {
            "D": lambda: rng.choice(_DETERMINERS),
            "Dp": lambda: rng.choice(_PLURAL_DETERMINERS),
            "N": lambda: self._pick(v.nouns)[0],
            "Np": lambda: self._pick(v.nouns)[1],
            "A": lambda: self._pick(v.adjectives),
            "V": lambda: self._pick(v.verbs)[0],
            "Vd": lambda: self._pick(v.verbs)[1],
            "Vs": lambda: self._pick(v.verbs)[2],
            "R": lambda: self._pick(v.adverbs),
            "P": lambda: rng.choice(_PREPOSITIONS),
            "S": lambda: rng.choice(_PRONOUNS),
            "M": lambda: rng.choice(_MODALS),
            "C": lambda: rng.choice(_CONJUNCTIONS),
            "K": lambda: rng.choice(_COPULAS),
            "Kp": lambda: rng.choice(_PLURAL_COPULAS),
        }
        return table[slot]() if slot in table else slot

    def sentence(self) -> str:
        """The next sentence: capitalized, ending in '.' or '?', 4-14 words."""
        while True:
            template = self._rng.choice(_TEMPLATES).split()
            question = template[-1] == "?"
            words: list[str] = []
            for slot in template[:-1] if question else template:
                word = self._fill(slot)
                if word is not None:
                    words.extend(word.split())
            if MIN_WORDS <= len(words) <= MAX_WORDS:
                break
        for i, word in enumerate(words[:-1]):  # "a" before a vowel letter reads "an"
            if word == "a" and words[i + 1][0] in "aeiou":
                words[i] = "an"
        words = ["I" if w == "i" else w for w in words]
        text = " ".join(words)
        return text[0].upper() + text[1:] + ("?" if question else ".")

    def sentences(self, count: int) -> list[str]:
        """The next ``count`` sentences."""
        return [self.sentence() for _ in range(count)]
