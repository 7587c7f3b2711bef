"""Running a synthesis program (flite, festival) as a subprocess and reading the wave it wrote.

The engines made from the Debian packages of flite and festival run the programs rather than
binding their libraries: the programs are what the packages install and document, a crash stays
in the child, and each call starts from the voice's own state, so the same input gives the same
audio. Every call works in a private temp directory that is removed afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from seqkit.errors import BackendUnavailableError, ConfigError, CorpusError

# A program that takes longer than this on one sentence is stuck, not slow.
TIMEOUT_S = 120.0


def require_program(program: str, package: str) -> str:
    """The path of ``program``, or an error naming the Debian package that installs it.

    Raises:
        BackendUnavailableError: ``program`` is not on ``PATH``.
    """
    path = shutil.which(program)
    if path is None:
        raise BackendUnavailableError(f"{program} is not installed: install the Debian package "
                                      f"(`sudo apt-get install {package}`)")
    return path


def run_program(
    args: Sequence[str], where: str, *, cwd: Path, stdin: str | None = None
) -> tuple[str, str]:
    """Run a synthesis program to the end.

    Returns:
        What it wrote on stdout and on stderr (both programs report a missing unit on stderr and
        still exit 0, so the caller reads stderr too).

    Raises:
        BackendUnavailableError: the program failed or timed out.
    """
    try:
        done = subprocess.run(list(args), cwd=cwd, input=stdin, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        raise BackendUnavailableError(f"{where}: {args[0]} did not finish in {TIMEOUT_S:.0f} s")\
            from err
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BackendUnavailableError(f"{where}: {args[0]} failed (exit {done.returncode}): "
                                      f"{last}")
    return done.stdout, done.stderr


def read_wave(path: Path, where: str) -> tuple[np.ndarray, int]:
    """The mono audio a program wrote, as float32 in [-1, 1], and its sample rate.

    Raises:
        CorpusError: the program wrote no audio.
    """
    if not path.is_file():
        raise CorpusError(f"{where}: the program wrote no wave file")
    audio, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    if audio.shape[0] == 0:
        raise CorpusError(f"{where}: the program wrote an empty wave file")
    return np.ascontiguousarray(audio[:, 0]), int(sample_rate)


RATE_RANGE = (0.25, 4.0)  # speaking rates both programs say intelligibly
F0_RANGE = (50.0, 400.0)  # mean pitch in Hz, from a low male to a child


def check_prosody(rate: float, f0_mean: float | None, where: str) -> None:
    """Refuse a speaking rate or mean pitch outside what the voices say intelligibly.

    Raises:
        ConfigError: naming the value and the range.
    """
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise ConfigError(f"{where}: rate must be in [{RATE_RANGE[0]}, {RATE_RANGE[1]}] "
                          f"(1.0 = the voice's own), found {rate}")
    if f0_mean is not None and not F0_RANGE[0] <= f0_mean <= F0_RANGE[1]:
        raise ConfigError(f"{where}: f0_mean must be in [{F0_RANGE[0]:.0f}, {F0_RANGE[1]:.0f}] "
                          f"Hz or None (the voice's own), found {f0_mean}")
