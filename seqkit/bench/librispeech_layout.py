"""A corpus in LibriSpeech's exact layout, spoken by espeak-ng: for tests and the prepare benchmark.

No LibriSpeech is needed to check the reader, the lexicon and the recipes end to end: this writes
``<root>/LibriSpeech/<subset>/<speaker>/<chapter>/<spk>-<ch>-<utt>.flac`` (16 kHz FLAC) with each
chapter's ``.trans.txt`` (upper case, apostrophes kept), from transcripts the caller gives.

For a realistic-size layout without hours of synthesis, ``distinct_audio`` synthesizes only that
many recordings and hard-links the rest to them (so their audio does not say their transcript:
right for timing the reader, wrong for training).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.transforms as AT

from seqkit.audio.features import one_torch_thread
from seqkit.audio.load import SAMPLE_RATE
from seqkit.corpora.librispeech.layout import LIBRISPEECH_DIR
from seqkit.progress import ProgressFn
from seqkit.synth.espeak import Espeak

_NOT_LIBRISPEECH = re.compile(r"[^A-Z' ]")  # LibriSpeech transcripts: letters, apostrophes
# Shape of one subset: (speakers, chapters per speaker, utterances per chapter).
SubsetShape = tuple[int, int, int]


def write_librispeech_layout(
    root: str | os.PathLike[str],
    shapes: dict[str, SubsetShape],
    texts: Iterator[str],
    *,
    distinct_audio: int | None = None,
    first_speaker: int = 100,
    progress: ProgressFn | None = None,
) -> int:
    """Write a LibriSpeech-layout corpus under ``root/LibriSpeech/``.

    Args:
        root: folder to write into (created).
        shapes: subset name -> (speakers, chapters per speaker, utterances per chapter).
        texts: one transcript per utterance, in writing order (upper-cased here, and anything
            but letters, apostrophes and spaces dropped, as LibriSpeech writes them).
        distinct_audio: synthesize at most this many recordings, hard-link the rest. None: all.
        first_speaker: id of the first speaker; speakers and chapters get distinct numbers.
        progress: called as ``progress("synthesizing", done, total)``.

    Returns:
        The number of utterances written.
    """
    engine = Espeak()
    engine.set_voice("en-us")
    base = Path(root) / LIBRISPEECH_DIR
    total = sum(s * c * u for s, c, u in shapes.values())
    written: list[Path] = []
    speaker = first_speaker
    for subset, (speakers, chapters, utterances) in shapes.items():
        for _ in range(speakers):
            speaker += 1
            engine.set_prosody(rate=150 + 7 * (speaker % 8), pitch=30 + 5 * (speaker % 9))
            for chapter in range(speaker * 10, speaker * 10 + chapters):
                folder = base / subset / str(speaker) / str(chapter)
                folder.mkdir(parents=True, exist_ok=True)
                lines = []
                for utt in range(utterances):
                    utt_id = f"{speaker}-{chapter}-{utt:04d}"
                    text = " ".join(_NOT_LIBRISPEECH.sub("", next(texts).upper()).split())
                    lines.append(f"{utt_id} {text}\n")
                    path = folder / f"{utt_id}.flac"
                    if distinct_audio is None or len(written) < distinct_audio:
                        _write_speech(engine, text, path)
                    else:
                        os.link(written[len(written) % distinct_audio], path)
                    written.append(path)
                    if progress is not None:
                        progress("synthesizing", len(written), total)
                (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    return len(written)


@functools.cache
def _resampler(rate: int) -> AT.Resample:
    return AT.Resample(rate, SAMPLE_RATE)  # the filter is built once, not per utterance


def _write_speech(engine: Espeak, text: str, path: Path) -> None:
    synthesis = engine.synthesize(text.lower())
    wave = torch.from_numpy(synthesis.audio.astype(np.float32) / 32768.0)
    with one_torch_thread():
        wave = _resampler(synthesis.sample_rate)(wave)
    soundfile.write(path, wave.clamp(-1, 1).numpy(), SAMPLE_RATE, subtype="PCM_16")
