"""TIMIT phone sets and the Lee & Hon (1989) foldings 61 -> 48 -> 39.

Models are trained on one of the sets (61 as Graves et al., 48 as Kaldi, or 39) and always scored
on 39 after folding, as the TIMIT literature does. The glottal stop ``q`` has no folded symbol: it
is deleted from transcripts before training and scoring (Kaldi's ``timit_norm_trans.pl`` does the
same). Silence is scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from seqkit.errors import ConfigError

BLANK = "<blank>"

# Each group: the 61-phone symbol, its 48-phone class, its 39-phone class (None: deleted).
# Closures fold to a voiced / voiceless closure class in 48 and to silence in 39.
_FOLDING: tuple[tuple[str, str | None, str | None], ...] = (
    # vowels
    ("iy", "iy", "iy"), ("ih", "ih", "ih"), ("ix", "ix", "ih"), ("eh", "eh", "eh"),
    ("ae", "ae", "ae"), ("aa", "aa", "aa"), ("ao", "ao", "aa"), ("ah", "ah", "ah"),
    ("ax", "ax", "ah"), ("ax-h", "ax", "ah"), ("uh", "uh", "uh"), ("uw", "uw", "uw"),
    ("ux", "uw", "uw"), ("er", "er", "er"), ("axr", "er", "er"), ("ey", "ey", "ey"),
    ("ay", "ay", "ay"), ("oy", "oy", "oy"), ("aw", "aw", "aw"), ("ow", "ow", "ow"),
    # semivowels and glides
    ("l", "l", "l"), ("el", "el", "l"), ("r", "r", "r"), ("w", "w", "w"), ("y", "y", "y"),
    ("hh", "hh", "hh"), ("hv", "hh", "hh"),
    # nasals
    ("m", "m", "m"), ("em", "m", "m"), ("n", "n", "n"), ("en", "en", "n"), ("nx", "n", "n"),
    ("ng", "ng", "ng"), ("eng", "ng", "ng"),
    # fricatives
    ("s", "s", "s"), ("z", "z", "z"), ("sh", "sh", "sh"), ("zh", "zh", "sh"),
    ("f", "f", "f"), ("v", "v", "v"), ("th", "th", "th"), ("dh", "dh", "dh"),
    # affricates
    ("ch", "ch", "ch"), ("jh", "jh", "jh"),
    # stops and their closures
    ("b", "b", "b"), ("d", "d", "d"), ("g", "g", "g"), ("p", "p", "p"), ("t", "t", "t"),
    ("k", "k", "k"), ("dx", "dx", "dx"),
    ("bcl", "vcl", "sil"), ("dcl", "vcl", "sil"), ("gcl", "vcl", "sil"),
    ("pcl", "cl", "sil"), ("tcl", "cl", "sil"), ("kcl", "cl", "sil"),
    # silences and others
    ("h#", "sil", "sil"), ("pau", "sil", "sil"), ("epi", "epi", "sil"), ("q", None, None),
)

PHONES_61: tuple[str, ...] = tuple(sorted(p for p, _, _ in _FOLDING))
FOLD_61_TO_48: dict[str, str | None] = {p: f48 for p, f48, _ in _FOLDING}
FOLD_61_TO_39: dict[str, str | None] = {p: f39 for p, _, f39 in _FOLDING}
PHONES_48: tuple[str, ...] = tuple(sorted({f for f in FOLD_61_TO_48.values() if f}))
PHONES_39: tuple[str, ...] = tuple(sorted({f for f in FOLD_61_TO_39.values() if f}))
# 48 -> 39 is a function too (the folding is hierarchical); any 39-phone symbol folds to itself.
FOLD_48_TO_39: dict[str, str] = {
    f48: f39 for _, f48, f39 in _FOLDING if f48 is not None and f39 is not None
}

PHONE_SETS: dict[int, tuple[str, ...]] = {61: PHONES_61, 48: PHONES_48, 39: PHONES_39}


def phone_set(size: int) -> tuple[str, ...]:
    """The phone inventory of the given size (61, 48 or 39), sorted."""
    if size not in PHONE_SETS:
        raise ConfigError(f"unknown phone set {size}: choose one of 61, 48, 39")
    return PHONE_SETS[size]


def fold_phones(phones: Iterable[str], to: int = 39) -> list[str]:
    """Fold phone symbols (from the 61, 48 or 39 set) down to the ``to`` set; ``q`` is dropped.

    A symbol already in the target set folds to itself, so a hypothesis from a model trained on
    48 or 39 phones folds the same way as a 61-phone reference.
    """
    if to not in PHONE_SETS:
        raise ConfigError(f"cannot fold to {to} phones: choose one of 61, 48, 39")
    if to == 61:
        return list(phones)
    table: dict[str, str | None] = dict(FOLD_61_TO_48 if to == 48 else FOLD_61_TO_39)
    if to == 39:
        table.update(FOLD_48_TO_39)
    out: list[str] = []
    for p in phones:
        if p not in table:
            raise ConfigError(f"unknown phone {p!r}: expected a TIMIT phone symbol")
        folded = table[p]
        if folded is not None:
            out.append(folded)
    return out


def merge_repeated_silence(phones: Sequence[str], silence: str = "sil") -> list[str]:
    """Merge runs of consecutive silence symbols into one (done after folding, before scoring)."""
    out: list[str] = []
    for p in phones:
        if p == silence and out and out[-1] == silence:
            continue
        out.append(p)
    return out


def fold_for_scoring(phones: Iterable[str], to: int = 39) -> list[str]:
    """Phones the way PER compares them: folded to ``to`` symbols, then ``sil`` runs merged.

    The one definition that scoring, reports and the demo share (Lee & Hon 1989: ``q`` dropped,
    closures and pauses become ``sil``, adjacent ``sil`` count once). ``to=61`` compares the
    symbols as they are.

    Raises:
        ConfigError: ``to`` is not 61, 48 or 39, or a phone is not a TIMIT symbol.
    """
    if to == 61:
        return list(phones)
    return merge_repeated_silence(fold_phones(phones, to=to))


def vocabulary(size: int) -> tuple[str, ...]:
    """Model output symbols for a phone set: index 0 is the blank, then the phones sorted."""
    return (BLANK, *phone_set(size))
