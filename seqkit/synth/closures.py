"""Stop closures from the audio: where a stop's silence ends and its release begins.

TIMIT labels a stop as two segments, the closure (``bcl dcl gcl pcl tcl kcl``) and the release
(``b d g p t k``); affricates get a closure too (``dcl jh``, ``tcl ch``). Synthesizers time a stop
as one unit. In the stop's span the closure is the quiet stretch and the release starts where the
energy jumps back up (the burst), so the split is read off the short-time energy: the quietest
frame of the span, then the first frame after it that is ``rise_db`` louder. A span with no such
rise, or too short a closure or release, stays one stop segment: closures only where the audio
shows them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CLOSURES: dict[str, str] = {
    "b": "bcl", "d": "dcl", "g": "gcl", "p": "pcl", "t": "tcl", "k": "kcl",
    "jh": "dcl", "ch": "tcl",
}

_FRAME_S = 0.005  # energy window
_HOP_S = 0.0025


def split_closures(
    audio: np.ndarray,
    segments: Sequence[tuple[int, int, str]],
    sample_rate: int,
    *,
    rise_db: float = 9.0,
    min_closure_s: float = 0.01,
    min_release_s: float = 0.005,
) -> list[tuple[int, int, str]]:
    """Split each stop (and affricate) segment into closure + release where the audio shows it.

    Args:
        audio: (N,) samples (any scale) the segments index.
        segments: ``(start, end, label)`` in samples, TIMIT labels; a stop's segment covers its
            closure and its release.
        sample_rate: rate of ``audio``.
        rise_db: energy rise over the span's quietest frame that marks the release.
        min_closure_s, min_release_s: shortest closure and release kept, in seconds.

    Returns:
        The segments with ``(start, cut, closure), (cut, end, stop)`` in place of each stop
        whose burst was found; every other segment unchanged.
    """
    min_closure = int(min_closure_s * sample_rate)
    min_release = int(min_release_s * sample_rate)
    out: list[tuple[int, int, str]] = []
    for start, end, label in segments:
        closure = CLOSURES.get(label)
        cut = None if closure is None else release_onset(audio[start:end], sample_rate, rise_db)
        if cut is None or cut < min_closure or (end - start) - cut < min_release:
            out.append((start, end, label))
        else:
            out += [(start, start + cut, closure), (start + cut, end, label)]
    return out


def release_onset(span: np.ndarray, sample_rate: int, rise_db: float) -> int | None:
    """Offset of the burst in a stop's span: first frame ``rise_db`` above the quietest one."""
    frame, hop = int(_FRAME_S * sample_rate), int(_HOP_S * sample_rate)
    if len(span) < frame + hop:
        return None
    x = span.astype(np.float64)
    starts = np.arange(0, len(x) - frame + 1, hop)
    power = np.array([np.mean(x[s:s + frame] ** 2) for s in starts])
    level = 10.0 * np.log10(power + 1e-20)
    quietest = int(np.argmin(level))
    louder = np.flatnonzero(level[quietest:] >= level[quietest] + rise_db)
    if not louder.size:
        return None
    return int(starts[quietest + louder[0]] + frame // 2)
