"""flite's US English voices, made from recordings of people, driven by TIMIT phones.

flite (CMU's small synthesizer) speaks a phone string given with ``-p`` and, with ``-psdur``,
prints each phone's end time in seconds; we run it as a program and read both. Its voices:

* ``kal16``: diphone voice of a US male (Kevin Lenzo), 16 kHz.
* ``awb``, ``rms``, ``slt``: clustergen (statistical parametric) voices of three CMU ARCTIC
  speakers (a Scottish-English male, a US male, a US female), 16 kHz.

All four speak the CMU phone set (:data:`~seqkit.synth.phone_maps.CMU_PHONES`, read from the
voices' own unit and state tables), so one :class:`~seqkit.synth.phone_maps.PhoneMap` serves
them: TIMIT's allophones become their nearest CMU phones (``axr`` -> ``er``, ``el`` -> ``ax l``,
``dx`` -> ``d``, ...; see :data:`~seqkit.synth.phone_maps.CMU_SUBSTITUTES`). The clustergen
voices say *any* phone name without complaint, so the map, not flite, refuses unknown phones.
kal16 lacks the diphones no English word needs (``hh``, ``w`` or ``y`` before a consonant or a
pause, a consonant before ``ng``): a sequence with one is refused, since flite would leave a gap
in the audio and report times that no longer match it.

Origin and licence: flite 2.2 and its voices are from Carnegie Mellon University
(http://cmuflite.org), under CMU's free BSD-style licence (use, modify and distribute, keep the
copyright notice); the ARCTIC recordings are under the same terms. Debian package ``flite``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from seqkit.errors import ConfigError, CorpusError
from seqkit.synth.phone_maps import (
    CMU_PHONES,
    CMU_SUBSTITUTES,
    PhoneMap,
    spoken_from_ends,
)
from seqkit.synth.programs import check_prosody, read_wave, require_program, run_program
from seqkit.synth.voices import Spoken, VoiceError

_CONSONANTS = ("b ch d dh f g hh jh k l m n ng p r s sh t th v w y z zh").split()

# Phone pairs kal16 has no diphone for (found by asking flite for every pair of its phones;
# tests/test_flite.py asks again and compares).
KAL16_MISSING_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("hh", right) for right in (*_CONSONANTS, "pau") if right != "y"}
    | {(left, right) for left in ("w", "y") for right in (*_CONSONANTS, "pau")}
    | {(left, "ng") for left in (*_CONSONANTS, "er", "pau")}
)

# One map per voice: all speak the CMU phones; only kal16, a diphone voice, lacks pairs.
FLITE_MAPS: dict[str, PhoneMap] = {
    "kal16": PhoneMap("flite kal16", CMU_PHONES, CMU_SUBSTITUTES, KAL16_MISSING_PAIRS),
    "awb": PhoneMap("flite awb", CMU_PHONES, CMU_SUBSTITUTES),
    "rms": PhoneMap("flite rms", CMU_PHONES, CMU_SUBSTITUTES),
    "slt": PhoneMap("flite slt", CMU_PHONES, CMU_SUBSTITUTES),
}

# Voices whose pitch follows int_f0_target_mean (measured: kal16 at 100 and 200 Hz speaks at
# 99 and 198 Hz; rms keeps 107 Hz whatever is asked, awb and slt move the wrong way).
F0_VOICES: tuple[str, ...] = ("kal16",)

# What flite writes on stderr when a diphone voice lacks a unit (it still exits 0).
_MISSING_UNIT = "failed to find entry"


class FliteEngine:
    """flite's voices, speaking TIMIT phones (see the module docstring).

    Raises:
        BackendUnavailableError: flite is not installed (on construction).
    """

    name = "flite"
    voices: tuple[str, ...] = tuple(FLITE_MAPS)

    def __init__(self) -> None:
        self._program = require_program("flite", "flite")

    def speak(
        self, phones: Sequence[str], voice: str, *, rate: float = 1.0,
        f0_mean: float | None = None,
    ) -> Spoken:
        """Say ``phones`` (TIMIT-61, no closures, ``pau`` between phrases) with ``voice``.

        Args:
            phones: the pronunciation; each phone is said as :data:`FLITE_MAPS` maps it, and
                the labels are the phones said.
            voice: one of :attr:`voices`.
            rate: speaking rate relative to the voice's own (flite's ``duration_stretch`` is
                ``1 / rate``).
            f0_mean: the mean pitch in Hz (``int_f0_target_mean``), None for the voice's own;
                one voice becomes several speakers this way. Only kal16 follows it: the
                clustergen voices ignore it (rms) or move their pitch erratically (awb, slt).

        Returns:
            16 kHz float32 audio and its segments, ``h#`` at both ends.

        Raises:
            VoiceError: an unknown voice, a phone without mapping or a phone pair the voice
                lacks.
            ConfigError: ``rate`` or ``f0_mean`` out of range, or ``f0_mean`` for a voice that
                does not follow it.
        """
        where = f"flite {voice}"
        if voice not in FLITE_MAPS:
            raise VoiceError(f"flite has no voice {voice!r}: choose one of {', '.join(FLITE_MAPS)}")
        check_prosody(rate, f0_mean, where)
        if f0_mean is not None and voice not in F0_VOICES:
            raise ConfigError(f"{where} does not follow f0_mean: give it only for "
                              f"{', '.join(F0_VOICES)}, or change the pitch of the audio instead")
        said = [s for s, _ in FLITE_MAPS[voice].apply(phones)]
        args = [self._program, "-voice", voice, "-p", " ".join(said), "-psdur",
                "--setf", f"duration_stretch={1.0 / rate:.6g}"]
        if f0_mean is not None:
            args += ["--setf", f"int_f0_target_mean={f0_mean:.6g}"]
        with tempfile.TemporaryDirectory(prefix="seqkit-flite-") as tmp:
            out, err = run_program([*args, "-o", "out.wav"], where, cwd=Path(tmp))
            if _MISSING_UNIT in err:
                raise VoiceError(f"{where} lacks a unit for this sequence ({err.strip()}): use "
                                 "another voice for this sentence")
            audio, sample_rate = read_wave(Path(tmp) / "out.wav", where)
        labels, ends = _parse_psdur(out, where)
        if labels != said:
            raise CorpusError(f"{where} reported {' '.join(labels)!r} for {' '.join(said)!r}")
        return spoken_from_ends(audio, sample_rate, labels, ends, where)


def _parse_psdur(out: str, where: str) -> tuple[list[str], list[float]]:
    """Phones and end times from flite's ``-psdur`` line (``pau:0.220 sh:0.340 ...``)."""
    labels: list[str] = []
    ends: list[float] = []
    for pair in out.split():
        label, _, end = pair.rpartition(":")
        try:
            ends.append(float(end))
        except ValueError as err:
            raise CorpusError(f"{where}: cannot read flite's phone timing {pair!r}") from err
        labels.append(label)
    return labels, ends
