"""Small corpora in the field's layouts, spoken by espeak-ng at test time (no corpus is shipped).

Each writer lays out real audio (WAV or FLAC at the corpus's own rate) and the transcripts,
speaker lists and annotations as the corpus does, so lhotse's recipes and seqkit's readers read
them as they read the real thing: CMU ARCTIC, LJSpeech, L2-ARCTIC, Kaldi data dirs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from seqkit.synth.espeak import Espeak

SENTENCES = (
    "Author of the danger trail, Philip Steels, etc.",
    "Not at this particular case, Tom, apologized Whittemore.",
    "For the twentieth time that evening the two men shook hands.",
    "Lord, but I'm glad to see you again, Phil.",
    "Will we ever forget it.",
    "God bless 'em, I hope I'll go on seeing them forever.",
)


@functools.cache
def _engine() -> Espeak:
    engine = Espeak()
    engine.set_voice("en-us")
    return engine


def speak(text: str, rate: int, *, speed: int = 170, pitch: int = 50) -> np.ndarray:
    """``text`` spoken by espeak-ng, float32 at ``rate`` Hz."""
    engine = _engine()
    engine.set_prosody(rate=speed, pitch=pitch)
    synthesis = engine.synthesize(text)
    wave = torch.from_numpy(synthesis.audio.astype(np.float32) / 32768.0)
    if synthesis.sample_rate != rate:
        wave = AF.resample(wave, synthesis.sample_rate, rate)
    return wave.clamp(-1, 1).numpy()


def write_cmu_arctic(root: Path, speakers: dict[str, int], rate: int = 16000) -> None:
    """``cmu_us_<spk>_arctic/{wav/arctic_a000N.wav, etc/txt.done.data}`` per speaker."""
    for index, (speaker, count) in enumerate(speakers.items()):
        folder = root / f"cmu_us_{speaker}_arctic"
        (folder / "wav").mkdir(parents=True)
        (folder / "etc").mkdir()
        lines = []
        for n in range(count):
            name = f"arctic_a{n + 1:04d}"
            text = SENTENCES[(n + index) % len(SENTENCES)]
            soundfile.write(folder / "wav" / f"{name}.wav",
                            speak(text, rate, pitch=30 + 20 * index), rate, subtype="PCM_16")
            lines.append(f'( {name} "{text}" )\n')
        (folder / "etc" / "txt.done.data").write_text("".join(lines))


def write_ljspeech(root: Path, count: int, rate: int = 22050) -> None:
    """``metadata.csv`` (``id|text|normalized text``) and ``wavs/<id>.wav`` at 22.05 kHz."""
    (root / "wavs").mkdir(parents=True)
    lines = []
    for n in range(count):
        utt = f"LJ001-{n + 1:04d}"
        text = SENTENCES[n % len(SENTENCES)]
        soundfile.write(root / "wavs" / f"{utt}.wav", speak(text, rate), rate, subtype="PCM_16")
        lines.append(f"{utt}|{text}|{text}\n")
    (root / "metadata.csv").write_text("".join(lines))


def write_kaldi(root: Path, *, segments: bool, rate: int = 16000) -> dict[str, tuple[str, str]]:
    """A Kaldi data dir of two speakers; with ``segments``, each speaker's two utterances are
    one recording with half a second of silence between them.

    Returns:
        utterance id -> (speaker, text).
    """
    root.mkdir(parents=True)
    audio = root / "audio"
    audio.mkdir()
    wav_scp, text, utt2spk, seg = [], [], [], []
    truth: dict[str, tuple[str, str]] = {}
    for s, speaker in enumerate(("spk1", "spk2", "spk3")):
        pieces = []
        start = 0.0
        for n in range(2):
            utt = f"{speaker}-u{n}"
            sentence = SENTENCES[2 * s + n]
            wave = speak(sentence, rate, pitch=30 + 25 * s)
            truth[utt] = (speaker, sentence)
            text.append(f"{utt} {sentence.upper()}\n")
            utt2spk.append(f"{utt} {speaker}\n")
            if segments:
                pieces += [wave, np.zeros(rate // 2, np.float32)]
                seg.append(f"{utt} {speaker}-rec {start:.3f} {start + len(wave) / rate:.3f}\n")
                start += (len(wave) + rate // 2) / rate
            else:
                soundfile.write(audio / f"{utt}.flac", wave, rate, subtype="PCM_16")
                wav_scp.append(f"{utt} {audio / f'{utt}.flac'}\n")
        if segments:
            soundfile.write(audio / f"{speaker}.wav", np.concatenate(pieces), rate,
                            subtype="PCM_16")
            wav_scp.append(f"{speaker}-rec {audio / f'{speaker}.wav'}\n")
    (root / "wav.scp").write_text("".join(wav_scp))
    (root / "text").write_text("".join(text))
    (root / "utt2spk").write_text("".join(utt2spk))
    if segments:
        (root / "segments").write_text("".join(seg))
    return truth


def textgrid(intervals: list[tuple[float, float, str]], tier: str = "phones") -> str:
    """A Praat TextGrid (long text format) with one interval tier and a words tier."""
    end = intervals[-1][1]
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0",
             f"xmax = {end}", "tiers? <exists>", "size = 2", "item []:"]
    for number, (name, items) in enumerate((("words", [(0.0, end, "")]), (tier, intervals)), 1):
        lines += [f"    item [{number}]:", '        class = "IntervalTier"',
                  f'        name = "{name}"', "        xmin = 0", f"        xmax = {end}",
                  f"        intervals: size = {len(items)}"]
        for i, (start, stop, label) in enumerate(items, 1):
            quoted = '"' + label.replace('"', '""') + '"'  # Praat doubles a quote
            lines += [f"        intervals [{i}]:", f"            xmin = {start}",
                      f"            xmax = {stop}", f"            text = {quoted}"]
    return "\n".join(lines) + "\n"


def write_l2_arctic(root: Path, speakers: tuple[str, ...], annotated: dict[str, list[str]],
                    rate: int = 44100) -> None:
    """``<SPK>/{wav,transcript,annotation}/arctic_a000N.*``: two utterances per speaker,
    ``annotated[speaker]`` the perceived-phone marks of its first utterance (spread evenly over
    the audio, as ``CPL,PPL,type`` where the annotator heard another phone)."""
    for index, speaker in enumerate(speakers):
        for sub in ("wav", "transcript", "annotation"):
            (root / speaker / sub).mkdir(parents=True, exist_ok=True)
        for n in range(2):
            name = f"arctic_a{n + 1:04d}"
            text = SENTENCES[(n + index) % len(SENTENCES)]
            wave = speak(text, rate, pitch=30 + 20 * index)
            soundfile.write(root / speaker / "wav" / f"{name}.wav", wave, rate, subtype="PCM_16")
            (root / speaker / "transcript" / f"{name}.txt").write_text(text)
            if n == 0 and speaker in annotated:
                marks = annotated[speaker]
                step = len(wave) / rate / len(marks)
                intervals = [(round(i * step, 4), round((i + 1) * step, 4), m)
                             for i, m in enumerate(marks)]
                (root / speaker / "annotation" / f"{name}.TextGrid").write_text(
                    textgrid(intervals))
