"""Load any audio file soundfile can read as 16 kHz mono float32.

soundfile (libsndfile) reads RIFF WAV, FLAC, OGG/Vorbis and NIST SPHERE (TIMIT's ``.WAV``) among
others; other rates are resampled with :func:`torchaudio.functional.resample` and channels are
averaged.
"""

from __future__ import annotations

import os
from pathlib import Path

import soundfile
import torch
import torchaudio.functional as AF

from seqkit.errors import AudioError

SAMPLE_RATE = 16000  # every model in seqkit runs on 16 kHz audio, as TIMIT is recorded

_FORMATS_HINT = "expected an audio file soundfile reads (WAV, FLAC, OGG, NIST SPHERE)"


def load_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read an audio file as mono float32 at ``sample_rate``.

    Args:
        path: an audio file in any format soundfile reads (WAV, FLAC, OGG, NIST SPHERE, ...),
            at any sample rate, with any number of channels.
        sample_rate: rate of the returned waveform in Hz. Default: 16000.

    Returns:
        The waveform, (N,) float32 in [-1, 1] for integer-PCM files; channels are averaged.

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
    wave = torch.from_numpy(data).mean(dim=1)  # (N, C) -> (N,)
    if file_rate != sample_rate:
        wave = AF.resample(wave, orig_freq=int(file_rate), new_freq=sample_rate)
    return wave.contiguous()
