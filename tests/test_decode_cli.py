"""``seqkit decode``: a briefly trained tiny model decodes espeak audio; bad inputs fail clearly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

from seqkit.audio import compute_features, load_audio
from seqkit.cli.main import app
from seqkit.data.manifest import read_manifest
from seqkit.data.phones import PHONES_61
from seqkit.data.splits import split_manifest
from seqkit.decoding.recognize import DecodeOptions, decode_features, recognize_files
from seqkit.metrics import phone_error_rate
from seqkit.models.checkpoint import load_model


@pytest.fixture(scope="module")
def audio(tiny_runs: dict[str, Path]) -> list[Path]:
    return [Path(u.audio) for u in read_manifest(split_manifest(tiny_runs["prepared"], "test"))]


runner = CliRunner()


def unboxed(text: str) -> str:
    """A usage-error panel's text on one line (rich wraps it inside a box)."""
    return " ".join(text.replace("│", " ").split())


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_decode_espeak_audio_returns_61_phones_with_monotone_timings(tiny_runs, audio) -> None:
    loaded = load_model(tiny_runs["ctc"])
    result = recognize_files(loaded, audio, options=DecodeOptions(beam=1))
    assert not result.failures
    assert 0 < result.rtf < 5
    for hyp in result.hypotheses:
        assert hyp.phones, "the briefly trained model recognizes something"
        assert set(hyp.phones) <= set(PHONES_61)
        assert hyp.segments[0].start == 0.0
        assert hyp.segments[-1].end == pytest.approx(hyp.duration)
        for a, b in zip(hyp.segments, hyp.segments[1:], strict=False):
            assert a.start <= a.end == b.start <= b.end <= hyp.duration
        assert all(0.0 <= s.score <= 1.0 for s in hyp.segments)
    # trained on these two utterances: the 39-folded PER is low
    test = read_manifest(split_manifest(tiny_runs["prepared"], "test"))
    refs = {u.audio: u.phone_labels for u in test}
    per = phone_error_rate([refs[h.name] for h in result.hypotheses],
                           [h.phones for h in result.hypotheses])
    assert per < 0.3


@pytest.mark.parametrize("beam", [1, 3])
def test_decode_transducer_returns_monotone_timings(tiny_runs, audio, beam: int) -> None:
    loaded = load_model(tiny_runs["transducer"])
    result = recognize_files(loaded, audio[:1], options=DecodeOptions(beam=beam))
    hyp = result.hypotheses[0]
    assert set(hyp.phones) <= set(PHONES_61)
    for a, b in zip(hyp.segments, hyp.segments[1:], strict=False):
        assert a.start <= a.end == b.start <= b.end <= hyp.duration


@pytest.mark.parametrize(("name", "stride"), [("transducer_random", 3), ("transducer_stride2", 6)])
def test_decode_timings_count_output_frames_of_stack_times_joint_stride(
    stream_runs, name: str, stride: int
) -> None:
    """``model.joint_stride = 2`` on a 3-frame stack: a phone's times fall on 60 ms frames."""
    path = json.loads(stream_runs["audio"])[0]
    loaded = load_model(stream_runs[name])
    hyp = recognize_files(loaded, [path]).hypotheses[0]
    frames = compute_features(load_audio(path), loaded.features).shape[0]  # 10 ms frames
    assert hyp.frame_shift == pytest.approx(0.01 * stride)
    assert len(hyp.path) == math.ceil(frames / stride)  # one best-path symbol per output frame
    assert len(hyp.phones) > 10 and hyp.segments[-1].end == pytest.approx(hyp.duration)
    for seg in hyp.segments:
        assert seg.start == pytest.approx(round(seg.start / hyp.frame_shift) * hyp.frame_shift)
    assert hyp.segments[-1].start <= (len(hyp.path) - 1) * hyp.frame_shift + 1e-9


@pytest.mark.parametrize("run", ["ctc", "transducer"])
def test_greedy_search_has_no_score_and_beam_search_has_a_log_probability(
    tiny_runs, audio, run: str
) -> None:
    loaded = load_model(tiny_runs[run])
    assert loaded.features is not None and loaded.stats is not None
    feats = [loaded.stats.normalize(compute_features(load_audio(audio[0]), loaded.features))]
    greedy = decode_features(loaded, feats)[0]
    assert greedy.score is None and greedy.labels
    beam = decode_features(loaded, feats, options=DecodeOptions(beam=3))[0]
    assert beam.score is not None and beam.score <= 0.0
    assert [s.label for s in beam.alignment.segments] == list(beam.labels)


def test_decode_cli_text_json_ctm_and_align(tiny_runs, audio, tmp_path) -> None:
    result = _invoke("decode", tiny_runs["ctc"], *audio)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == [p.stem for p in audio]
    assert "RTF" in result.stderr
    result = _invoke("decode", tiny_runs["ctc"], audio[0], "--format", "json", "--beam", "4",
                     "--fold", "39")
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    phones = items[0]["phones"]
    assert phones and {"phone", "start", "end", "score"} <= set(phones[0])
    assert all(a["end"] <= b["start"] + 1e-9 for a, b in zip(phones, phones[1:], strict=False))
    result = _invoke("decode", tiny_runs["ctc"], audio[0], "--beam", "4",
                     "--lm", tiny_runs["prepared"], "--lm-weight", "0.3")
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[0] == audio[0].stem and len(result.stdout.split()) > 5
    result = _invoke("decode", tiny_runs["ctc"], tiny_runs["corpus"] / "TEST", "--recursive",
                     "--format", "ctm", "--align", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    ctm = (tmp_path / "out" / "decode.ctm").read_text().splitlines()
    assert len({line.split()[0] for line in ctm}) >= 3  # every file under TEST/
    pngs = sorted((tmp_path / "out").glob("*.align.png"))
    assert len(pngs) >= 3 and pngs[0].read_bytes()[:4] == b"\x89PNG"


def test_decode_cli_reports_each_bad_file_and_exits_2(tiny_runs, audio, tmp_path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(audio[0].read_bytes()[:1024][:12] + b"\x00garbage" * 40)
    silent = tmp_path / "zero_samples.wav"
    soundfile.write(silent, np.zeros(0, dtype=np.float32), 16000)
    missing = tmp_path / "missing.wav"
    result = _invoke("decode", tiny_runs["ctc"], audio[0], empty, text, corrupt, silent, missing)
    assert result.exit_code == 2
    assert result.stdout.split()[0] == audio[0].stem  # the good file is still decoded
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 5
    for bad in (empty, text, corrupt, silent, missing):
        assert sum(str(bad) in line for line in errors) == 1


def test_decode_cli_transducer_with_lm_fuses_lm_and_insertion_bonus(tiny_runs, audio) -> None:
    plain = _invoke("decode", tiny_runs["transducer"], audio[0], "--beam", "3",
                    "--transducer-search", "batched")
    assert plain.exit_code == 0, plain.output
    fused = _invoke("decode", tiny_runs["transducer"], audio[0], "--beam", "3",
                    "--transducer-search", "batched", "--lm", tiny_runs["prepared"],
                    "--lm-weight", "0.3",
                    "--insertion-bonus", "20")
    assert fused.exit_code == 0, fused.output
    # a large bonus per phone makes the search emit a phone at (nearly) every frame
    assert len(fused.stdout.split()) > len(plain.stdout.split())


def test_decode_cli_rejects_other_kinds_versions_and_options(tiny_runs, audio, tmp_path) -> None:
    result = _invoke("decode", tiny_runs["lm"], audio[0])
    assert result.exit_code == 2
    assert "lm model" in result.stderr and "ctc or transducer" in result.stderr
    payload = torch.load(tiny_runs["ctc"] / "best.pt", weights_only=True)
    payload["format_version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    result = _invoke("decode", newer, audio[0])
    assert result.exit_code == 2 and "upgrade seqkit" in result.stderr
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert _invoke("decode", junk, audio[0]).exit_code == 2
    result = _invoke("decode", tiny_runs["ctc"], audio[0], "--format", "xml")
    assert result.exit_code == 2 and "'xml' is not one of 'text', 'json', 'ctm'" in unboxed(
        result.stderr
    )
    result = _invoke("decode", tiny_runs["ctc"], audio[0], "--lm-weight", "0.3")
    assert result.exit_code == 2 and "--lm" in result.stderr
    result = _invoke("decode", tiny_runs["ctc"], tmp_path / "nothing_here")
    assert result.exit_code == 2


def test_ctm_and_text_ids_have_no_whitespace_and_json_names_the_file(
    tiny_runs, audio, tmp_path
) -> None:
    """#20: `decode --format ctm` wrote "my talk" as two fields, shifting every column."""
    import shutil

    spaced = tmp_path / "my talk.wav"
    shutil.copy(audio[0], spaced)
    twin = tmp_path / "sub" / "my\ttalk.wav"  # the same id once whitespace is replaced
    twin.parent.mkdir()
    shutil.copy(audio[1], twin)
    ctm = _invoke("decode", tiny_runs["ctc"], spaced, twin, "--format", "ctm")
    assert ctm.exit_code == 0, ctm.output
    rows = [line.split() for line in ctm.stdout.splitlines() if line.strip()]
    assert rows and all(len(row) == 6 for row in rows)
    assert {row[0] for row in rows} == {"my_talk", "my_talk-2"}
    text = _invoke("decode", tiny_runs["ctc"], spaced, twin)
    assert [line.split()[0] for line in text.stdout.splitlines() if line.strip()] == [
        "my_talk", "my_talk-2"]
    items = json.loads(_invoke("decode", tiny_runs["ctc"], spaced, twin, "--format",
                               "json").stdout)
    assert [(i["id"], i["file"]) for i in items] == [("my_talk", str(spaced)),
                                                     ("my_talk-2", str(twin))]


def test_a_truncated_wav_decodes_with_one_warning_saying_what_was_read(
    tiny_runs, audio, tmp_path
) -> None:
    """#20: a WAV cut to a third decoded 0.9 s of 2.6 s with exit 0 and no word."""
    import soundfile

    wave, rate = soundfile.read(audio[0], dtype="int16")
    full = tmp_path / "full.wav"
    soundfile.write(full, wave, rate, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    result = _invoke("decode", tiny_runs["ctc"], cut, "--format", "json")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warned) == 1 and "truncated" in warned[0], result.stderr
    read_s = (full.stat().st_size // 3 - 44) // 2 / rate
    assert f"read {read_s:.2f} s" in warned[0] and f"header says {len(wave) / rate:.2f} s" in (
        warned[0])
    assert json.loads(result.stdout)[0]["duration"] == pytest.approx(read_s, abs=0.01)
    clean = _invoke("decode", tiny_runs["ctc"], full)
    assert "warning" not in clean.stderr


@pytest.mark.parametrize(("field", "value", "message"), [
    ("beam", 0, "beam >= 1"),
    ("batch_size", 0, "batch size >= 1"),
    ("max_symbols_per_frame", 0, "max_symbols_per_frame >= 1"),
    ("transducer_search", "fastest", "unknown transducer search"),
])
def test_decode_options_refuse_bad_values_when_made(field, value, message) -> None:
    from seqkit.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        DecodeOptions(**{field: value})


def test_decode_cli_max_symbols_caps_the_labels_per_frame_and_refuses_below_1(
    stream_runs, audio
) -> None:
    """--max-symbols K: the transducer's greedy search emits at most K labels per encoder frame
    (``transducer_random`` emits several without the cap); K < 1 is one line and exit 2."""
    random_model = stream_runs["transducer_random"]
    loaded = load_model(random_model)
    frames = math.ceil(  # encoder frames T' of the file: stack 3, no joint stride
        compute_features(load_audio(audio[0]), loaded.features).shape[0]
        / loaded.config.encoder.stack
    )

    def phones(*args: str) -> list[str]:
        result = _invoke("decode", random_model, audio[0], *args)
        assert result.exit_code == 0, result.output
        return result.stdout.split()[1:]

    assert len(phones()) > frames  # the default cap, 5, lets it emit more than one per frame
    for cap in (1, 2):
        assert 0 < len(phones("--max-symbols", str(cap))) <= cap * frames
    bad = _invoke("decode", random_model, audio[0], "--max-symbols", "0")
    assert bad.exit_code == 2
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "expected --max-symbols >= 1, found 0" in lines[0], bad.stderr
