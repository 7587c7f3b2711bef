"""flite engine: every voice says TIMIT phones with times that match its audio (real synthesis)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from voice_checks import SENTENCE, VOWELS, assert_says, assert_timings_match_audio, said_labels

from seqkit.errors import BackendUnavailableError, ConfigError
from seqkit.synth import programs
from seqkit.synth.flite import FLITE_MAPS, KAL16_MISSING_PAIRS, FliteEngine
from seqkit.synth.phone_maps import CMU_PHONES
from seqkit.synth.voices import Spoken, VoiceError

needs_flite = pytest.mark.skipif(shutil.which("flite") is None,
                                 reason="flite is not installed (apt-get install flite)")


@pytest.fixture(scope="module")
def engine() -> FliteEngine:
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (apt-get install flite)")
    return FliteEngine()


@needs_flite
@pytest.mark.parametrize("voice", FliteEngine.voices)
def test_every_voice_says_the_mapped_phones_with_times_that_match_the_audio(
    engine: FliteEngine, voice: str
) -> None:
    spoken = engine.speak(SENTENCE, voice)
    assert spoken.sample_rate == 16000
    assert_says(spoken, said_labels(FLITE_MAPS[voice], SENTENCE), f"flite {voice}")
    labels = [label for _, _, label in spoken.phones]
    assert "pau" in labels and {"er", "d", "ih"} <= set(labels)  # axr, dx, ix as mapped
    assert_timings_match_audio(spoken)


@needs_flite
@pytest.mark.parametrize("voice", FliteEngine.voices)
def test_same_input_gives_the_same_audio(engine: FliteEngine, voice: str) -> None:
    first, second = engine.speak(SENTENCE, voice), engine.speak(SENTENCE, voice)
    assert np.array_equal(first.audio, second.audio) and first.phones == second.phones


@needs_flite
def test_faster_rate_gives_shorter_audio(engine: FliteEngine) -> None:
    normal = len(engine.speak(SENTENCE, "rms").audio)
    fast = len(engine.speak(SENTENCE, "rms", rate=1.5).audio)
    assert fast < 0.8 * normal


@needs_flite
def test_f0_mean_sets_the_pitch_of_kal16_and_is_refused_where_ignored(
    engine: FliteEngine
) -> None:
    def vowel_pitch(spoken: Spoken) -> float:
        rate, lags = spoken.sample_rate, []
        for start, end, label in spoken.phones:
            if label in VOWELS and end - start >= 800:
                x = spoken.audio[start:end].astype(np.float64)
                correlation = np.correlate(x, x, "full")[len(x) - 1:]
                lags.append(rate // 400 + np.argmax(correlation[rate // 400:rate // 60]))
        return rate / float(np.median(lags))

    low = vowel_pitch(engine.speak(SENTENCE, "kal16", f0_mean=100))
    high = vowel_pitch(engine.speak(SENTENCE, "kal16", f0_mean=200))
    assert 85 < low < 115 and 170 < high < 230
    with pytest.raises(ConfigError, match="flite rms does not follow f0_mean"):
        engine.speak(SENTENCE, "rms", f0_mean=150)


@needs_flite
@pytest.mark.parametrize("voice", FliteEngine.voices)
def test_phone_without_mapping_raises_voice_error_naming_phone_and_voice(
    engine: FliteEngine, voice: str
) -> None:
    with pytest.raises(VoiceError, match=rf"flite {voice} cannot say 'q'"):
        engine.speak(["s", "q", "aa"], voice)


@needs_flite
def test_kal16_refuses_a_diphone_it_lacks_before_synthesis(engine: FliteEngine) -> None:
    with pytest.raises(VoiceError, match="flite kal16 lacks the diphone hh-pau"):
        engine.speak(["aa", "hh"], "kal16")
    engine.speak(["aa", "hh"], "slt")  # a clustergen voice joins any pair


@needs_flite
def test_kal16_missing_pairs_are_the_diphones_flite_reports_missing() -> None:
    phones = sorted(CMU_PHONES)
    reported: set[tuple[str, str]] = set()
    for left in phones:
        sequence = ["pau", *[p for right in phones for p in (left, right)], "pau"]
        done = subprocess.run(["flite", "-voice", "kal16", "-p", " ".join(sequence),
                               "-o", "/dev/null"], capture_output=True, text=True, check=True)
        for line in done.stderr.splitlines():
            if "failed to find entry" in line:
                a, b = line.rsplit(": ", 1)[1].strip().split("-")
                reported.add((a, b))
    assert reported == KAL16_MISSING_PAIRS


@needs_flite
def test_unknown_voice_and_out_of_range_rate_are_refused(engine: FliteEngine) -> None:
    with pytest.raises(VoiceError, match="no voice 'kal'"):
        engine.speak(SENTENCE, "kal")
    with pytest.raises(ConfigError, match="rate"):
        engine.speak(SENTENCE, "slt", rate=0.0)
    with pytest.raises(VoiceError, match="nothing to say"):
        engine.speak(["pau"], "slt")


def test_missing_flite_raises_backend_unavailable_naming_the_package(monkeypatch) -> None:
    monkeypatch.setattr(programs.shutil, "which", lambda name: None)
    with pytest.raises(BackendUnavailableError, match=r"flite is not installed.*apt-get install"):
        FliteEngine()
