"""Praat TextGrid files: the interval tiers aligners and annotators write (L2-ARCTIC's phones).

Both of Praat's text formats are read. The long one labels every value (``xmin = 0``,
``intervals [1]:``); the short one lists the same values bare, in the same order. So both are read
as one stream of numbers and quoted strings once the long format's ``[n]`` indices are dropped.
Files Praat saved as UTF-16 (it does when a label is not ASCII) are decoded by their byte-order
mark.
"""

from __future__ import annotations

import re
from pathlib import Path

from seqkit.errors import CorpusError

Interval = tuple[float, float, str]  # (start s, end s, label)

_INDEX = re.compile(r"\[\s*\d*\s*\]")
# A quoted string (Praat doubles a quote inside one) or a number standing alone.
_TOKEN = re.compile(r'"((?:[^"]|"")*)"|(?<![\w.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)')


def read_tiers(path: str | Path) -> dict[str, list[Interval]]:
    """The interval tiers of a TextGrid, by name (point tiers are skipped).

    Raises:
        CorpusError: the file is unreadable or not a TextGrid.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CorpusError(f"cannot read {path} ({err.strerror}): check the file") from None
    text = _decode(raw)
    tokens: list[str | float] = []
    for match in _TOKEN.finditer(_INDEX.sub(" ", text)):
        string, number = match.groups()
        tokens.append(string.replace('""', '"') if string is not None else float(number))
    try:
        return _parse(tokens)
    except (IndexError, TypeError, ValueError):
        raise CorpusError(
            f"{path} is not a Praat TextGrid (long or short text format): restore the file "
            "from the corpus"
        ) from None


_BOMS = ((b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"), (b"\xef\xbb\xbf", "utf-8-sig"))


def _decode(raw: bytes) -> str:
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return raw.decode(codec)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse(tokens: list[str | float]) -> dict[str, list[Interval]]:
    if tokens[:2] != ["ooTextFile", "TextGrid"]:
        raise ValueError("not a TextGrid")
    position = 4  # past the file's xmin and xmax
    count = int(tokens[position])
    position += 1
    tiers: dict[str, list[Interval]] = {}
    for _ in range(count):
        kind, name = tokens[position], tokens[position + 1]
        size = int(tokens[position + 4])
        position += 5
        if kind == "IntervalTier":
            intervals = []
            for i in range(size):
                start, end, label = tokens[position + 3 * i: position + 3 * i + 3]
                intervals.append((float(start), float(end), str(label)))
            tiers.setdefault(str(name), intervals)
            position += 3 * size
        elif kind == "TextTier":
            position += 2 * size
        else:
            raise ValueError(f"unknown tier class {kind!r}")
    return tiers
