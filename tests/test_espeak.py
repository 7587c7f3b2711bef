"""espeak-ng binding, the espeak -> TIMIT phone table and the sentence generator."""

from __future__ import annotations

import numpy as np
import pytest

from seqkit.data.phones import PHONES_61
from seqkit.errors import ConfigError, CorpusError
from seqkit.synth.espeak import Espeak
from seqkit.synth.espeak_phones import ACCENTS, label_segments, timit_phones
from seqkit.synth.sentences import MAX_WORDS, MIN_WORDS, SentenceGenerator, load_vocabulary


@pytest.fixture(scope="module")
def engine() -> Espeak:
    return Espeak()


def test_synthesis_returns_audio_with_phoneme_and_word_events_in_order(engine: Espeak) -> None:
    engine.set_voice("en-us")
    engine.set_prosody(rate=175, pitch=50)
    result = engine.synthesize("The cat sat on the mat.")
    assert result.sample_rate == 22050
    assert result.audio.dtype == np.int16 and len(result.audio) > 0.5 * 22050
    assert np.abs(result.audio).max() > 1000
    assert 4 <= len(result.words) <= 6  # espeak-ng may speak 'on the' as one unit
    names = [p.phoneme.lstrip("',") for p in result.phonemes]
    assert ["k", "a", "t"] == names[names.index("k"):names.index("k") + 3]
    samples = [p.sample for p in result.phonemes]
    assert samples == sorted(samples) and samples[-1] <= len(result.audio)


def test_faster_rate_gives_shorter_audio(engine: Espeak) -> None:
    engine.set_voice("en-us+m3")
    engine.set_prosody(rate=120)
    slow = len(engine.synthesize("Every speaker reads a sentence.").audio)
    engine.set_prosody(rate=260)
    fast = len(engine.synthesize("Every speaker reads a sentence.").audio)
    assert fast < 0.75 * slow


def test_unknown_voice_and_out_of_range_prosody_raise_config_error(engine: Espeak) -> None:
    with pytest.raises(ConfigError, match="no voice"):
        engine.set_voice("xx-nowhere+nobody")
    with pytest.raises(ConfigError, match="rate"):
        engine.set_prosody(rate=5)


@pytest.mark.parametrize("accent", ACCENTS, ids=lambda a: a.voice)
def test_every_accent_maps_sentences_onto_the_61_phones(engine: Espeak, accent) -> None:
    engine.set_voice(accent.voice)
    engine.set_prosody()
    for text in SentenceGenerator(11).sentences(6):
        result = engine.synthesize(text)
        pad = np.zeros(2000, np.int16)
        audio = np.concatenate([pad, result.audio, pad])
        segments = label_segments(result.phonemes, audio, accent.voice,
                                  sample_rate=result.sample_rate, speech_start=len(pad))
        assert segments[0][0] == 0 and segments[-1][1] == len(audio)
        assert segments[0][2] == "h#" and segments[-1][2] == "h#"
        assert all(a[1] == b[0] for a, b in zip(segments, segments[1:], strict=False))
        assert {label for _, _, label in segments} <= set(PHONES_61)


def test_stops_get_a_silent_closure_before_their_release(engine: Espeak) -> None:
    engine.set_voice("en-us")
    engine.set_prosody()
    result = engine.synthesize("A cup of coffee, a tip, a cake.")
    pad = np.zeros(2000, np.int16)
    audio = np.concatenate([pad, result.audio, pad])
    segments = label_segments(result.phonemes, audio, "en-us", sample_rate=22050,
                              speech_start=len(pad))
    labels = [label for _, _, label in segments]
    closures = [i for i, label in enumerate(labels) if label in ("pcl", "tcl", "kcl")]
    assert len(closures) >= 4
    for i in closures:
        start, end, _ = segments[i]
        assert labels[i + 1] == labels[i][0]  # pcl p, tcl t, kcl k
        assert np.abs(audio[start:end].astype(np.int32)).max() <= 4


def test_accent_specific_readings_differ_where_espeak_says_they_do() -> None:
    assert timit_phones("'aI", "en-us") == ("ay",)
    assert timit_phones("'aI", "en-gb-x-gbcwmd") == ("oy",)
    assert timit_phones("3", "en-us") == ("axr",)
    assert timit_phones("3", "en-gb-x-rp") == ("ax",)
    assert timit_phones("_:", "en") == ("pau",)


def test_unknown_phoneme_or_accent_raises_corpus_error() -> None:
    with pytest.raises(CorpusError, match="no TIMIT mapping"):
        timit_phones("Q!", "en-us")
    with pytest.raises(CorpusError, match="no phone table"):
        timit_phones("a", "fr")


def test_sentences_are_seeded_and_have_4_to_14_words() -> None:
    first = SentenceGenerator(3).sentences(200)
    assert first == SentenceGenerator(3).sentences(200)
    assert first != SentenceGenerator(4).sentences(200)
    for text in first:
        assert MIN_WORDS <= len(text.split()) <= MAX_WORDS
        assert text[0].isupper() and text[-1] in ".?"
    assert len(set(first)) > 190


def test_vocabulary_is_real_english_by_part_of_speech() -> None:
    vocab = load_vocabulary()
    assert len(vocab.nouns) > 1000 and len(vocab.verbs) > 500 and len(vocab.adjectives) > 500
    assert ("child", "children") in vocab.nouns
    assert ("take", "took", "takes") in vocab.verbs


def _centroid(audio: np.ndarray, rate: int) -> float:
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    return float((power * np.fft.rfftfreq(len(audio), 1 / rate)).sum() / power.sum())


def test_defined_variant_with_higher_formants_sounds_brighter(engine: Espeak) -> None:
    base = engine.variant_text("m3")
    higher = "".join(f"formant {k} 125 100 100\n" for k in range(1, 6))
    centroids = []
    for name, extra in (("test-own", ""), ("test-short-tract", higher)):
        engine.define_variant(name, base + "\n" + extra)
        engine.set_voice(f"en-us+{name}")
        engine.set_prosody(rate=175, pitch=50)
        result = engine.synthesize("Every speaker reads a sentence.")
        centroids.append(_centroid(result.audio, result.sample_rate))
    assert centroids[1] > 1.2 * centroids[0]
    with pytest.raises(ConfigError, match="no voice variant"):
        engine.variant_text("no-such-variant")
    with pytest.raises(ConfigError, match="expected letters"):
        engine.define_variant("../escape", "pitch 80 120\n")
