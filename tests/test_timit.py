"""TIMIT-layout reader, manifests and `seqkit data prepare` on small hand-made corpora."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from seqkit.audio import (
    SAMPLE_RATE,
    FeatureConfig,
    compute_features,
    compute_stats,
    load_audio,
    read_stats,
)
from seqkit.corpora.timit.layout import (
    CLAMP_SAMPLES,
    find_utterances,
    read_utterance,
    split_utterances,
)
from seqkit.corpora.timit.prepare import prepare_corpus
from seqkit.corpora.timit.speakers import CORE_TEST_SPEAKERS, DEV_SPEAKERS
from seqkit.data.manifest import Utterance, read_manifest, write_manifest
from seqkit.data.splits import SPLITS, SPLITS_FILE, split_manifest
from seqkit.errors import AudioError, CorpusError, OutputExistsError

SR = SAMPLE_RATE
N = 4800  # 0.3 s per utterance
PHN = ((0, 800, "h#"), (800, 2000, "sh"), (2000, 3000, "iy"), (3000, 4000, "q"), (4000, N, "h#"))
WRD = ((800, 4000, "she"),)

# (part, dialect, speaker) -> expected split (None: in the corpus but in no split)
SPEAKERS = {
    ("TRAIN", "DR1", "FCJF0"): "train",
    ("TRAIN", "DR2", "MKAB0"): "train",
    ("TEST", "DR1", "FAKS0"): "dev",  # one of the 50 dev speakers
    ("TEST", "DR1", "MDAB0"): "test",  # one of the 24 core test speakers
    ("TEST", "DR3", "MZZZ9"): None,  # complete-test-only speaker: in no split
}
SENTENCES = ("SA1", "SA2", "SX13", "SI943")
EXTENSIONS = ("wav", "phn", "wrd", "txt")


def _wave(seed: int, n: int = N) -> np.ndarray:
    """A voiced-sounding test signal: a 150 Hz harmonic stack plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8))
    return (0.2 * x / 2 + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _name(name: str, upper: bool) -> str:
    return name.upper() if upper else name.lower()


def _write_segments(path: Path, rows) -> None:
    path.write_text("".join(f"{s} {e} {label}\n" for s, e, label in rows))


def make_corpus(root: Path, *, upper: bool = True, speakers=SPEAKERS) -> Path:
    """Write a tiny TIMIT-layout corpus (SPHERE audio, .PHN/.WRD/.TXT) under ``root``."""
    for i, (part, dialect, speaker) in enumerate(speakers):
        spk_dir = root / _name(part, upper) / _name(dialect, upper) / _name(speaker, upper)
        spk_dir.mkdir(parents=True)
        for j, sentence in enumerate(SENTENCES):
            stem = spk_dir / _name(sentence, upper)
            wav, phn, wrd, txt = (stem.with_suffix("." + _name(e, upper)) for e in EXTENSIONS)
            soundfile.write(wav, _wave(10 * i + j), SR, format="NIST", subtype="PCM_16")
            _write_segments(phn, PHN)
            _write_segments(wrd, WRD)
            txt.write_text(f"0 {N} She.\n")
    return root


def _files(corpus: Path, speaker: str, sentence: str, ext: str) -> Path:
    matches = [
        p for p in corpus.rglob("*")
        if p.name.lower() == f"{sentence}.{ext}".lower() and p.parent.name.upper() == speaker
    ]
    assert len(matches) == 1, matches
    return matches[0]


def test_fixture_speakers_are_in_the_standard_lists():
    assert "FAKS0" in DEV_SPEAKERS and "MDAB0" in CORE_TEST_SPEAKERS
    assert "MZZZ9" not in DEV_SPEAKERS | CORE_TEST_SPEAKERS


@pytest.mark.parametrize("upper", [True, False], ids=["upper_case", "lower_case"])
def test_prepare_writes_standard_timit_splits_without_sa(tmp_path, upper):
    corpus = make_corpus(tmp_path / "timit", upper=upper)
    calls: list[tuple[str, int, int]] = []

    def progress(description: str, done: int, total: int) -> None:
        calls.append((description, done, total))

    summary = prepare_corpus(corpus, tmp_path / "prepared", progress=progress)
    out = tmp_path / "prepared"
    assert sorted(p.name for p in out.iterdir()) == [
        "checksums.json", "dev.jsonl", "stats.json", "test.jsonl", "train.jsonl"
    ]
    expected_splits = {"train": {"FCJF0", "MKAB0"}, "dev": {"FAKS0"}, "test": {"MDAB0"}}
    for split, speakers in expected_splits.items():
        utts = read_manifest(split_manifest(out, split))
        assert {u.speaker for u in utts} == speakers
        # SA1/SA2 excluded: SX and SI remain, in a stable order
        assert sorted(u.id for u in utts) == sorted(
            f"{s}_{sent}" for s in speakers for sent in ("SX13", "SI943")
        )
        for u in utts:
            assert u.samples == N and u.sample_rate == SR
            assert Path(u.audio).is_absolute() and Path(u.audio).exists()
            assert u.phones == PHN and u.words == WRD  # labels lower case, sample boundaries
            assert u.text == "She."
            assert u.dialect in {"DR1", "DR2"}
            assert load_audio(u.audio).shape == (u.samples,)
    by_name = {s.name: s for s in summary.splits}
    assert by_name["train"].utterances == 4 and by_name["train"].speakers == 2
    assert by_name["dev"].phones == 2 * len(PHN)
    assert math.isclose(by_name["test"].hours, 2 * N / SR / 3600)
    assert ("train: reading + features", 4, 4) in calls and ("test: reading", 2, 2) in calls


def test_prepare_stats_equal_stats_of_train_features(tmp_path):
    corpus = make_corpus(tmp_path / "timit")
    config = FeatureConfig(kind="fbank80")
    prepare_corpus(corpus, tmp_path / "out", features=config)
    saved_config, stats = read_stats(tmp_path / "out" / "stats.json")
    assert saved_config == config
    train = read_manifest(split_manifest(tmp_path / "out", "train"))
    feats = [compute_features(load_audio(u.audio), config) for u in train]
    expected = compute_stats(feats)
    all_frames = torch.cat(feats).double()
    assert stats.frames == expected.frames == all_frames.shape[0]
    torch.testing.assert_close(stats.mean.double(), all_frames.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        stats.std.double(), all_frames.std(0, unbiased=False), rtol=1e-4, atol=1e-4
    )


def test_both_name_cases_give_identical_manifests(tmp_path):
    for upper in (True, False):
        prepare_corpus(make_corpus(tmp_path / f"c{upper}", upper=upper), tmp_path / f"o{upper}")
    for split in SPLITS:
        a = read_manifest(split_manifest(tmp_path / "oTrue", split))
        b = read_manifest(split_manifest(tmp_path / "oFalse", split))
        strip = [(u.id, u.speaker, u.dialect, u.phones, u.words, u.samples) for u in a]
        assert strip == [(u.id, u.speaker, u.dialect, u.phones, u.words, u.samples) for u in b]


def test_splits_json_decides_the_splits(tmp_path):
    speakers = {
        ("TRAIN", "DR1", "MSYN0"): "train",
        ("TRAIN", "DR4", "FSYN1"): "train",
        ("TEST", "DR2", "MSYN2"): "dev",
        ("TEST", "DR5", "FSYN3"): "test",
    }
    corpus = make_corpus(tmp_path / "synth", speakers=speakers)
    (corpus / SPLITS_FILE).write_text(json.dumps({
        "train": ["MSYN0", "fsyn1"], "dev": ["MSYN2"], "test": ["FSYN3"], "seed": 0,
    }))
    summary = prepare_corpus(corpus, tmp_path / "out")
    assert [(s.name, s.speakers, s.utterances) for s in summary.splits] == [
        ("train", 2, 4), ("dev", 1, 2), ("test", 1, 2)
    ]
    assert {u.speaker for u in read_manifest(split_manifest(tmp_path / "out", "train"))} == {
        "MSYN0", "FSYN1"
    }


def test_split_file_naming_an_absent_speaker_is_rejected(tmp_path):
    corpus = make_corpus(tmp_path / "synth")
    (corpus / SPLITS_FILE).write_text(json.dumps(
        {"train": ["FCJF0"], "dev": ["NOPE0"], "test": ["MDAB0"]}
    ))
    with pytest.raises(CorpusError, match=r"splits.json lists dev speaker NOPE0"):
        prepare_corpus(corpus, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_split_file_with_a_speaker_in_two_splits_is_rejected(tmp_path):
    corpus = make_corpus(tmp_path / "synth")
    (corpus / SPLITS_FILE).write_text(json.dumps(
        {"train": ["FCJF0"], "dev": ["FCJF0"], "test": ["MDAB0"]}
    ))
    with pytest.raises(CorpusError, match="in both train and dev"):
        split_utterances(corpus, find_utterances(corpus))


def test_directory_without_timit_speakers_or_split_file_is_not_a_corpus(tmp_path):
    speakers = {("TRAIN", "DR1", "MAAA0"): "train", ("TEST", "DR1", "MBBB0"): None}
    corpus = make_corpus(tmp_path / "other", speakers=speakers)
    with pytest.raises(CorpusError, match=r"is not a TIMIT corpus: .*seqkit data synth"):
        prepare_corpus(corpus, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="is not a TIMIT corpus"):
        prepare_corpus(tmp_path / "empty", tmp_path / "out")
    make_corpus(tmp_path / "download" / "TIMIT")
    with pytest.raises(CorpusError, match=r"did you mean .*download/TIMIT\?"):
        prepare_corpus(tmp_path / "download", tmp_path / "out")
    with pytest.raises(CorpusError, match="does not exist"):
        prepare_corpus(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _break_missing_phn(corpus: Path) -> Path:
    path = _files(corpus, "FCJF0", "SX13", "PHN")
    path.unlink()
    return path.with_suffix(".PHN")


def _break_label(corpus: Path) -> Path:
    path = _files(corpus, "FAKS0", "SI943", "PHN")
    _write_segments(path, [*PHN[:-1], (4000, N, "zz")])
    return path


def _break_past_end(corpus: Path) -> Path:
    path = _files(corpus, "MDAB0", "SX13", "PHN")
    _write_segments(path, [*PHN[:-1], (4000, N + CLAMP_SAMPLES + 1, "h#")])  # clamped up to it
    return path


def _break_non_monotone(corpus: Path) -> Path:
    path = _files(corpus, "MKAB0", "SI943", "PHN")
    _write_segments(path, [PHN[0], (2000, 2500, "sh"), (1500, 3000, "iy"), *PHN[3:]])
    return path


def _break_malformed_line(corpus: Path) -> Path:
    path = _files(corpus, "MKAB0", "SX13", "PHN")
    path.write_text("0 800 h#\n800 sh\n")
    return path


def _break_empty_audio(corpus: Path) -> Path:
    path = _files(corpus, "FCJF0", "SI943", "WAV")
    soundfile.write(path, np.zeros(0, np.float32), SR, format="NIST", subtype="PCM_16")
    return path


def _break_unreadable_audio(corpus: Path) -> Path:
    path = _files(corpus, "FAKS0", "SX13", "WAV")
    path.write_bytes(b"this is not audio at all" * 10)
    return path


def _break_missing_audio(corpus: Path) -> Path:
    path = _files(corpus, "MDAB0", "SI943", "WAV")
    path.unlink()
    return path


BAD_INPUTS = {
    "missing_phn": (_break_missing_phn, CorpusError, "missing phone transcription"),
    "label_outside_61": (_break_label, CorpusError, "'zz' is not one of TIMIT's 61 phones"),
    "boundary_past_end": (_break_past_end, CorpusError, "past the end of the audio"),
    "non_monotone": (_break_non_monotone, CorpusError, "not monotone"),
    "malformed_line": (_break_malformed_line, CorpusError, r":2: expected '<start sample>"),
    "empty_audio": (_break_empty_audio, AudioError, "has no samples"),
    "unreadable_audio": (_break_unreadable_audio, AudioError, "cannot read audio file"),
    "missing_audio": (_break_missing_audio, AudioError, "missing audio file"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_utterance_stops_prepare_with_named_file_and_leaves_no_output(tmp_path, case):
    breaker, error, message = BAD_INPUTS[case]
    corpus = make_corpus(tmp_path / "timit", upper=case != "label_outside_61")
    bad_path = breaker(corpus)
    with pytest.raises(error, match=message) as info:
        prepare_corpus(corpus, tmp_path / "out")
    assert bad_path.stem.upper() in str(info.value).upper()
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timit"]  # no out, no temp dir


def test_skip_bad_leaves_bad_utterances_out_and_reports_why(tmp_path):
    corpus = make_corpus(tmp_path / "timit")
    broken = {name: BAD_INPUTS[name][0](corpus) for name in ("missing_phn", "label_outside_61",
                                                              "empty_audio", "boundary_past_end")}
    summary = prepare_corpus(corpus, tmp_path / "out", skip_bad=True)
    report = json.loads((tmp_path / "out" / "skipped.json").read_text())
    assert sorted(r["id"] for r in report) == ["FAKS0_SI943", "FCJF0_SI943", "FCJF0_SX13",
                                               "MDAB0_SX13"]
    assert [s.to_dict() for s in summary.skipped] == report
    reasons = {r["id"]: r["reason"] for r in report}
    assert "61 phones" in reasons["FAKS0_SI943"] and "no samples" in reasons["FCJF0_SI943"]
    assert {r["split"] for r in report} == set(SPLITS)
    assert [s.utterances for s in summary.splits] == [2, 1, 1]
    assert len(read_manifest(split_manifest(tmp_path / "out", "train"))) == 2
    assert broken  # every breaker returned the file it broke


def test_skip_bad_with_every_train_utterance_bad_fails_cleanly(tmp_path):
    speakers = {k: v for k, v in SPEAKERS.items() if k[2] != "MKAB0"}
    corpus = make_corpus(tmp_path / "timit", speakers=speakers)
    for sentence in ("SX13", "SI943"):
        _files(corpus, "FCJF0", sentence, "PHN").unlink()
    with pytest.raises(CorpusError, match="no usable train utterance"):
        prepare_corpus(corpus, tmp_path / "out", skip_bad=True)
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_unless_forced(tmp_path):
    corpus = make_corpus(tmp_path / "timit")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--force"):
        prepare_corpus(corpus, out)
    assert (out / "keep.txt").read_text() == "mine"
    prepare_corpus(corpus, out, force=True)
    assert not (out / "keep.txt").exists() and split_manifest(out, "train").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "timit"]


def test_failed_forced_prepare_keeps_the_previous_output(tmp_path):
    corpus = make_corpus(tmp_path / "timit")
    out = tmp_path / "out"
    prepare_corpus(corpus, out)
    before = split_manifest(out, "train").read_text()
    _break_label(corpus)
    with pytest.raises(CorpusError):
        prepare_corpus(corpus, out, force=True)
    assert split_manifest(out, "train").read_text() == before


def test_read_utterance_returns_the_loaded_audio(tmp_path):
    corpus = make_corpus(tmp_path / "timit", upper=False)
    files = [f for f in find_utterances(corpus) if f.id == "FCJF0_SX13"][0]
    utterance, wave, clamped = read_utterance(files)
    assert wave.shape == (utterance.samples,) and wave.dtype == torch.float32
    assert clamped == 0
    assert utterance.phone_labels == ["h#", "sh", "iy", "q", "h#"]


def test_manifest_round_trips_and_reports_bad_lines(tmp_path):
    utt = Utterance(
        id="A_SX1", audio="/x/a.wav", samples=10, sample_rate=SR, speaker="A", dialect="DR1",
        phones=((0, 5, "h#"), (5, 10, "aa")), words=((0, 10, "ah"),), text="Ah.",
    )
    path = tmp_path / "m.jsonl"
    assert write_manifest(path, [utt, utt]) == 2
    assert read_manifest(path) == [utt, utt]
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(CorpusError, match=r"m.jsonl:2: not valid JSON"):
        read_manifest(path)
    path.write_text(lines[0] + "\n" + json.dumps({"id": "x"}) + "\n")
    with pytest.raises(CorpusError, match=r"m.jsonl:2: missing field"):
        read_manifest(path)
    path.write_text(lines[0].replace('"samples": 10', '"samples": "ten"') + "\n")
    with pytest.raises(CorpusError, match=r"m.jsonl:1: malformed utterance"):
        read_manifest(path)
    with pytest.raises(CorpusError, match="not found"):
        read_manifest(tmp_path / "nope.jsonl")


# --- `seqkit data prepare` as a user types it -----------------------------------------------


def test_cli_prepare_prints_a_summary_table(tmp_path):
    from typer.testing import CliRunner

    from seqkit.cli.main import app

    corpus = make_corpus(tmp_path / "timit", upper=False)
    result = CliRunner().invoke(app, ["data", "prepare", str(corpus), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for word in ("split", "speakers", "utterances", "hours", "phones", "train", "dev", "test"):
        assert word in result.stdout
    assert split_manifest(tmp_path / "out", "train").exists()


def test_cli_prepare_json_summary_and_skip_bad(tmp_path):
    from typer.testing import CliRunner

    from seqkit.cli.main import app

    corpus = make_corpus(tmp_path / "timit")
    _break_label(corpus)
    args = ["data", "prepare", str(corpus), str(tmp_path / "out"), "--format", "json",
            "--skip-bad", "--features", "fbank80"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [s["utterances"] for s in summary["splits"]] == [4, 1, 2]
    assert summary["features"]["kind"] == "fbank80" and summary["features"]["n_mels"] == 80
    assert [s["id"] for s in summary["skipped"]] == ["FAKS0_SI943"]


def test_cli_prepare_errors_exit_2_with_one_line_and_no_output(tmp_path):
    from typer.testing import CliRunner

    from seqkit.cli.main import app

    runner = CliRunner()

    def stderr(result) -> str:  # rich wraps long lines at the test console's width
        return " ".join(result.stderr.split())

    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["data", "prepare", str(tmp_path / "empty"), str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "is not a TIMIT corpus" in stderr(result) and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()

    corpus = make_corpus(tmp_path / "timit")
    _break_missing_phn(corpus)
    result = runner.invoke(app, ["data", "prepare", str(corpus), str(tmp_path / "o")])
    assert result.exit_code == 2 and "missing phone transcription" in stderr(result)
    assert "--skip-bad" in stderr(result) and not (tmp_path / "o").exists()

    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("x")
    result = runner.invoke(app, ["data", "prepare", str(corpus), str(tmp_path / "o"),
                                 "--skip-bad"])
    assert result.exit_code == 2 and "--force" in stderr(result)

    result = runner.invoke(app, ["data", "prepare", str(corpus), str(tmp_path / "p"),
                                 "--features", "mfcc"])
    assert result.exit_code == 2 and not (tmp_path / "p").exists()
