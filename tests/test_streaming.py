"""Streaming decode: briefly trained tiny unidirectional models (``stream_runs`` in conftest) on
espeak audio give the phones of the whole-file decode, chunk by chunk, for every chunk size."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from seqkit.audio import compute_features, load_audio
from seqkit.audio.features import FeatureConfig
from seqkit.audio.streaming import StreamingFeatures
from seqkit.bench import stream as stream_bench
from seqkit.cli.main import app
from seqkit.decoding.ngram import load_lm_source
from seqkit.decoding.recognize import DecodeOptions, recognize_files
from seqkit.decoding.streaming import StreamingRecognizer
from seqkit.errors import AudioError, ConfigError
from seqkit.models.checkpoint import load_model


@pytest.fixture
def runs(stream_runs: dict[str, str]) -> dict[str, str]:
    return stream_runs


def _audio(runs: dict[str, str]) -> list[str]:
    return json.loads(runs["audio"])


def _stream(loaded, path: str, options: DecodeOptions, chunk_ms: float):
    recognizer = StreamingRecognizer(loaded, options, chunk_ms=chunk_ms)
    wave = load_audio(path)
    step = recognizer.samples_per_chunk
    printed = []
    for start in range(0, wave.shape[0], step):
        printed.extend(recognizer.accept(wave[start : start + step]))
    last, result = recognizer.finish()
    return printed + last, result


pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops, as the CLI streams them


_SLOW = pytest.mark.slow
IDENTITY_CASES = [
    ("ctc_uni", 1, (10, 37, 1000)),
    ("ctc_uni", 4, (37,)),
    ("transducer_uni", 1, (37,)),
    ("transducer_uni", 4, (37,)),
    ("transducer_random", 1, (37,)),
    ("transducer_stride2", 1, (10, 37)),  # model.joint_stride = 2: 60 ms output frames
    pytest.param("ctc_uni", 4, (10, 160, 1000), marks=_SLOW),
    pytest.param("transducer_uni", 1, (10, 160, 1000), marks=_SLOW),
    pytest.param("transducer_uni", 4, (10, 160, 1000), marks=_SLOW),
    pytest.param("transducer_random", 1, (10, 160, 1000), marks=_SLOW),
    pytest.param("transducer_stride2", 1, (160, 1000), marks=_SLOW),
]


@pytest.mark.parametrize(("name", "beam", "chunks"), IDENTITY_CASES)
def test_stream_phones_equal_whole_file_phones_for_every_chunk_size(
    runs, name, beam, chunks
) -> None:
    loaded = load_model(runs[name])
    options = DecodeOptions(beam=beam, transducer_search="graves")
    audio = _audio(runs)
    whole = recognize_files(loaded, audio, options=options).hypotheses
    if name != "transducer_uni":  # the model emits phones, not just blanks
        assert all(len(h.phones) > 10 for h in whole)
    for chunk_ms in chunks:
        for path, hyp in zip(audio, whole, strict=True):
            printed, result = _stream(loaded, path, options, chunk_ms)
            assert result.phones == hyp.phones, (path, chunk_ms)
            assert tuple(printed) == hyp.phones  # incremental output adds up to the result
            assert len(result.decided_at) == len(hyp.phones)
            assert list(result.decided_at) == sorted(result.decided_at)


@pytest.mark.parametrize(("name", "least"), [("ctc_uni", 20), ("transducer_random", 20),
                                             ("transducer_stride2", 12)])  # half the frames
def test_stream_beam_with_lm_equals_whole_file_while_hypotheses_drop_decided_phones(
    runs, tiny_runs, name, least
) -> None:
    """With a trigram LM a stream's hypotheses keep only 2 decided phones of context: the
    phones and score stay those of the whole-file search (``least``: phones it must find)."""
    loaded = load_model(runs[name])
    options = DecodeOptions(beam=4, transducer_search="graves", lm_weight=0.5,
                            lm=load_lm_source(tiny_runs["prepared"], 39), insertion_bonus=3.0)
    path = _audio(runs)[0]
    whole = recognize_files(loaded, [path], options=options).hypotheses[0]
    recognizer = StreamingRecognizer(loaded, options, chunk_ms=37)
    wave = load_audio(path)
    held = []
    for start in range(0, wave.shape[0], 592):  # 37 ms
        recognizer.accept(wave[start : start + 592])
        held.append(recognizer.search.held_labels())
    result = recognizer.finish()[1]
    assert len(whole.phones) > least and result.phones == whole.phones
    assert result.score == pytest.approx(whole.score, abs=1e-3)
    assert len(recognizer.search.committed.labels) > 10 and max(held) < len(whole.phones)


@pytest.mark.slow
def test_bench_long_stream_memo_and_held_labels_stay_flat_while_phones_grow() -> None:
    rows = stream_bench.run_long(2, beam=4)
    for kind in ("ctc", "transducer"):
        first, second = (row for row in rows if row["model"] == kind)
        assert second["stream_s"] == pytest.approx(2 * first["stream_s"], abs=0.1)
        assert second["memo_entries"] <= 3 * 4 * 41  # three tables of beam x (V + 1), V = 40
    ctc = [row for row in rows if row["model"] == "ctc"]
    assert ctc[1]["phones"] > ctc[0]["phones"] > 20
    assert ctc[1]["held_labels"] < 20


def test_stream_decides_greedy_phones_before_the_end(runs) -> None:
    loaded = load_model(runs["ctc_uni"])
    path = max(_audio(runs), key=lambda p: load_audio(p).shape[0])
    printed, result = _stream(loaded, path, DecodeOptions(), 100)
    duration = result.stats.audio_seconds
    assert result.decided_at and min(result.decided_at) < duration - 0.5
    stats = result.stats
    assert stats.latency_ms == pytest.approx(100 + 15 + 40 + 20)
    assert 0 < stats.chunk_ms(0.5) <= stats.chunk_ms(0.95)
    assert stats.rtf > 0


def test_stream_latency_waits_for_the_input_frames_of_a_joint_stride_step(runs) -> None:
    stride1 = StreamingRecognizer(load_model(runs["transducer_random"]), chunk_ms=100)
    stride2 = StreamingRecognizer(load_model(runs["transducer_stride2"]), chunk_ms=100)
    assert stride1.latency_ms == pytest.approx(100 + 15 + 40 + 20)  # stack 3: 2 frames wait
    assert stride2.latency_ms == pytest.approx(100 + 15 + 40 + 50)  # 3 x 2 = 6: 5 frames wait


def test_streaming_front_end_equals_whole_file_features() -> None:
    torch.manual_seed(0)
    wave = torch.randn(16000 + 77) * 0.1
    for kind in ("fbank123", "fbank80"):
        config = FeatureConfig(kind=kind)
        whole = compute_features(wave, config)
        for chunk in (61, 999, 40000):
            front = StreamingFeatures(config)
            parts = [front.accept(wave[i : i + chunk]) for i in range(0, wave.numel(), chunk)]
            got = torch.cat([*parts, front.finish()])
            assert got.shape == whole.shape
            torch.testing.assert_close(got, whole, atol=1e-4, rtol=0)


def test_stream_rejects_bidirectional_models_and_too_short_audio(runs) -> None:
    with pytest.raises(ConfigError, match="bidirectional"):
        StreamingRecognizer(load_model(runs["ctc_bi"]))
    recognizer = StreamingRecognizer(load_model(runs["ctc_uni"]))
    recognizer.accept(torch.zeros(100))
    with pytest.raises(AudioError, match="fewer than one"):
        recognizer.finish()


runner = CliRunner()


def test_decode_cli_stream_prints_the_phones_of_the_whole_file_decode(runs) -> None:
    audio = _audio(runs)
    whole = runner.invoke(app, ["decode", runs["ctc_uni"], *audio])
    assert whole.exit_code == 0, whole.output
    streamed = runner.invoke(app, ["decode", runs["ctc_uni"], *audio, "--stream",
                                   "--chunk-ms", "50"])
    assert streamed.exit_code == 0, streamed.output
    lines = [ln for ln in streamed.stdout.splitlines() if ln.strip()]
    assert lines == [ln for ln in whole.stdout.splitlines() if ln.strip()]
    assert "algorithmic latency 125 ms" in streamed.stderr  # 50 + 15 + 40 + 20 (stack 3)
    assert "p95" in streamed.stderr and "RTF" in streamed.stderr


def test_decode_cli_stream_reads_raw_pcm_from_stdin(runs) -> None:
    path = _audio(runs)[0]
    pcm = (load_audio(path).numpy() * 32767).round().astype("<i2").tobytes()
    result = runner.invoke(app, ["decode", runs["ctc_uni"], "-", "--stream", "--format", "json"],
                           input=pcm)
    assert result.exit_code == 0, result.output
    item = json.loads(result.stdout)[0]
    from_file = _stream(load_model(runs["ctc_uni"]), path, DecodeOptions(), 100)[1]
    # 16-bit quantization may move a score a little; on this audio it moves no phone
    assert [p["phone"] for p in item["phones"]] == list(from_file.phones)
    assert item["duration"] == pytest.approx(from_file.stats.audio_seconds, abs=1e-3)
    assert item["latency_ms"] == 175 and item["rtf"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [(["ctc_bi", "--stream"], "bidirectional"),
     (["ctc_uni", "--stream", "--format", "ctm"], "drop --stream"),
     (["ctc_uni", "--stream", "--chunk-ms", "5"], "at least 10"),
     (["ctc_uni", "--stream", "--align"], "drop --stream"),
     (["ctc_uni_cmn", "--stream"], "features.cmn")],
)
def test_decode_cli_stream_rejects_what_cannot_stream_in_one_line(runs, args, message) -> None:
    result = runner.invoke(app, ["decode", runs[args[0]], _audio(runs)[0], *args[1:]])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_decode_cli_stdin_needs_stream(runs) -> None:
    result = runner.invoke(app, ["decode", runs["ctc_uni"], "-"], input=b"\0\0" * 800)
    assert result.exit_code == 2 and "add --stream" in result.stderr


def test_stdin_ending_inside_a_sample_warns_and_decodes_the_rest(runs) -> None:
    """#20: an odd byte count on `--stream -` dropped the last byte without a word."""
    pcm = (load_audio(_audio(runs)[0]).numpy() * 32767).round().astype("<i2").tobytes()
    whole = runner.invoke(app, ["decode", runs["ctc_uni"], "-", "--stream"], input=pcm)
    cut = runner.invoke(app, ["decode", runs["ctc_uni"], "-", "--stream"], input=pcm + b"\x01")
    assert whole.exit_code == cut.exit_code == 0, cut.output
    assert "warning" not in whole.stderr
    warned = [line for line in cut.stderr.splitlines() if "warning" in line]
    assert len(warned) == 1 and "1 trailing byte" in warned[0]
    assert cut.stdout == whole.stdout
