"""``seqkit bench gpu`` off a GPU (issue #19): the refusal, the plan, the report, and the stages
that run on CPU in a tiny form (the Triton kernels under the interpreter, bf16 autocast, pytest
in a subprocess)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seqkit.bench import ctc_loss, gpu, transducer_loss
from seqkit.cli.main import app
from seqkit.errors import BackendUnavailableError, ConfigError, CorpusError
from seqkit.training.trainer import cpu_has_native_bf16

runner = CliRunner()
TINY_MODEL = ("model.encoder.layers=1", "model.encoder.hidden=16", "model.predictor.embed=8",
              "model.predictor.hidden=16", "model.joint_dim=16")


def test_bench_gpu_without_cuda_is_one_line_and_exit_2_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "report"
    result = runner.invoke(app, ["bench", "gpu", "--out", str(out)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: no CUDA device: seqkit bench gpu needs one;")
    assert not out.exists()


def test_shapes_are_the_bench_losses_shapes_plus_the_transducer_benchmark_shape():
    assert (30, 500, 100, 500) in gpu.TRANSDUCER_SHAPES
    assert set(transducer_loss.SHAPES) <= set(gpu.TRANSDUCER_SHAPES)
    assert gpu.CTC_SHAPES == ctc_loss.SHAPES


@pytest.mark.parametrize("minutes", [gpu.DEFAULT_MINUTES, 0.6, 4.0, 30.0])
def test_stage_plan_fits_the_budget(minutes):
    plan = gpu.plan_stages(minutes)
    assert [name for name, _ in plan] == [name for name, _ in gpu.STAGE_MINUTES]
    assert all(m > 0 for _, m in plan)
    assert sum(m for _, m in plan) + gpu.REPORT_RESERVE_MINUTES <= minutes + 1e-9


def test_default_plan_is_under_ten_minutes_with_about_three_per_training_run():
    plan = dict(gpu.plan_stages())
    assert sum(plan.values()) + gpu.REPORT_RESERVE_MINUTES <= 10.0
    assert plan["train synth/ctc_blstm"] >= 2.5 and plan["train pretrained transducer"] >= 2.5


@pytest.mark.parametrize("minutes", [0.5, 0.0, -1.0, math.inf])
def test_stage_plan_refuses_a_budget_with_no_room(minutes):
    with pytest.raises(ConfigError, match="--minutes must be more than"):
        gpu.plan_stages(minutes)


def _raise(_seconds: float) -> gpu.StageOutput:
    raise RuntimeError("kernel launch failed:\n  out of resources")


def test_run_stage_records_an_exception_as_a_failed_stage_with_a_one_line_error():
    result = gpu.run_stage("loss kernels", _raise, planned_minutes=1.0,
                           deadline=time.monotonic() + 60)
    assert result.status == "failed"
    assert result.error == "RuntimeError: kernel launch failed: out of resources"


def test_run_stage_keeps_the_rows_of_a_failed_check_and_skips_without_budget():
    output = gpu.StageOutput([{"file": "total", "failed": 1}], ["failed: x"], "1 failed")
    kept = gpu.run_stage("cuda tests", lambda s: output, planned_minutes=1.0,
                         deadline=time.monotonic() + 60)
    assert (kept.status, kept.rows, kept.error) == ("failed", output.rows, "1 failed")
    given = []
    ok = gpu.run_stage("autocast", lambda s: given.append(s) or gpu.StageOutput(),
                       planned_minutes=1.0, deadline=time.monotonic() + 30)
    assert ok.status == "ok" and 0 < given[0] <= 30  # the deadline caps the stage's seconds
    late = gpu.run_stage("autocast", _raise, planned_minutes=1.0, deadline=time.monotonic())
    assert (late.status, late.error) == ("skipped", "no budget left")


def _report(stages: list[gpu.StageResult]) -> gpu.GpuReport:
    return gpu.GpuReport("NVIDIA H100 80GB HBM3", "2026-12-05T08:00:00+00:00", 10.0, 42.0,
                         {"torch": "2.14.1"}, stages)


def test_report_writer_writes_markdown_and_json_with_a_failing_stage_recorded(tmp_path):
    stages = [
        gpu.run_stage("cuda tests", lambda s: gpu.StageOutput(
            [{"file": "test_ctc_loss.py", "passed": 12, "failed": 0}], ["command: pytest"]),
            planned_minutes=1.5, deadline=time.monotonic() + 60),
        gpu.run_stage("loss kernels", _raise, planned_minutes=1.0,
                      deadline=time.monotonic() + 60),
        gpu.skipped("train synth/ctc_blstm", 2.75, "no prepared corpus: the corpus stage failed"),
    ]
    markdown, data = gpu.write_report(tmp_path / "out", _report(stages))
    assert json.loads(data.read_text()) == _report(stages).to_dict()
    text = markdown.read_text()
    assert "| loss kernels | failed |" in text
    assert "RuntimeError: kernel launch failed: out of resources" in text
    assert "| test_ctc_loss.py | 12 | 0 |" in text
    assert "| train synth/ctc_blstm | skipped |" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu-report.json",
                                                                     "gpu-report.md"]


def test_report_that_cannot_be_written_leaves_the_previous_report_whole(tmp_path):
    first = _report([gpu.skipped("autocast", 0.5, "no budget left")])
    gpu.write_report(tmp_path, first)
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    broken = _report([gpu.StageResult("autocast", "ok", 0.5, 1.0, rows=[{"x": object()}])])
    with pytest.raises(TypeError):
        gpu.write_report(tmp_path, broken)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before


def test_cuda_tests_stage_counts_passes_failures_and_skips_from_pytest(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_sample.py").write_text(
        "import pytest\n"
        "def test_one(): pass\n"
        "def test_two(): pass\n"
        "def test_broken(): assert 1 == 2\n"
        "@pytest.mark.skip(reason='no GPU')\n"
        "def test_gpu_only(): pass\n")
    output = gpu.run_tests(("tests/test_sample.py",), root=tmp_path, timeout_s=300)
    total = output.rows[-1]
    assert (total["passed"], total["failed"], total["errors"], total["skipped"]) == (2, 1, 0, 1)
    assert output.rows[0]["file"] == "test_sample.py"
    assert "failed: test_sample.py::test_broken" in output.notes
    assert output.problem == "1 failed and 0 errors of 4"


def test_cuda_tests_stage_outside_a_checkout_says_where_it_looked(tmp_path):
    with pytest.raises(ConfigError, match="run seqkit bench gpu from the repository"):
        gpu.run_tests(gpu.CUDA_TEST_FILES, root=tmp_path, timeout_s=10)


def test_kernel_timing_runs_our_triton_kernels_on_tiny_cpu_shapes_under_the_interpreter():
    output = gpu.time_kernels(device="cpu", backend="triton", repeats=1,
                              ctc_shapes=((2, 8, 3, 5),), transducer_shapes=((2, 5, 3, 6),))
    assert [(r["loss"], r["backend"]) for r in output.rows] == [("ctc", "triton"),
                                                                 ("transducer", "triton")]
    for row in output.rows:
        assert row["ours_ms"] > 0 and row["peer_ms"] > 0
        assert row["ours_peak_mib"] is None and row["peer_peak_mib"] is None  # CUDA only


@pytest.mark.skipif(not cpu_has_native_bf16(),
                    reason="this CPU has no bfloat16 LSTM (AVX512-BF16/AMX): the refusal test "
                           "covers it")
def test_autocast_stage_compares_bf16_with_float32_on_cpu_with_tiny_models():
    output = gpu.compare_autocast(device="cpu", precisions=("bf16",), steps=2,
                                  overrides=TINY_MODEL, batch=(2, 30, 4))
    assert [(r["recipe"], r["precision"]) for r in output.rows] == [
        ("synth/ctc_blstm", "bf16"), ("synth/transducer", "bf16")]
    for row in output.rows:
        assert math.isfinite(row["max rel diff"]) and row["scaler skipped"] == 0
    assert output.problem is None or "beyond tolerance" in output.problem


def test_autocast_stage_refuses_a_cpu_without_a_bfloat16_lstm_in_one_line(monkeypatch):
    monkeypatch.setattr(gpu, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(BackendUnavailableError, match="no bfloat16 LSTM .* AVX2-only CPU"):
        gpu.compare_autocast(device="cpu", precisions=("bf16",), steps=1,
                             overrides=TINY_MODEL, batch=(2, 30, 4))


def test_training_stages_are_skipped_when_the_corpus_stage_fails(tmp_path, monkeypatch):
    def no_corpus(work: Path, **_kwargs):
        raise CorpusError("espeak-ng cannot be loaded: apt-get install espeak-ng")

    monkeypatch.setattr(gpu, "make_corpus", no_corpus)
    stages = gpu._stage_functions(tmp_path, tmp_path, None, None)
    deadline = time.monotonic() + 60
    corpus = stages["corpus"](0.75, deadline)
    assert corpus.status == "failed" and "espeak-ng cannot be loaded" in corpus.error
    for name in ("train synth/ctc_blstm", "train pretrained transducer"):
        result = stages[name](2.75, deadline)
        assert (result.status, result.error) == (
            "skipped", "no prepared corpus: the corpus stage failed")


def test_kernel_timing_records_a_failing_shape_and_times_the_others(monkeypatch):
    real_run = transducer_loss.run

    def run(*args, shapes, **kwargs):
        if shapes == ((2, 6, 3, 7),):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.8 GiB")
        return real_run(*args, shapes=shapes, **kwargs)

    monkeypatch.setattr(transducer_loss, "run", run)
    output = gpu.time_kernels(device="cpu", repeats=1, ctc_shapes=((2, 8, 3, 5),),
                              transducer_shapes=((2, 6, 3, 7), (2, 5, 3, 6)))
    assert [r.get("error") is None for r in output.rows] == [True, False, True]
    assert output.rows[1] == {"loss": "transducer", "shape": "B=2 T=6 U=3 V=7", "error":
                              "RuntimeError: CUDA out of memory. Tried to allocate 2.8 GiB"}
    assert output.problem == "failed: transducer B=2 T=6 U=3 V=7"


def _fake_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)


def _fake_stages(monkeypatch, calls: list) -> None:
    """Every stage replaced by a quick stand-in that records how it was called."""
    def tests(files, *, root, timeout_s):
        calls.append(("cuda tests", files, timeout_s))
        return gpu.StageOutput([{"file": "total", "passed": 3, "failed": 0}])

    def corpus(work, progress=None):
        calls.append(("corpus", work))
        return work / "prepared", gpu.StageOutput([{"split": "train", "utterances": 9}])

    def training(name):
        def run(data_dir, run_dir, *, seconds, progress=None):
            calls.append((name, data_dir, run_dir, seconds))
            return gpu.StageOutput([{"run": name, "epochs": 2}])
        return run

    monkeypatch.setattr(gpu, "run_tests", tests)
    monkeypatch.setattr(gpu, "time_kernels", lambda progress=None: _raise(0))
    monkeypatch.setattr(gpu, "compare_autocast",
                        lambda: gpu.StageOutput(problem="autocast losses differ"))
    monkeypatch.setattr(gpu, "make_corpus", corpus)
    monkeypatch.setattr(gpu, "train_ctc", training("ctc"))
    monkeypatch.setattr(gpu, "train_transducer", training("transducer"))


def test_gpu_check_runs_every_stage_in_order_and_trains_on_the_corpus_it_made(tmp_path,
                                                                              monkeypatch):
    _fake_cuda(monkeypatch)
    calls: list = []
    _fake_stages(monkeypatch, calls)
    said: list[str] = []
    report = gpu.run_gpu_check(tmp_path / "out", root=tmp_path, stage=said.append)
    assert [(s.name, s.status) for s in report.stages] == [
        ("cuda tests", "ok"), ("loss kernels", "failed"), ("autocast", "failed"),
        ("corpus", "ok"), ("train synth/ctc_blstm", "ok"), ("train pretrained transducer", "ok")]
    assert len(said) == 6 and report.device == "Fake GPU"
    work = tmp_path / "out" / "work"
    assert calls[0][:2] == ("cuda tests", gpu.CUDA_TEST_FILES) and calls[0][2] <= 1.5 * 60
    assert calls[1] == ("corpus", work)
    assert calls[2][:3] == ("ctc", work / "prepared", work / "ctc") and calls[2][3] <= 2.75 * 60
    assert calls[3][:3] == ("transducer", work / "prepared", work / "transducer")
    written = json.loads((tmp_path / "out" / "gpu-report.json").read_text())
    assert written == report.to_dict()
    assert "| loss kernels | failed |" in (tmp_path / "out" / "gpu-report.md").read_text()


def test_gpu_check_with_a_prepared_corpus_skips_synthesis_and_trains_on_it(tmp_path,
                                                                           monkeypatch):
    _fake_cuda(monkeypatch)
    calls: list = []
    _fake_stages(monkeypatch, calls)
    report = gpu.run_gpu_check(tmp_path / "out", root=tmp_path, data=tmp_path / "prepared")
    corpus = next(s for s in report.stages if s.name == "corpus")
    assert corpus.status == "skipped" and str(tmp_path / "prepared") in corpus.error
    assert [c[1] for c in calls if c[0] in ("ctc", "transducer")] == [tmp_path / "prepared"] * 2


def test_cuda_tests_stage_counts_what_finished_when_pytest_is_interrupted(tmp_path):
    # the second test interrupts pytest as the stage does past its time (SIGINT)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_sample.py").write_text(
        "import os, signal\n"
        "def test_first(): pass\n"
        "def test_interrupted(): os.kill(os.getpid(), signal.SIGINT)\n"
        "def test_never_run(): pass\n")
    output = gpu.run_tests(("tests/test_sample.py",), root=tmp_path, timeout_s=300)
    assert output.rows[-1]["passed"] >= 1
    assert output.rows[-1]["passed"] + output.rows[-1]["failed"] < 3
    assert output.problem.startswith("pytest exited 2: the counts are the tests that finished")
