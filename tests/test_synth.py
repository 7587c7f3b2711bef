"""The synthesized corpus: TIMIT layout and formats, truthful labels, determinism, splits, CLI."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from seqkit.cli.main import app
from seqkit.data.phones import PHONES_61
from seqkit.errors import OutputExistsError
from seqkit.synth.corpus import CorpusSummary, read_speakers, synthesize_corpus
from seqkit.synth.speakers import voice_text

TINY = {"speakers": 6, "sentences": 2}
VOWELS = {"iy", "ih", "eh", "ae", "aa", "ao", "ah", "uh", "uw", "ux", "er", "ey", "ay", "oy",
          "aw", "ow"}


def _utterances(root: Path) -> list[Path]:
    return sorted(root.glob("*/DR*/*/*.WAV"))


def _segments(path: Path) -> list[tuple[int, int, str]]:
    rows = [line.split(maxsplit=2) for line in path.read_text().splitlines()]
    return [(int(a), int(b), c) for a, b, c in rows]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CorpusSummary]:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    summary = synthesize_corpus(out, seed=7, jobs=2, clean=False, **TINY)
    return out, summary


@pytest.fixture(scope="module")
def clean_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_clean") / "corpus"
    synthesize_corpus(out, seed=7, jobs=2, clean=True, **TINY)
    return out


def test_layout_is_timit(corpus) -> None:
    root, summary = corpus
    wavs = _utterances(root)
    assert len(wavs) == 6 * 2
    assert sum(s.utterances for s in summary.splits.values()) == 12
    for wav in wavs:
        top, region, speaker, name = wav.relative_to(root).parts
        assert top in ("TRAIN", "TEST") and region in {f"DR{i}" for i in range(1, 9)}
        assert speaker[0] in "MF" and speaker[1:4].isalpha() and speaker[1:4].isupper()
        assert speaker[4].isdigit() and len(speaker) == 5
        assert name[:2] in ("SX", "SI") and name.endswith(".WAV")
        for ext in (".PHN", ".WRD", ".TXT"):
            assert wav.with_suffix(ext).is_file()
    names = [w.stem for w in wavs]
    assert any(n.startswith("SX") for n in names) and any(n.startswith("SI") for n in names)


def test_corpus_directory_gets_the_usual_permissions_not_a_private_temp_dir(corpus) -> None:
    root, _ = corpus
    umask = os.umask(0)
    os.umask(umask)
    assert root.stat().st_mode & 0o777 == 0o777 & ~umask


def test_wav_is_nist_sphere_16k_16bit_mono(corpus) -> None:
    root, _ = corpus
    for wav in _utterances(root)[:3]:
        header = wav.read_bytes()[:1024].decode("ascii", "replace")
        assert header.startswith("NIST_1A")
        assert "sample_rate -i 16000" in header and "sample_n_bytes -i 2" in header
        assert "channel_count -i 1" in header
        info = soundfile.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def test_phn_is_contiguous_covers_the_audio_and_uses_the_61_phones(corpus) -> None:
    root, _ = corpus
    for wav in _utterances(root):
        frames = soundfile.info(str(wav)).frames
        segments = _segments(wav.with_suffix(".PHN"))
        assert segments[0][0] == 0 and segments[-1][1] == frames
        assert segments[0][2] == "h#" and segments[-1][2] == "h#"
        assert all(a[1] == b[0] for a, b in zip(segments, segments[1:], strict=False))
        assert all(end > start for start, end, _ in segments)
        assert {label for _, _, label in segments} <= set(PHONES_61)
        assert "q" not in {label for _, _, label in segments}


def test_words_lie_inside_the_speech_and_match_the_text(corpus) -> None:
    root, _ = corpus
    for wav in _utterances(root):
        phones = _segments(wav.with_suffix(".PHN"))
        words = _segments(wav.with_suffix(".WRD"))
        start, end, text = _segments(wav.with_suffix(".TXT"))[0]
        assert start == 0 and end == phones[-1][1]
        assert words, wav
        assert words[0][0] >= phones[0][1] and words[-1][1] <= phones[-1][0]
        assert all(a[1] <= b[0] for a, b in zip(words, words[1:], strict=False))
        spoken = [w for _, _, w in words]
        expected = [w.strip(".?,").lower() for w in text.split()]
        assert spoken == expected


def test_splits_file_lists_disjoint_speakers_with_disjoint_voices(corpus) -> None:
    root, summary = corpus
    meta = json.loads((root / "splits.json").read_text())
    train, dev, test = (set(meta[s]) for s in ("train", "dev", "test"))
    assert train and dev and test
    assert not (train & dev or train & test or dev & test)
    on_disk = {p.name for p in root.glob("*/DR*/*")}
    assert on_disk == train | dev | test
    assert {p.name for p in root.glob("TRAIN/DR*/*")} == train
    variants = {s: {meta["speakers"][i]["variant"] for i in meta[s]} for s in ("train", "dev",
                                                                               "test")}
    assert not (variants["train"] & variants["test"])
    assert not (variants["dev"] & (variants["train"] | variants["test"]))
    assert meta["seed"] == 7 and "seqkit_version" in meta
    assert summary.splits["train"].speakers == len(train)
    assert summary.splits["test"].hours > 0


def test_speakers_have_their_own_voice_quality_recorded_in_the_splits_file(corpus) -> None:
    speakers = read_speakers(corpus[0])
    assert all(0.9 <= s.tract <= 1.1 and 0 <= s.klatt <= 6 for s in speakers)
    assert len({(s.tract, s.flutter, s.breath) for s in speakers}) == len(speakers)
    assert all(f"consonants {s.consonants}" in s.voice_lines for s in speakers)
    text = voice_text(speakers[0], "name x\nformant 1 100 90 80\n")
    assert f"formant 1 {round(100 * speakers[0].tract)} 90 80" in text


def test_silence_is_quiet_and_vowels_are_loud_in_the_clean_corpus(clean_corpus) -> None:
    """Labels agree with the audio: h#/pau/closures carry little energy, vowels a lot."""
    quiet, loud = [], []
    for wav in _utterances(clean_corpus):
        audio, _ = soundfile.read(str(wav), dtype="float64")
        for start, end, label in _segments(wav.with_suffix(".PHN")):
            # Skip 5 ms at each edge: resampling smears boundaries by a few samples.
            core = audio[start + 80:end - 80]
            if len(core) < 80:
                continue
            energy = float(np.mean(core**2))
            if label in ("h#", "pau", "pcl", "tcl", "kcl"):
                quiet.append(energy)
            elif label in VOWELS:
                loud.append(energy)
    assert len(quiet) > 20 and len(loud) > 20
    assert np.median(quiet) < 1e-6
    assert np.median(loud) > 1000 * max(np.median(quiet), 1e-9)
    assert np.percentile(loud, 10) > 100 * np.percentile(quiet, 90) + 1e-7


def test_realism_adds_noise_to_silences(corpus, clean_corpus) -> None:
    wav = _utterances(corpus[0])[0]
    audio, _ = soundfile.read(str(wav), dtype="float64")
    head = _segments(wav.with_suffix(".PHN"))[0]
    assert np.std(audio[head[0]:head[1]]) > 1e-4
    clean_audio, _ = soundfile.read(str(clean_corpus / wav.relative_to(corpus[0])),
                                    dtype="float64")
    assert not np.array_equal(audio, clean_audio)


def test_same_seed_gives_a_byte_identical_corpus_for_any_jobs(corpus, tmp_path: Path) -> None:
    root, _ = corpus
    again = tmp_path / "again"
    synthesize_corpus(again, seed=7, jobs=1, clean=False, **TINY)
    assert _digest(again) == _digest(root)


def test_different_seeds_give_different_corpora(corpus, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synthesize_corpus(other, seed=8, jobs=2, **TINY)
    assert _digest(other) != _digest(corpus[0])


def test_refuses_a_non_empty_output_without_force(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--force"):
        synthesize_corpus(out, speakers=3, sentences=1, seed=0)
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_force_replaces_and_no_temporary_directory_is_left(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "old.txt").write_text("old")
    summary = synthesize_corpus(out, speakers=3, sentences=1, seed=0, force=True)
    assert not (out / "old.txt").exists()
    assert sum(s.utterances for s in summary.splits.values()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_cli_synthesizes_and_prints_a_summary_table(tmp_path: Path) -> None:
    out = tmp_path / "cli_corpus"
    args = ["data", "synth", str(out), "--speakers", "3", "--sentences", "1", "--jobs", "2",
            "--voice-speakers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "train" in result.output and "hours" in result.output
    assert "voice engines: espeak, piper" in result.output  # every engine found is used
    engines = {s.engine for s in read_speakers(out)}
    assert {"espeak", "piper"} <= engines
    assert json.loads((out / "splits.json").read_text())["clean"] is True  # clean by default
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
    assert "not empty" in again.output
    noisy = tmp_path / "noisy"
    result = CliRunner().invoke(app, ["data", "synth", str(noisy), "--speakers", "3",
                                      "--sentences", "1", "--engines", "espeak", "--noisy"])
    assert result.exit_code == 0, result.output
    assert json.loads((noisy / "splits.json").read_text())["clean"] is False


def test_cli_rejects_too_few_speakers(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "x"), "--speakers", "2"])
    assert result.exit_code == 2
    assert "at least 3" in result.output
    assert not (tmp_path / "x").exists()


def test_cli_rejects_an_unknown_engine_naming_the_known_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "x"), "--engines", "sam"])
    assert result.exit_code == 2
    assert "unknown voice engine 'sam'" in result.output and "piper" in result.output
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def voiced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same plan with and without espeak-ng in train, piper's joe as two train speakers."""
    root = tmp_path_factory.mktemp("voiced")
    both, people = root / "both", root / "people"
    synthesize_corpus(both, speakers=3, sentences=2, seed=5, jobs=2,
                      engines=("espeak", "piper"), voice_speakers=2)
    synthesize_corpus(people, speakers=3, sentences=2, seed=5, jobs=1,
                      engines=("piper",), voice_speakers=2)
    return both, people


def test_voices_of_people_become_train_speakers_with_truthful_labels(voiced) -> None:
    both, _ = voiced
    speakers = read_speakers(both)
    piper = [s for s in speakers if s.engine == "piper"]
    assert len(piper) == 2 and all(s.split == "train" and s.variant == "joe" for s in piper)
    assert len({s.rate for s in piper}) == 2  # two speakers, not one voice twice
    assert all(s.engine == "espeak" for s in speakers if s.split != "train")
    meta = json.loads((both / "splits.json").read_text())
    # they read the espeak-ng training speakers' sentences: each is heard from both
    texts = {wav: wav.with_suffix(".TXT").read_text().split(maxsplit=2)[2].strip()
             for wav in both.glob("TRAIN/DR*/*/*.WAV")}
    voiced_ids = {s.id for s in piper}
    spoken = {t for w, t in texts.items() if w.parent.name in voiced_ids}
    assert spoken and spoken <= {t for w, t in texts.items() if w.parent.name not in voiced_ids}
    assert "joe" in meta["engines"]["piper"]
    for speaker in piper:
        wavs = sorted(both.glob(f"TRAIN/DR*/{speaker.id}/*.WAV"))
        assert len(wavs) == 2
        for wav in wavs:
            audio, rate = soundfile.read(wav, dtype="int16")
            segments = _segments(wav.with_suffix(".PHN"))
            assert rate == 16000 and segments[0][0] == 0 and segments[-1][1] == len(audio)
            assert all(a[1] == b[0] for a, b in zip(segments, segments[1:], strict=False))
            assert {label for *_, label in segments} <= set(PHONES_61)
            assert segments[0][2] == segments[-1][2] == "h#"
            vowels = [np.abs(audio[a:b].astype(float)).mean() for a, b, c in segments
                      if c in VOWELS]
            silence = np.abs(audio[: segments[0][1]].astype(float)).mean()  # h#, with noise
            assert vowels and np.median(vowels) > 3 * silence


def test_without_espeak_the_train_split_is_people_and_dev_test_stay_byte_identical(voiced) -> None:
    both, people = voiced
    train = {s.id: s.engine for s in read_speakers(people) if s.split == "train"}
    assert set(train.values()) == {"piper"}
    held_out = {k: v for k, v in _digest(both).items() if k.startswith("TEST/")}
    assert held_out and held_out == {k: v for k, v in _digest(people).items()
                                     if k.startswith("TEST/")}
    voice_files = {k: v for k, v in _digest(both).items()
                   if any(f"/{sid}/" in k for sid in train)}
    assert voice_files == {k: v for k, v in _digest(people).items()
                           if any(f"/{sid}/" in k for sid in train)}  # any jobs, same bytes


def test_a_sentence_a_voice_cannot_say_is_replaced_by_its_next_spare(tmp_path: Path) -> None:
    pytest.importorskip("seqkit.synth.festival")
    from seqkit.errors import BackendUnavailableError
    from seqkit.synth import corpus
    from seqkit.synth.engines import open_engine
    from seqkit.synth.espeak import Espeak
    from seqkit.synth.speakers import Speaker
    from seqkit.synth.voices import VoiceError

    try:
        engine = open_engine("festival")
    except BackendUnavailableError as err:
        pytest.skip(f"festival not installed: {err}")
    speaker = Speaker(id="MKED0", split="train", region="DR1", accent="en-us", variant="ked",
                      sex="M", rate=170, pitch=50, pitch_range=50, engine="festival")
    job = corpus._Job(speaker, 0, 0, "SV0000", "Hugh is here.", ".", 0, True,
                      ("A huge yak.", "The cat sat."))  # ked lacks the diphone hh-y
    corpus._speak_utterance(engine, Espeak(), job, tmp_path)
    assert (tmp_path / "SV0000.TXT").read_text().endswith("The cat sat.\n")
    with pytest.raises(VoiceError, match="hh-y"):
        corpus._speak_utterance(engine, Espeak(), corpus._Job(
            speaker, 0, 0, "SV0001", "Hugh is here.", ".", 0, True, ("A huge yak.",)), tmp_path)


def test_voices_of_people_say_dictionary_pronunciations_and_letter_to_sound_for_the_rest(
) -> None:
    from seqkit.synth.espeak import Espeak
    from seqkit.synth.pronounce import pronounce

    engine = Espeak()
    # CMUdict: "water" W AO1 T ER0 (the unstressed ER is TIMIT's axr), "a" AH0 (ax)
    assert pronounce(engine, "Water, a cat!") == ("w", "ao", "t", "axr", "ax", "k", "ae", "t")
    assert pronounce(engine, "don't") == ("d", "ow", "n", "t")
    made_up = pronounce(engine, "zyzzlequot")  # not in the dictionary: espeak-ng's rules
    assert made_up[:2] == ("z", "ih") and set(made_up) <= set(PHONES_61)
    assert pronounce(engine, "  ...  ") == ()
