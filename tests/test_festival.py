"""festival engine: every voice says TIMIT phones with times that match its audio (real
synthesis); the diphone pairs each voice lacks are refused before festival swaps them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from voice_checks import CLOSURES, SENTENCE, assert_says, assert_timings_match_audio, said_labels

from seqkit.errors import BackendUnavailableError, ConfigError
from seqkit.synth import festival, programs
from seqkit.synth.festival import FESTIVAL_VOICES, FestivalEngine, phone_map
from seqkit.synth.voices import VoiceError

RATES = {"kal": 16000, "ked": 16000, "slt": 32000}


def _installed(voice: str) -> bool:
    return (festival.VOICE_DIR / FESTIVAL_VOICES[voice].directory).is_dir()


@pytest.fixture(scope="module")
def engine() -> Iterator[FestivalEngine]:
    if shutil.which("festival") is None:
        pytest.skip("festival is not installed (apt-get install festival)")
    with FestivalEngine() as engine:
        yield engine


@pytest.fixture(params=list(FESTIVAL_VOICES))
def voice(request: pytest.FixtureRequest, engine: FestivalEngine) -> str:
    if not _installed(request.param):
        package = FESTIVAL_VOICES[request.param].package
        pytest.skip(f"festival voice {request.param} is not installed (apt-get install {package})")
    return request.param


def test_every_voice_says_the_mapped_phones_with_times_that_match_the_audio(
    engine: FestivalEngine, voice: str
) -> None:
    spoken = engine.speak(SENTENCE, voice)
    assert spoken.sample_rate == RATES[voice]
    assert_says(spoken, said_labels(phone_map(voice), SENTENCE), f"festival {voice}")
    assert_timings_match_audio(spoken)
    durations = [end - start for start, end, label in spoken.phones if label != "h#"]
    assert len(set(durations)) > len(durations) // 2  # timed by the voice, not a fixed 100 ms


def test_same_input_gives_the_same_audio_whatever_the_process_said_before(
    engine: FestivalEngine, voice: str
) -> None:
    first = engine.speak(SENTENCE, voice)
    engine.speak(["hh", "ae", "d", "pau", "b", "ih", "g"], voice, rate=1.3,
                 f0_mean=150 if FESTIVAL_VOICES[voice].f0 else None)
    for other in [v for v in FESTIVAL_VOICES if v != voice and _installed(v)][:1]:
        engine.speak(["s", "iy"], other)
    again = engine.speak(SENTENCE, voice)
    with FestivalEngine() as fresh:
        new = fresh.speak(SENTENCE, voice)
    for other in (again, new):
        assert np.array_equal(first.audio, other.audio) and first.phones == other.phones


def test_faster_rate_gives_shorter_audio(engine: FestivalEngine, voice: str) -> None:
    normal = len(engine.speak(SENTENCE, voice).audio)
    fast = len(engine.speak(SENTENCE, voice, rate=1.5).audio)
    assert fast < 0.8 * normal


def test_phone_without_mapping_raises_voice_error_naming_phone_and_voice(
    engine: FestivalEngine, voice: str
) -> None:
    with pytest.raises(VoiceError, match=rf"festival {voice} cannot say 'q'"):
        engine.speak(["s", "q", "aa"], voice)


def test_voices_rename_what_their_diphone_rules_rename(engine: FestivalEngine, voice: str) -> None:
    labels = [x for _, _, x in engine.speak(["b", "ah", "t", "er"], voice).phones]
    expected = {"kal": ["b", "aa", "t", "er"], "ked": ["b", "ax", "t", "er"],
                "slt": ["b", "ah", "t", "er"]}
    assert [x for x in labels[1:-1] if x not in CLOSURES] == expected[voice]


@pytest.mark.parametrize(("voice_name", "phones", "said"), [
    ("kal", ["hh", "er"], ["hh", "ax", "r"]), ("kal", ["w", "axr", "k"], ["w", "ax", "r", "k"]),
    ("ked", ["dh", "ix", "ao", "dh", "er"], ["dh", "iy", "ao", "dh", "er"]),
])
def test_diphone_voices_say_a_repairable_missing_pair_another_way_and_label_it_so(
    engine: FestivalEngine, voice_name: str, phones: list[str], said: list[str]
) -> None:
    if not _installed(voice_name):
        pytest.skip(f"festival voice {voice_name} is not installed")
    spoken = engine.speak(phones, voice_name)
    labels = [label for _, _, label in spoken.phones if label not in CLOSURES]
    assert labels == ["h#", *said, "h#"]


@pytest.mark.parametrize(("voice_name", "phones", "pair"), [
    ("kal", ["aa", "hh"], "hh-pau"), ("kal", ["s", "ng", "aa"], "s-ng"),
    ("ked", ["eh"], "eh-pau"), ("ked", ["hh", "ax", "t"], "hh-ax"),
])
def test_diphone_voices_refuse_a_pair_they_lack_before_synthesis(
    engine: FestivalEngine, voice_name: str, phones: list[str], pair: str
) -> None:
    if not _installed(voice_name):
        pytest.skip(f"festival voice {voice_name} is not installed")
    with pytest.raises(VoiceError, match=f"festival {voice_name} lacks the diphone {pair}"):
        engine.speak(phones, voice_name)


def test_pairs_the_index_has_are_said_without_a_default_diphone(engine: FestivalEngine) -> None:
    """festival reports every default diphone it uses: none for pairs the map lets through."""
    for name in ("kal", "ked"):
        if not _installed(name):
            continue
        lacking = phone_map(name).missing_pairs
        phones = sorted(phone_map(name).phones - {"pau"})
        allowed = [p for p in phones if (p, p) not in lacking]
        engine.speak(allowed, name)  # raises VoiceError on a default diphone


def test_kal_and_ked_follow_f0_mean_and_slt_refuses_it(engine: FestivalEngine) -> None:
    def vowel_pitch(voice: str, f0: float) -> float:
        spoken = engine.speak(SENTENCE, voice, f0_mean=f0)
        lags = []
        for start, end, label in spoken.phones:
            if label in ("iy", "ow", "eh", "ao") and end - start >= 800:
                x = spoken.audio[start:end].astype(np.float64)
                correlation = np.correlate(x, x, "full")[len(x) - 1:]
                lags.append(40 + np.argmax(correlation[40:266]))  # 60-400 Hz at 16 kHz
        return 16000 / float(np.median(lags))

    for name in ("kal", "ked"):
        if _installed(name):
            assert vowel_pitch(name, 180) > 1.4 * vowel_pitch(name, 100)
    with pytest.raises(ConfigError, match="festival slt does not take f0_mean"):
        engine.speak(SENTENCE, "slt", f0_mean=150)


def test_unknown_voice_is_refused(engine: FestivalEngine) -> None:
    with pytest.raises(VoiceError, match="no voice 'kal16'"):
        engine.speak(SENTENCE, "kal16")


def test_missing_festival_raises_backend_unavailable_naming_the_package(monkeypatch) -> None:
    monkeypatch.setattr(programs.shutil, "which", lambda name: None)
    with pytest.raises(BackendUnavailableError, match=r"festival is not installed.*apt-get"):
        FestivalEngine()


def test_missing_voice_package_raises_backend_unavailable_naming_it(
    monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(festival, "VOICE_DIR", tmp_path)
    festival.phone_map.cache_clear()
    try:
        with pytest.raises(BackendUnavailableError, match="apt-get install festvox-kdlpc16k"):
            phone_map("ked")
    finally:
        festival.phone_map.cache_clear()


@pytest.mark.parametrize(("phones", "syllables"), [
    ("sh iy hh ae d", [(("sh", "iy"), 1), (("hh", "ae", "d"), 1)]),  # festival: sh iy hh . ae d
    ("dh ax s t r iy t", [(("dh", "ax"), 0), (("s", "t", "r", "iy", "t"), 1)]),
    ("hh y uw m ax n", [(("hh", "y", "uw"), 1), (("m", "ax", "n"), 0)]),  # kal's hh_-_y cluster
    ("s ih ng ih ng", [(("s", "ih", "ng"), 1), (("ih", "ng"), 1)]),  # ng never starts one
    ("sh", [(("sh",), 0)]),
])
def test_phrases_are_syllabified_by_maximal_onset_with_reduced_vowels_unstressed(
    phones: str, syllables: list[tuple[tuple[str, ...], int]]
) -> None:
    assert festival.syllabify([(p, p) for p in phones.split()]) == syllables
