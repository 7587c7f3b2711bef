"""`seqkit data prepare` on the field's layouts (#29): lhotse's recipes (CMU ARCTIC, LJSpeech,
L2-ARCTIC, TIMIT), lhotse manifests and CutSets, Kaldi data dirs with and without segments; the
phone sources, the splits, the audio, and one line + exit 2 + no OUT for each bad input.

Every corpus is laid out at test time with audio espeak-ng speaks (tests/corpus_layouts.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile
from corpus_layouts import (
    SENTENCES,
    textgrid,
    write_cmu_arctic,
    write_kaldi,
    write_l2_arctic,
    write_ljspeech,
)
from typer.testing import CliRunner

from seqkit.bench import prepare as prepare_bench
from seqkit.cli.main import app
from seqkit.corpora import source_prepare
from seqkit.corpora.phone_alignment import timit_segments, timit_symbol
from seqkit.corpora.sources import prepare_any
from seqkit.corpora.textgrid import read_tiers
from seqkit.corpora.timit.prepare import prepare_corpus
from seqkit.data.checksums import verify_prepared
from seqkit.data.manifest import read_manifest
from seqkit.data.splits import SPLITS, split_manifest, split_speakers
from seqkit.errors import CorpusError
from seqkit.synth.corpus import synthesize_corpus

runner = CliRunner()


def _manifests(prepared: Path) -> dict[str, list]:
    return {name: read_manifest(split_manifest(prepared, name)) for name in SPLITS}


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> Path:
    """CMU ARCTIC (3 speakers), LJSpeech (22.05 kHz), L2-ARCTIC (44.1 kHz, one annotated
    utterance), and Kaldi data dirs with and without segments (8 kHz with)."""
    root = tmp_path_factory.mktemp("layouts")
    write_cmu_arctic(root / "arctic", {"aew": 2, "slt": 2, "bdl": 2})
    write_ljspeech(root / "lj", 3)
    write_l2_arctic(root / "l2", ("ABA", "BWC", "ASI"), {
        "ABA": ["sil", "AO1", "TH,T,s", "ER0", "AH,sil,d", "sil,IY,a", "V``", "err", ""]})
    write_kaldi(root / "kaldi_plain", segments=False)
    write_kaldi(root / "kaldi_segments", segments=True, rate=8000)
    return root


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory) -> Path:
    """A small synthesized corpus in TIMIT's layout, with its splits.json."""
    root = tmp_path_factory.mktemp("synth_S5x3")
    synthesize_corpus(root / "corpus", speakers=5, sentences=3, seed=11, engines=("espeak",))
    return root / "corpus"


def test_cmu_arctic_through_lhotse_gets_a_seeded_speaker_disjoint_split(layouts, tmp_path):
    result = runner.invoke(app, ["data", "prepare", str(layouts / "arctic"), str(tmp_path / "p"),
                                 "--corpus", "cmu_arctic", "--seed", "3", "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    speakers = summary["split_speakers"]
    assert speakers == {k: list(v) for k, v in split_speakers(["aew", "slt", "bdl"], 3).items()}
    assert sorted(s for split in speakers.values() for s in split) == ["aew", "bdl", "slt"]
    assert summary["phones_from"] == {"words (CMUdict + espeak-ng)": 6}
    manifests = _manifests(tmp_path / "p")
    for split in SPLITS:  # each split is exactly its speakers' utterances
        assert {u.speaker for u in manifests[split]} == set(speakers[split])
        assert len(manifests[split]) == 2
    utt = manifests["train"][0]
    assert utt.sample_rate == 16000 and Path(utt.audio).is_file()  # 16 kHz: used in place
    assert "audio" not in {p.name for p in (tmp_path / "p").iterdir()}
    assert utt.phone_labels and all(p in ("aa", "ah", "t", "dh", "er") or len(p) <= 2
                                    for p in utt.phone_labels)
    written = json.loads((tmp_path / "p" / "splits.json").read_text())
    assert {k: written[k] for k in SPLITS} == speakers and "seed 3" in written["rule"]
    verify_prepared(tmp_path / "p", ["train.jsonl", "splits.json", "stats.json"])


def test_the_seeded_split_depends_on_the_seed_and_on_nothing_else() -> None:
    speakers = [f"s{i:02d}" for i in range(30)]
    first = split_speakers(speakers, 0)
    assert split_speakers(list(reversed(speakers)) + speakers[:5], 0) == first
    assert len(first["test"]) == len(first["dev"]) == 3 and len(first["train"]) == 24
    assert any(split_speakers(speakers, seed) != first for seed in range(1, 4))
    with pytest.raises(CorpusError, match="--all-to train"):
        split_speakers(["a", "b"], 0)


def test_ljspeech_at_22khz_is_resampled_into_out_and_is_one_speaker(layouts, tmp_path) -> None:
    summary = prepare_any(layouts / "lj", tmp_path / "p", corpus="ljspeech", all_to="train")
    manifests = _manifests(tmp_path / "p")
    assert [len(manifests[s]) for s in SPLITS] == [3, 0, 0]
    assert summary.audio_written == 3 and "one speaker" in summary.note
    for utt in manifests["train"]:
        info = soundfile.info(utt.audio)
        assert Path(utt.audio).parent == (tmp_path / "p" / "audio").resolve()
        assert info.samplerate == utt.sample_rate == 16000 and info.frames == utt.samples
        original = soundfile.info(layouts / "lj" / "wavs" / f"{utt.id}.wav")
        assert abs(utt.samples - original.frames * 16000 / 22050) <= 2
    # One speaker cannot be split speaker-disjoint: one line naming --all-to, no OUT.
    result = runner.invoke(app, ["data", "prepare", str(layouts / "lj"), str(tmp_path / "q"),
                                 "--corpus", "ljspeech"])
    assert "--all-to" in _one_error_line(result) and not (tmp_path / "q").exists()


def test_l2_arctic_annotated_utterances_take_the_perceived_phones(layouts, tmp_path) -> None:
    summary = prepare_any(layouts / "l2", tmp_path / "p", corpus="l2_arctic")
    assert summary.phone_sources == {"L2-ARCTIC annotation": 1,
                                     "words (CMUdict + espeak-ng)": 5}
    utts = {u.id: u for split in _manifests(tmp_path / "p").values() for u in split}
    annotated = utts["aba-arctic_a0001"]
    # sil AO1 TH,T,s ER0 AH,sil,d(deleted) sil,IY,a V`` err(unlabelled) ""
    assert annotated.phone_labels == ["h#", "aa", "t", "er", "iy", "v", "h#"]
    assert annotated.phones[0][0] == 0 and annotated.phones[-1][1] == annotated.samples
    assert all(a[1] <= b[0] for a, b in zip(annotated.phones, annotated.phones[1:], strict=False))
    assert utts["aba-arctic_a0002"].phones[0][:2] == (0, 0)  # from words: no times
    assert summary.audio_written == 6  # 44.1 kHz recordings


@pytest.mark.parametrize("layout", ["kaldi_plain", "kaldi_segments"])
def test_kaldi_data_dirs_are_found_without_corpus(layouts, tmp_path, layout) -> None:
    result = runner.invoke(app, ["data", "prepare", str(layouts / layout), str(tmp_path / "p"),
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["source"] == "Kaldi data dir"
    utts = {u.id: u for split in _manifests(tmp_path / "p").values() for u in split}
    assert sorted(utts) == [f"spk{s}-u{n}" for s in (1, 2, 3) for n in (0, 1)]
    segments = (layouts / layout / "segments")
    if segments.exists():  # cut out of one 8 kHz recording per speaker, resampled
        assert summary["audio_written"] == 6
        for line in segments.read_text().splitlines():
            utt, _, start, end = line.split()
            assert abs(utts[utt].samples - (float(end) - float(start)) * 16000) <= 2
            assert soundfile.info(utts[utt].audio).frames == utts[utt].samples
    else:
        assert summary["audio_written"] == 0
        assert all(Path(u.audio).parent == layouts / layout / "audio" for u in utts.values())
    assert utts["spk1-u0"].text == SENTENCES[0].upper()


def test_parallel_prepare_writes_what_one_process_writes(layouts, tmp_path, monkeypatch):
    monkeypatch.setattr(source_prepare, "_CHUNK", 2)  # 6 utterances: 3 worker tasks per split
    serial = prepare_any(layouts / "kaldi_segments", tmp_path / "one", jobs=1, all_to="train")
    parallel = prepare_any(layouts / "kaldi_segments", tmp_path / "two", jobs=2, all_to="train")
    one, two = (read_manifest(tmp_path / name / "train.jsonl") for name in ("one", "two"))
    assert [(u.id, u.samples, u.phones) for u in one] == [(u.id, u.samples, u.phones) for u in two]
    assert serial.stats_frames == parallel.stats_frames
    assert (tmp_path / "one" / "stats.json").read_text() == (
        tmp_path / "two" / "stats.json").read_text()


def test_a_kaldi_folder_of_split_dirs_keeps_its_splits(layouts, tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train").symlink_to(layouts / "kaldi_plain")
    (data / "test_clean").symlink_to(layouts / "kaldi_segments")
    with pytest.raises(CorpusError, match="used twice"):  # the same ids in both
        prepare_any(data, tmp_path / "p")
    summary = prepare_any(layouts / "kaldi_plain", tmp_path / "p", all_to="test")
    assert [s.utterances for s in summary.splits] == [0, 0, 6]
    assert not (tmp_path / "p" / "stats.json").exists()  # no train: a measurement set


def test_a_lhotse_cutset_and_a_manifest_folder_prepare_without_corpus(layouts, tmp_path):
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recordings, supervisions = [], []
    for wav in sorted((layouts / "kaldi_segments" / "audio").glob("*.wav")):
        recording = Recording.from_file(wav)  # 8 kHz, two sentences each
        recordings.append(recording)
        half = recording.duration / 2
        for n, start in enumerate((0.0, half)):
            supervisions.append(SupervisionSegment(
                id=f"{recording.id}-{n}", recording_id=recording.id, start=start,
                duration=half, text=SENTENCES[n], speaker=recording.id))
    cuts = CutSet.from_manifests(RecordingSet.from_recordings(recordings),
                                 SupervisionSet.from_segments(supervisions))
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    result = runner.invoke(app, ["data", "prepare", str(tmp_path / "cuts.jsonl.gz"),
                                 str(tmp_path / "p"), "--all-to", "train", "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["source"] == "lhotse manifests" and summary["audio_written"] == 6
    train = read_manifest(tmp_path / "p" / "train.jsonl")
    assert len(train) == 6 and {u.speaker for u in train} == {"spk1", "spk2", "spk3"}
    # The same as a folder of per-part manifests: parts named for splits are kept as splits.
    folder = tmp_path / "manifests"
    folder.mkdir()
    recs = RecordingSet.from_recordings(recordings)
    sups = SupervisionSet.from_segments(supervisions)
    for part, keep in (("train", ("spk1", "spk2")), ("test", ("spk3",))):
        sups.filter(lambda s, k=keep: s.speaker in k).to_file(
            folder / f"mine_supervisions_{part}.jsonl.gz")
        recs.filter(lambda r, k=keep: r.id in k).to_file(
            folder / f"mine_recordings_{part}.jsonl.gz")
    summary = prepare_any(folder, tmp_path / "q")
    assert summary.split_rule == "the corpus's own"
    assert summary.split_speakers == {"train": ("spk1", "spk2"), "dev": (), "test": ("spk3",)}


def test_lhotse_and_seqkit_timit_readers_give_the_same_phones(synthesized, tmp_path) -> None:
    ours = prepare_corpus(synthesized, tmp_path / "ours")
    theirs = prepare_any(synthesized, tmp_path / "lhotse", corpus="lhotse:timit")
    assert "splits.json" in theirs.note
    for split in SPLITS:
        a = {u.id: u for u in read_manifest(split_manifest(tmp_path / "ours", split))}
        b = {u.id.replace("-", "_"): u for u in read_manifest(
            split_manifest(tmp_path / "lhotse", split))}
        assert a.keys() == b.keys() and a, split  # same utterances in the same splits
        for utt_id, utt in a.items():
            assert b[utt_id].phones == utt.phones  # 61-phone labels and sample boundaries
            assert b[utt_id].audio == utt.audio and b[utt_id].samples == utt.samples
    assert [s.utterances for s in ours.splits] == [s.utterances for s in theirs.splits]
    # --corpus timit is seqkit's own reader, as without --corpus.
    assert prepare_any(synthesized, tmp_path / "own", corpus="timit").splits == ours.splits


def test_bench_prepare_lhotse_times_both_readers_on_one_corpus(synthesized) -> None:
    rows = prepare_bench.run_timit_readers(corpus=synthesized, repeats=1)
    assert [r["reader"] for r in rows] == ["seqkit (timit)", "lhotse (lhotse:timit)"]
    assert rows[0]["utterances"] == rows[1]["utterances"] == 15 and rows[0]["x seqkit"] == 1.0
    assert all(r["wall s"] > 0 for r in rows)


def test_all_to_test_puts_a_timit_tree_in_test_without_stats(synthesized, tmp_path) -> None:
    result = runner.invoke(app, ["data", "prepare", str(synthesized), str(tmp_path / "p"),
                                 "--all-to", "test"])
    assert result.exit_code == 0, result.output
    manifests = _manifests(tmp_path / "p")
    assert not manifests["train"] and not manifests["dev"] and len(manifests["test"]) == 15
    assert not (tmp_path / "p" / "stats.json").exists()


def test_phone_labels_map_timit_and_arpabet_and_refuse_the_rest() -> None:
    assert [timit_symbol(x) for x in ("pcl", "AH0", "ZH", "AO1", "ax", "AX", "h#")] == [
        "pcl", "ah", "sh", "aa", "ax", "ah", "h#"]
    assert timit_symbol("sp") is None
    with pytest.raises(CorpusError, match="'xyz' is neither"):
        timit_symbol("xyz")
    segments = timit_segments([(0, 0.1, "sil"), (0.1, 0.2, "sp"), (0.2, 0.3, "K"),
                               (0.3, 0.4, "sp"), (0.4, 0.5, "AE1"), (0.5, 0.6, "sil")],
                              sample_rate=1000, samples=550)
    assert segments == ((0, 200, "h#"), (200, 300, "k"), (300, 400, "pau"), (400, 500, "ae"),
                        (500, 550, "h#"))


def test_textgrids_read_in_long_and_short_format(tmp_path) -> None:
    intervals = [(0.0, 0.5, "sil"), (0.5, 1.25, 'say "hi"'), (1.25, 2.0, "")]
    (tmp_path / "long.TextGrid").write_text(textgrid(intervals))
    short = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", "2", "<exists>",
             "1", '"IntervalTier"', '"phones"', "0", "2", "3"]
    for start, end, label in intervals:
        short += [str(start), str(end), '"' + label.replace('"', '""') + '"']
    (tmp_path / "short.TextGrid").write_bytes("\n".join(short).encode("utf-16"))
    for name in ("long", "short"):
        assert read_tiers(tmp_path / f"{name}.TextGrid")["phones"] == intervals
    (tmp_path / "bad.TextGrid").write_text("not a textgrid")
    with pytest.raises(CorpusError, match="not a Praat TextGrid"):
        read_tiers(tmp_path / "bad.TextGrid")


def _kaldi_copy(layouts: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "kaldi"
    copy.mkdir()
    for name in ("wav.scp", "text", "utt2spk"):
        (copy / name).write_text((layouts / "kaldi_plain" / name).read_text())
    return copy


@pytest.mark.parametrize("bad, expected", [
    ("command", "is a command"),
    ("missing_audio", "does not exist"),
    ("empty_text", "empty transcript"),
    ("unknown_speaker", "no speaker"),
    ("malformed", "expected '<id> <value>'"),
])
def test_bad_kaldi_inputs_are_one_line_exit_2_and_no_out(layouts, tmp_path, bad, expected):
    kaldi = _kaldi_copy(layouts, tmp_path)
    lines = {name: (kaldi / name).read_text().splitlines() for name in ("wav.scp", "text",
                                                                           "utt2spk")}
    if bad == "command":
        lines["wav.scp"][1] = "spk1-u1 sph2pipe -f wav /corpus/x.sph |"
    elif bad == "missing_audio":
        lines["wav.scp"][1] = f"spk1-u1 {tmp_path / 'gone.wav'}"
    elif bad == "empty_text":
        lines["text"][1] = "spk1-u1"
    elif bad == "unknown_speaker":
        del lines["utt2spk"][1]
    else:
        lines["utt2spk"][1] = "spk1-u1"
    for name, content in lines.items():
        (kaldi / name).write_text("\n".join(content) + "\n")
    result = runner.invoke(app, ["data", "prepare", str(kaldi), str(tmp_path / "p")])
    line = _one_error_line(result)
    assert expected in line, line
    assert not (tmp_path / "p").exists() and not list(tmp_path.glob(".p*"))
    if bad in ("missing_audio", "empty_text", "unknown_speaker"):  # skippable, and listed
        result = runner.invoke(app, ["data", "prepare", str(kaldi), str(tmp_path / "p"),
                                     "--skip-bad", "--seed", "1"])
        assert result.exit_code == 0, result.output
        skipped = json.loads((tmp_path / "p" / "skipped.json").read_text())
        assert [s["id"] for s in skipped] == ["spk1-u1"] and expected in skipped[0]["reason"]
        assert sum(len(v) for v in _manifests(tmp_path / "p").values()) == 5


@pytest.mark.parametrize("args, expected", [
    (["--corpus", "cmu_artic"], "did you mean cmu_arctic"),
    (["--corpus", "cmu_arctic", "--lhotse-option", "colour=red"], "takes no option 'colour'"),
    (["--corpus", "cmu_arctic", "--lhotse-option", "nokey"], "expected KEY=VALUE"),
    (["--subsets", "train-clean-100"], "are for LibriSpeech layouts"),
])
def test_bad_corpus_options_are_one_line_exit_2_and_no_out(layouts, tmp_path, args, expected):
    result = runner.invoke(app, ["data", "prepare", str(layouts / "arctic"), str(tmp_path / "p"),
                                 *args])
    assert expected in _one_error_line(result)
    assert not (tmp_path / "p").exists()


def test_a_recipe_that_cannot_read_the_folder_is_one_line(layouts, tmp_path) -> None:
    result = runner.invoke(app, ["data", "prepare", str(layouts / "kaldi_plain"),
                                 str(tmp_path / "p"), "--corpus", "ljspeech"])
    line = _one_error_line(result)
    assert "lhotse's ljspeech recipe cannot read" in line and not (tmp_path / "p").exists()


def test_a_manifest_with_a_command_source_is_refused(layouts, tmp_path) -> None:
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.audio import AudioSource

    wav = layouts / "kaldi_plain" / "audio" / "spk1-u0.flac"
    recording = Recording.from_file(wav)
    piped = Recording(id=recording.id, sampling_rate=recording.sampling_rate,
                      num_samples=recording.num_samples, duration=recording.duration,
                      sources=[AudioSource(type="command", channels=[0], source=f"cat {wav}")])
    RecordingSet.from_recordings([piped]).to_file(tmp_path / "x_recordings_all.jsonl.gz")
    SupervisionSet.from_segments([SupervisionSegment(
        id="u", recording_id=recording.id, start=0, duration=recording.duration, text="hello",
        speaker="s")]).to_file(tmp_path / "x_supervisions_all.jsonl.gz")
    with pytest.raises(CorpusError, match="is a command source"):
        prepare_any(tmp_path, tmp_path / "p", all_to="test")
    assert not (tmp_path / "p").exists()
