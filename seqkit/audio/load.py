"""Load any audio file soundfile can read as 16 kHz mono float32.

soundfile (libsndfile) reads RIFF WAV, FLAC, OGG/Vorbis and NIST SPHERE (TIMIT's ``.WAV``) among
others; other rates are resampled with :func:`torchaudio.functional.resample` and channels are
averaged.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import soundfile
import torch
import torchaudio.functional as AF

from seqkit.errors import AudioError, AudioWarning

SAMPLE_RATE = 16000  # every model in seqkit runs on 16 kHz audio, as TIMIT is recorded

_FORMATS_HINT = "expected an audio file soundfile reads (WAV, FLAC, OGG, NIST SPHERE)"
# libsndfile's header log for a WAV whose data chunk is shorter than its header says
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_BLOCK_ALIGN = re.compile(r"^\s*Block Align\s*:\s*(\d+)", re.MULTILINE)


def load_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read an audio file as mono float32 at ``sample_rate``.

    Args:
        path: an audio file in any format soundfile reads (WAV, FLAC, OGG, NIST SPHERE, ...),
            at any sample rate, with any number of channels.
        sample_rate: rate of the returned waveform in Hz. Default: 16000.

    Returns:
        The waveform, (N,) float32 in [-1, 1] for integer-PCM files; channels are averaged.

    Warns:
        AudioWarning: the file is shorter than its header says (truncated by a failed copy or
            download): what was read is returned, and the warning says how much that is.

    Raises:
        AudioError: the file is missing, not a file, unreadable, not audio or has no samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file {path} does not exist: check the path")
    if not path.is_file():
        raise AudioError(f"audio path {path} is not a file: {_FORMATS_HINT}")
    try:
        data, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AudioError(
            f"cannot read audio file {path} ({reason}): {_FORMATS_HINT}; "
            "re-export it in one of these formats"
        ) from None
    if data.shape[0] == 0:
        raise AudioError(
            f"audio file {path} has no samples: expected a non-empty recording; "
            "remove it or record it again"
        )
    _warn_if_truncated(path, data.shape[0], file_rate)
    wave = torch.from_numpy(data).mean(dim=1)  # (N, C) -> (N,)
    if file_rate != sample_rate:
        wave = AF.resample(wave, orig_freq=int(file_rate), new_freq=sample_rate)
    return wave.contiguous()


def _warn_if_truncated(path: Path, frames: int, rate: int) -> None:
    """Warn when a WAV holds fewer samples than its header declares.

    libsndfile reads such a file without an error, up to where it ends (a WAV cut to a third
    decoded as 0.9 s of 2.6 s, silently); its header log says "data : DECLARED (should be
    PRESENT)", which is what this reads.
    """
    try:
        log = soundfile.info(path).extra_info
    except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError, ValueError):
        return
    short, align = _SHORT_DATA.search(log), _BLOCK_ALIGN.search(log)
    if short is None or align is None or int(align[1]) <= 0:
        return
    declared = int(short[1]) // int(align[1])
    if declared <= frames:
        return
    warnings.warn(
        f"audio file {path} is truncated: read {frames / rate:.2f} s ({frames} samples), its "
        f"header says {declared / rate:.2f} s ({declared} samples); using what was read",
        AudioWarning, stacklevel=3)
