"""The piper engine (en_US-joe through onnxruntime): real synthesis, no mocks.

One engine for the module (loading the voice takes ~1-3 s); each utterance takes well under a
second on one thread.
"""

from __future__ import annotations

import numpy as np
import pytest

from seqkit.data.phones import PHONES_61
from seqkit.errors import ConfigError
from seqkit.synth.closures import CLOSURES
from seqkit.synth.piper import TIMIT_TO_IPA, PiperEngine, _encode, _segments, voice_config
from seqkit.synth.voices import VoiceError, check_segments

# "She had your dark suit in greasy wash water all year." as pronounce() gives it, with a pause.
SENTENCE = (
    "sh iy hh ae d y uh r pau d aa r k s uw t ih n g r iy z iy "
    "w aa sh w ao dx axr r ao l y ih r"
).split()
SHORT = "b ah tcl en ax n d l ih dx el r ih dh ax m".split()  # button and little rhythm
VOWELS = {"iy", "ih", "eh", "ae", "aa", "ao", "ah", "ax", "uh", "uw", "er", "axr", "ey", "ay",
          "oy", "aw", "ow"}


def _asked(segments: list[tuple[int, int, str]]) -> list[str]:
    """The labels minus silences and the closures split off a stop (tcl alone is asked for)."""
    labels = [label for _, _, label in segments]
    return [
        label for label, after in zip(labels, [*labels[1:], None], strict=True)
        if label not in ("h#", "pau") and CLOSURES.get(after) != label
    ]


@pytest.fixture(scope="module")
def engine() -> PiperEngine:
    return PiperEngine(seed=0)


@pytest.fixture(scope="module")
def sentence(engine: PiperEngine):
    return engine.speak(SENTENCE, "joe")


def _rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12))


def _high_frequency_share(x: np.ndarray) -> float:
    """Energy of the first difference over energy: ~0 for voiced low-pass sound, ~1+ for hiss."""
    x = x.astype(np.float64)
    return float(np.sum(np.diff(x) ** 2) / (np.sum(x**2) + 1e-12))


def test_piper_speaks_nonsilent_float_audio_of_plausible_length(sentence) -> None:
    audio = sentence.audio
    assert sentence.sample_rate == 22050
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0 and _rms_db(audio) > -40
    seconds_per_phone = len(audio) / sentence.sample_rate / len(SENTENCE)
    assert 0.04 < seconds_per_phone < 0.25


def test_piper_segments_are_contiguous_timit_labels_of_the_phones_asked(sentence) -> None:
    check_segments(sentence.phones, len(sentence.audio), "piper joe")
    labels = [label for _, _, label in sentence.phones]
    assert labels[0] == labels[-1] == "h#"
    assert _asked(sentence.phones) == [p for p in SENTENCE if p != "pau"]
    assert "pau" in labels
    closures = [k for k, p in enumerate(labels) if p in set(CLOSURES.values())]
    assert closures  # "had your dark suit" has stops with silent closures
    assert all(CLOSURES[labels[k + 1]] == labels[k] for k in closures)


def test_piper_glottal_stop_and_syllabic_consonants_are_labelled_as_asked(engine) -> None:
    spoken = engine.speak(SHORT, "joe")
    check_segments(spoken.phones, len(spoken.audio), "piper joe")
    assert _asked(spoken.phones) == SHORT


def test_piper_same_input_gives_identical_audio_whatever_came_before(engine, sentence) -> None:
    engine.speak(SHORT, "joe")  # onnxruntime's own generator would have advanced here
    again = engine.speak(SENTENCE, "joe")
    assert np.array_equal(again.audio, sentence.audio)
    assert again.phones == sentence.phones


def test_piper_faster_rate_gives_shorter_audio(engine, sentence) -> None:
    faster = engine.speak(SENTENCE, "joe", rate=1.3)
    assert len(faster.audio) < 0.9 * len(sentence.audio)
    check_segments(faster.phones, len(faster.audio), "piper joe")


def test_piper_refuses_unmapped_phone_before_loading_the_voice() -> None:
    engine = PiperEngine()
    with pytest.raises(VoiceError, match="bcl, epi"):
        engine.speak(["s", "bcl", "iy", "epi"], "joe")
    with pytest.raises(VoiceError, match="no voice 'amy'"):
        engine.speak(["s"], "amy")
    with pytest.raises(ConfigError, match="rate"):
        engine.speak(["s"], "joe", rate=0.0)
    assert not engine._loaded  # refused before the 63 MB model was read


def test_piper_mapping_covers_timit_without_closures_in_symbols_the_voice_has() -> None:
    unmapped = set(PHONES_61) - set(TIMIT_TO_IPA)
    assert unmapped == {"bcl", "dcl", "gcl", "pcl", "kcl", "h#", "epi"}
    id_map = voice_config("joe")["phoneme_id_map"]
    encoded = _encode(list(TIMIT_TO_IPA), id_map)  # raises on a missing id
    assert encoded.ids[0] == 1 and encoded.ids[-1] == 2  # BOS ^ ... EOS $
    assert (encoded.ids[1::2] == 0).all()  # a pad after every symbol


def test_piper_pauses_at_the_ends_join_h_and_pauses_in_a_row_are_one() -> None:
    phones = ["pau", "s", "pau", "pau", "t", "iy", "pau"]
    encoded = _encode(phones, voice_config("joe")["phoneme_id_map"])
    frames = np.ones(len(encoded.ids))
    segments = _segments(encoded, frames, 256, phones, lead=100)
    check_segments(segments, 100 + 256 * len(frames), "piper joe")
    assert [p for _, _, p in segments] == ["h#", "s", "pau", "t", "iy", "h#"]
    (t,) = [(s, e) for s, e, p in segments if p == "t"]
    assert t[1] - t[0] == 3 * 256  # its own id and both pads beside it


def test_piper_timings_line_up_with_the_audio(sentence) -> None:
    """Fricatives hiss and vowels do not, inside their own segments; the pause is silent.

    Shifting every boundary by 2 frames (23 ms) breaks the first assertion and by 2-3 frames
    the second, so labels that drifted from the audio would fail here.
    """
    audio, segments = sentence.audio, sentence.phones
    hiss = [_high_frequency_share(audio[s:e]) for s, e, p in segments if p in {"s", "sh", "z"}]
    vowel = [_high_frequency_share(audio[s:e]) for s, e, p in segments if p in VOWELS]
    assert min(hiss) > 2 * max(vowel)
    vowel_db = np.median([_rms_db(audio[s:e]) for s, e, p in segments if p in VOWELS])
    (pause_db,) = [_rms_db(audio[s:e]) for s, e, p in segments if p == "pau"]
    assert pause_db < vowel_db - 35
    start, end, _ = segments[0]
    assert not audio[start:end].any()  # the leading h# is silence
