"""TIMIT phone sets and the Lee & Hon (1989) foldings 61 -> 48 -> 39.

Models are trained on one of the sets (61 as Graves et al., 48 as Kaldi, or 39) and always scored
on 39 after folding, as the TIMIT literature does. The glottal stop ``q`` has no folded symbol: it
is deleted from transcripts before training and scoring (Kaldi's ``timit_norm_trans.pl`` does the
same). Silence is scored.
"""

from __future__ import annotations

from collections.abc import Iterable

from seqkit.errors import ConfigError

BLANK = "<blank>"
SILENCE = "sil"  # the 48/39-phone silence class: closures and pauses fold to it

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


def _fold_table(to: int) -> dict[str, str | None]:
    """Any 61/48/39-phone symbol -> its symbol in the ``to`` set (48 or 39; None: deleted)."""
    table: dict[str, str | None] = dict(FOLD_61_TO_48 if to == 48 else FOLD_61_TO_39)
    if to == 39:
        table.update(FOLD_48_TO_39)
    return table


def _check_fold_target(to: int) -> None:
    if to not in PHONE_SETS:
        raise ConfigError(f"cannot fold to {to} phones: choose one of 61, 48, 39")


def fold_phones(phones: Iterable[str], to: int = 39) -> list[str]:
    """Fold phone symbols (from the 61, 48 or 39 set) down to the ``to`` set; ``q`` is dropped.

    A symbol already in the target set folds to itself, so a hypothesis from a model trained on
    48 or 39 phones folds the same way as a 61-phone reference.
    """
    _check_fold_target(to)
    if to == 61:
        return list(phones)
    table = _fold_table(to)
    out: list[str] = []
    for p in phones:
        if p not in table:
            raise ConfigError(f"unknown phone {p!r}: expected a TIMIT phone symbol")
        folded = table[p]
        if folded is not None:
            out.append(folded)
    return out


class ScoringFolder:
    """Folds phones one at a time exactly as :func:`fold_for_scoring` folds a whole sequence.

    The one definition of scoring's folding, for callers whose phones arrive in pieces (a
    stream's decided phones, timed segments) as well as for whole sequences: each phone folds to
    the ``to`` set, ``q`` is dropped, and a ``sil`` right after a kept ``sil`` merges into it
    (Lee & Hon 1989). ``to=61`` passes every symbol through, as scoring compares 61 phones as they
    are. The state is the last kept symbol, so pieces fold as their concatenation would.

    Args:
        to: the phone set to fold to: 61, 48 or 39. Default: 39.

    Raises:
        ConfigError: ``to`` is not 61, 48 or 39 (at construction), or a pushed phone is not a
            TIMIT symbol.
    """

    def __init__(self, to: int = 39) -> None:
        _check_fold_target(to)
        self.to = to
        self._table = _fold_table(to) if to != 61 else None
        self._last: str | None = None

    def symbol(self, phone: str) -> str | None:
        """``phone`` in the ``to`` set, None for ``q`` (no state: runs are not looked at)."""
        if self._table is None:
            return phone
        if phone not in self._table:
            raise ConfigError(f"unknown phone {phone!r}: expected a TIMIT phone symbol")
        return self._table[phone]

    def push(self, phone: str) -> str | None:
        """The next phone's folded symbol to keep, or None: dropped (``q``) or merged (``sil``)."""
        folded = self.symbol(phone)
        if folded is None:
            return None
        if self._table is not None and folded == SILENCE and self._last == SILENCE:
            return None
        self._last = folded
        return folded

    def fold(self, phones: Iterable[str]) -> list[str]:
        """The kept symbols of ``phones``, continuing from the phones pushed before."""
        return [kept for p in phones if (kept := self.push(p)) is not None]


def fold_for_scoring(phones: Iterable[str], to: int = 39) -> list[str]:
    """Phones the way PER compares them: folded to ``to`` symbols, then ``sil`` runs merged.

    The one definition that scoring, reports, decoding's ``--fold`` and the demo share (Lee & Hon
    1989: ``q`` dropped, closures and pauses become ``sil``, adjacent ``sil`` count once); see
    :class:`ScoringFolder`. ``to=61`` compares the symbols as they are.

    Raises:
        ConfigError: ``to`` is not 61, 48 or 39, or a phone is not a TIMIT symbol.
    """
    return ScoringFolder(to).fold(phones)


def vocabulary(size: int) -> tuple[str, ...]:
    """Model output symbols for a phone set: index 0 is the blank, then the phones sorted."""
    return (BLANK, *phone_set(size))
