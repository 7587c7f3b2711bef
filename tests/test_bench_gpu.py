"""``seqkit bench gpu`` off a GPU (issues #19, #30): the refusals, the plan, stages that fault in
their own processes, the report, and the checks run on the CPU in tiny form (the Triton kernels
under the interpreter, bf16 autocast, pytest in a subprocess, a short training run)."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch
import triton  # noqa: F401 - first imported under conftest's TRITON_INTERPRET=1 (see _fake_cuda)
from typer.testing import CliRunner

from seqkit.bench import gpu, gpu_checks
from seqkit.bench.gpu_stage import StageOutput
from seqkit.cli.main import app
from seqkit.errors import BackendUnavailableError, ConfigError
from seqkit.training.trainer import cpu_has_native_bf16

runner = CliRunner()
TINY_MODEL = ("model.encoder.layers=1", "model.encoder.hidden=16", "model.predictor.embed=8",
              "model.predictor.hidden=16", "model.joint_dim=16")
TINY_CTC, TINY_TRANSDUCER = (2, 12, 3, 5), (2, 6, 3, 7)


def _fake_cuda(monkeypatch) -> None:
    """The parent process believes in a GPU; the stages it starts never touch CUDA.

    The check refuses to run under TRITON_INTERPRET, so it is unset here; the report then
    imports triton, which must have been imported before (at the top of this module), or its
    first import would leave the kernels of later tests outside the interpreter.
    """
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Fake GPU")


def test_bench_gpu_without_cuda_is_one_line_and_exit_2_before_writing(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "report"
    result = runner.invoke(app, ["bench", "gpu", "--out", str(out)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: no CUDA device: seqkit bench gpu needs one;")
    assert not out.exists()


@pytest.mark.parametrize("value", ["1", "true", "ON"])
def test_bench_gpu_under_the_triton_interpreter_is_one_line_and_exit_2(tmp_path, monkeypatch,
                                                                       value):
    _fake_cuda(monkeypatch)
    monkeypatch.setenv("TRITON_INTERPRET", value)
    out = tmp_path / "report"
    result = runner.invoke(app, ["bench", "gpu", "--out", str(out)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: TRITON_INTERPRET is set: the kernels would run in "
                               "Triton's interpreter")
    assert not out.exists()


def test_default_plan_fits_eight_minutes_with_the_issues_shapes():
    assert gpu.DEFAULT_MINUTES <= 7.5
    assert sum(s.seconds for s in gpu.plan_stages()) / 60 + gpu.REPORT_RESERVE_MINUTES <= 7.5
    assert [s.name for s in gpu.STAGES] == [
        "ctc", "transducer", "determinism", "strided inputs", "autocast", "speed and memory",
        "cuda tests", "corpus", "train ctc", "train transducer"]
    assert gpu_checks.CTC_SHAPE == (8, 1000, 200, 62)
    assert gpu_checks.TRANSDUCER_SHAPE == (4, 300, 80, 500)


@pytest.mark.parametrize("minutes", [gpu.DEFAULT_MINUTES, 1.0, 4.0, 30.0])
def test_stage_plan_fits_the_budget(minutes):
    plan = gpu.plan_stages(minutes)
    assert [s.name for s in plan] == [s.name for s in gpu.STAGES]
    assert all(s.seconds > 0 for s in plan)
    assert sum(s.seconds for s in plan) / 60 + gpu.REPORT_RESERVE_MINUTES <= minutes + 1e-9


@pytest.mark.parametrize("minutes", [0.5, 0.0, -1.0, math.inf])
def test_stage_plan_refuses_a_budget_with_no_room(minutes):
    with pytest.raises(ConfigError, match="--minutes must be more than"):
        gpu.plan_stages(minutes)


# ---------------------------------------------------------------------------------------------
# stages in processes of their own

FAULTY_STAGES = '''
import ctypes, os, time
from seqkit.bench.gpu_stage import StageOutput

def good(seconds):
    return StageOutput([{"check": "held", "ok": True}], ["note"])

def raises(seconds):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")

def exits(seconds):
    os._exit(3)

def segfaults(seconds):
    ctypes.string_at(0)

def hangs(seconds):
    time.sleep(600)

def checks_nothing(seconds):
    return StageOutput(notes=["timed something"])

def misses(seconds):
    return StageOutput([{"check": "loss vs float64", "ok": False}, {"check": "grad", "ok": True}])

def writes(seconds, path):
    open(path, "w").write(str(seconds))
    return StageOutput([{"check": "wrote", "ok": True}])
'''


@pytest.fixture
def faulty(tmp_path, monkeypatch) -> str:
    """A module of stages that fault, importable by the stages' processes."""
    (tmp_path / "faulty_stages.py").write_text(FAULTY_STAGES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return "faulty_stages"


def _budget(stages: tuple[gpu.Stage, ...]) -> float:
    """The minutes at which the plan keeps each stage's own seconds."""
    return sum(s.seconds for s in stages) / 60 + gpu.REPORT_RESERVE_MINUTES


def test_a_faulting_stage_is_recorded_and_the_next_stages_run_and_the_report_is_written(
        tmp_path, monkeypatch, faulty):
    _fake_cuda(monkeypatch)
    stages = tuple(gpu.Stage(name, seconds, f"{faulty}:{name}") for name, seconds in (
        ("good", 30), ("raises", 30), ("exits", 30), ("segfaults", 30), ("hangs", 5),
        ("checks_nothing", 30), ("misses", 30))) + (gpu.Stage("last", 30, f"{faulty}:good"),)
    out = tmp_path / "out"
    seen: list[tuple[str, int]] = []

    def said(line: str) -> None:  # as each stage starts, the report holds every earlier one
        if "(up to" in line:
            written = out / "gpu-report.json"
            seen.append((line.split(" (")[0], len(json.loads(written.read_text())["stages"])
                         if written.exists() else 0))

    report = gpu.run_gpu_check(out, minutes=_budget(stages), stages=stages, stage=said)
    assert seen == [(s.name, i) for i, s in enumerate(stages)]
    results = {s.name: s for s in report.stages}
    assert [s.status for s in report.stages] == ["ok", "failed", "failed", "failed", "failed",
                                                 "failed", "failed", "ok"]
    assert results["raises"].error == ("RuntimeError: CUDA error: an illegal memory access was "
                                       "encountered")
    assert results["exits"].error.startswith("exited 3 without a result")
    assert results["segfaults"].error == ("killed by SIGSEGV without a result: Fatal Python "
                                          "error: Segmentation fault")
    # the unused time of the stages before it stretches its 5 s slice to twice that, no more
    assert results["hangs"].error == "ran past its 10 s limit and was stopped"
    assert results["hangs"].seconds < 10 + gpu.KILL_GRACE_SECONDS + 5
    assert results["checks_nothing"].error == "the stage checked nothing"
    assert results["misses"].error == "1 of 2 checks failed: loss vs float64"
    assert results["last"].rows == [{"check": "held", "ok": True}]
    assert report.verdict == "FAILED"
    # the segfault left a Python stack in its log (faulthandler)
    assert "Segmentation fault" in (out / "logs" / "segfaults.log").read_text()
    assert "RuntimeError: CUDA error" in (out / "logs" / "raises.log").read_text()
    written = json.loads((out / "gpu-report.json").read_text())
    assert written == report.to_dict() and written["verdict"] == "FAILED"
    lines = (out / "gpu-report.md").read_text().splitlines()
    assert lines[0] == "# seqkit bench gpu: FAILED"
    verdicts = lines[2:10]  # the verdict of each stage first
    assert [line.split(":")[0] for line in verdicts] == [f"- {s.name}" for s in stages]
    assert verdicts[0] == "- good: **ok**" and verdicts[7] == "- last: **ok**"
    assert verdicts[6] == "- misses: **failed**: 1 of 2 checks failed: loss vs float64"


def test_stage_gets_its_limit_and_a_stage_after_a_failed_corpus_is_skipped(tmp_path,
                                                                          monkeypatch, faulty):
    _fake_cuda(monkeypatch)
    given = tmp_path / "given"
    stages = (gpu.Stage("writes", 20, f"{faulty}:writes", {"path": str(given)}),
              gpu.Stage("corpus", 20, f"{faulty}:raises"),
              gpu.Stage("train", 20, f"{faulty}:good", needs_corpus=True))
    report = gpu.run_gpu_check(tmp_path / "out", minutes=_budget(stages), stages=stages)
    assert 15 < float(given.read_text()) <= 20
    assert [(s.status, s.error) for s in report.stages[1:]] == [
        ("failed", "RuntimeError: CUDA error: an illegal memory access was encountered"),
        ("skipped", "no prepared corpus: the corpus stage failed")]
    assert report.verdict == "FAILED"


def test_a_prepared_corpus_skips_the_corpus_stage_and_reaches_the_training_stage(
        tmp_path, monkeypatch, faulty):
    _fake_cuda(monkeypatch)
    stages = (gpu.Stage("corpus", 20, f"{faulty}:raises"),
              gpu.Stage("train", 20, f"{faulty}:writes", {"path": "{data}/seen"},
                        needs_corpus=True))
    (tmp_path / "prepared").mkdir()
    report = gpu.run_gpu_check(tmp_path / "out", minutes=_budget(stages), stages=stages,
                               data=tmp_path / "prepared")
    assert [s.status for s in report.stages] == ["skipped", "ok"]
    assert (tmp_path / "prepared" / "seen").is_file()
    assert report.verdict == "INCOMPLETE"  # a skipped stage is not an ok one


def test_cli_exits_0_only_when_every_stage_is_ok(tmp_path, monkeypatch, faulty):
    _fake_cuda(monkeypatch)
    for stages, code in (((gpu.Stage("good", 20, f"{faulty}:good"),), 0),
                         ((gpu.Stage("good", 20, f"{faulty}:good"),
                           gpu.Stage("misses", 20, f"{faulty}:misses")), 1)):
        monkeypatch.setattr(gpu, "STAGES", stages)
        out = tmp_path / f"out{code}"
        result = runner.invoke(app, ["bench", "gpu", "--out", str(out), "--minutes",
                                     str(_budget(stages)), "--format", "json"])
        assert result.exit_code == code, result.output
        assert "stage good (up to" in result.output
        verdict = json.loads((out / "gpu-report.json").read_text())["verdict"]
        assert verdict == ("ok" if code == 0 else "FAILED")


def test_report_that_cannot_be_written_leaves_the_previous_report_whole(tmp_path):
    stage = gpu.Stage("autocast", 30, "x:y")
    first = gpu.GpuReport("GPU", "2026-12-05T08:00:00+00:00", 7.5, 1.0, {"torch": "2.11.0"},
                          [gpu.skipped(stage, "no budget left")])
    gpu.write_report(tmp_path, first)
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    broken = gpu.GpuReport("GPU", "2026-12-05T08:00:00+00:00", 7.5, 1.0, {},
                           [gpu.StageResult("autocast", "ok", 30, 1.0, rows=[{"x": object()}])])
    with pytest.raises(TypeError):
        gpu.write_report(tmp_path, broken)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before


# ---------------------------------------------------------------------------------------------
# the checks, tiny, on the CPU


def test_compare_fails_a_wrong_gradient_a_wrong_loss_and_a_nan():
    loss, grad = torch.tensor([10.0, 20.0]), torch.rand(3, 2, 4) * 2 - 1
    truth = (loss.double(), [grad.double()])
    tol = gpu_checks.REFERENCE
    assert gpu_checks.compare("same", (loss, [grad]), truth, tol)["ok"]
    assert not gpu_checks.compare("grad", (loss, [grad + 0.02]), truth, tol)["ok"]
    assert not gpu_checks.compare("loss", (loss * (1 + 1e-4), [grad]), truth, tol)["ok"]
    nan = grad.clone()
    nan[0, 0, 0] = float("nan")
    assert not gpu_checks.compare("nan", (loss, [nan]), truth, tol)["ok"]
    assert not gpu_checks.compare("shape", (loss, [grad[:2]]), truth, tol)["ok"]


def test_ctc_check_runs_our_triton_kernels_against_float64_and_torch_on_tiny_cpu_shapes():
    output = gpu_checks.check_ctc(device="cpu", backend="triton", shape=TINY_CTC)
    assert [r["check"] for r in output.rows] == ["ours (triton, cpu) vs float64 CPU",
                                                 "ours (triton, cpu) vs torch (cpu)"]
    assert output.verdict() is None, output.rows


def test_transducer_check_covers_the_full_pruned_and_fused_joint_paths_on_tiny_cpu_shapes():
    output = gpu_checks.check_transducer(device="cpu", backend="triton", shape=TINY_TRANSDUCER,
                                         joint_dim=8)
    assert [r["check"] for r in output.rows] == [
        "loss (triton) vs float64 CPU", "loss (triton) vs torchaudio (cpu)",
        "pruned path: simple joint loss vs float64 CPU", "pruned path: pruned loss vs float64 CPU",
        "pruned path, all 4 positions vs loss (triton)",
        "fused joint vs joint + loss in float64 CPU"]
    assert output.verdict() is None, output.rows


def test_determinism_check_repeats_backwards_with_and_without_deterministic_algorithms():
    output = gpu_checks.check_determinism(device="cpu", backend="triton", ctc_shape=TINY_CTC,
                                          transducer_shape=TINY_TRANSDUCER, repeats=2)
    assert [(r["check"], r["required"]) for r in output.rows] == [
        ("ctc default", "<= 1e-05"), ("ctc deterministic", "bitwise"),
        ("transducer default", "<= 1e-05"), ("transducer deterministic", "bitwise")]
    assert output.verdict() is None, output.rows
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_strided_check_compares_views_and_strided_lengths_with_contiguous_copies(tmp_path,
                                                                                 backend):
    # in a process of its own, as the GPU check runs it: strided lengths once made the Triton
    # CTC kernel write out of bounds (#30) and end the process
    stage = gpu.Stage("strided inputs", 120, f"{gpu.CHECKS}:check_strided")
    result = gpu.run_stage(stage, {"device": "cpu", "backend": backend, "ctc_shape": TINY_CTC,
                                   "transducer_shape": TINY_TRANSDUCER},
                           limit_s=120, log=tmp_path / "strided.log")
    assert (result.status, result.error) == ("ok", None), result.rows
    assert [r["check"] for r in result.rows][2:4] == [
        "ctc lengths strided (column of (B, 2))", "ctc lengths expanded (stride 0)"]
    assert len(result.rows) == 10


def test_kernel_timing_runs_our_triton_kernels_on_tiny_cpu_shapes_under_the_interpreter():
    output = gpu_checks.time_kernels(device="cpu", backend="triton", repeats=1,
                                     ctc_shapes=(TINY_CTC,), transducer_shapes=(TINY_TRANSDUCER,))
    assert [(r["loss"], r["backend"], r["ok"]) for r in output.rows] == [
        ("ctc", "triton", True), ("transducer", "triton", True)]
    for row in output.rows:
        assert row["ours_ms"] > 0 and row["peer_ms"] > 0
        assert row["ours_peak_mib"] is None and row["peer_peak_mib"] is None  # CUDA only


def test_kernel_timing_records_a_failing_shape_and_times_the_others(monkeypatch):
    real_run = gpu_checks.transducer_bench.run

    def run(*args, shapes, **kwargs):
        if shapes == ((2, 6, 3, 8),):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.8 GiB")
        return real_run(*args, shapes=shapes, **kwargs)

    monkeypatch.setattr(gpu_checks.transducer_bench, "run", run)
    output = gpu_checks.time_kernels(device="cpu", repeats=1, ctc_shapes=(TINY_CTC,),
                                     transducer_shapes=((2, 6, 3, 8), TINY_TRANSDUCER))
    assert [r["ok"] for r in output.rows] == [True, False, True]
    assert output.rows[1] == {"loss": "transducer", "shape": "B=2 T=6 U=3 V=8", "error":
                              "RuntimeError: CUDA out of memory. Tried to allocate 2.8 GiB",
                              "ok": False}
    assert output.verdict() == "1 of 3 checks failed: transducer B=2 T=6 U=3 V=8"


@pytest.mark.skipif(not cpu_has_native_bf16(),
                    reason="this CPU has no bfloat16 LSTM (AVX512-BF16/AMX): the refusal test "
                           "covers it")
def test_autocast_stage_compares_bf16_with_float32_on_cpu_with_tiny_models():
    output = gpu_checks.compare_autocast(device="cpu", precisions=("bf16",), steps=2,
                                         overrides=TINY_MODEL, batch=(2, 30, 4))
    assert [(r["recipe"], r["precision"]) for r in output.rows] == [
        ("synth/ctc_blstm", "bf16"), ("synth/transducer", "bf16")]
    for row in output.rows:
        assert math.isfinite(row["max rel diff"]) and row["scaler skipped"] == 0
        assert row["ok"] == (row["max rel diff"] <= gpu_checks.AUTOCAST_TOLERANCE["bf16"])


def test_autocast_stage_refuses_a_cpu_without_a_bfloat16_lstm_in_one_line(monkeypatch):
    monkeypatch.setattr(gpu_checks, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(BackendUnavailableError, match="no bfloat16 LSTM .* AVX2-only CPU"):
        gpu_checks.compare_autocast(device="cpu", precisions=("bf16",), steps=1,
                                    overrides=TINY_MODEL, batch=(2, 30, 4))


def _sample_tests(root: Path, body: str) -> None:
    (root / "tests").mkdir()
    (root / "tests" / "test_sample.py").write_text(textwrap.dedent(body))


def test_cuda_tests_stage_counts_passes_failures_and_skips_from_pytest(tmp_path):
    _sample_tests(tmp_path, """
        import pytest
        def test_one(): pass
        def test_two(): pass
        def test_broken(): assert 1 == 2
        @pytest.mark.skip(reason='no GPU')
        def test_gpu_only(): pass
        def test_left_out(): pass
        """)
    output = gpu_checks.run_tests(seconds=300, files=["tests/test_sample.py"], root=str(tmp_path),
                                  select="not left_out")
    total = output.rows[-1]
    assert (total["passed"], total["failed"], total["errors"], total["skipped"]) == (2, 1, 0, 1)
    assert output.rows[0]["file"] == "test_sample.py" and output.rows[0]["ok"] is False
    assert "failed: test_sample.py::test_broken" in output.notes
    assert output.verdict() == "1 failed and 0 errors of 4; 1 of 1 checks failed: test_sample.py"


def test_cuda_tests_stage_outside_a_checkout_says_where_it_looked(tmp_path):
    with pytest.raises(ConfigError, match="run seqkit bench gpu from the repository"):
        gpu_checks.run_tests(seconds=10, files=list(gpu.CUDA_TEST_FILES), root=str(tmp_path))


def test_cuda_tests_stage_counts_what_finished_when_pytest_is_interrupted(tmp_path):
    # the second test interrupts pytest as the stage does past its time (SIGINT)
    _sample_tests(tmp_path, """
        import os, signal
        def test_first(): pass
        def test_interrupted(): os.kill(os.getpid(), signal.SIGINT)
        def test_never_run(): pass
        """)
    output = gpu_checks.run_tests(seconds=300, files=["tests/test_sample.py"], root=str(tmp_path))
    assert output.rows[-1]["passed"] >= 1
    assert output.rows[-1]["passed"] + output.rows[-1]["failed"] < 3
    assert output.verdict().startswith("pytest exited 2: the counts are the tests that finished")


@pytest.mark.slow
def test_training_check_trains_a_tiny_ctc_model_and_its_loss_falls(prepared, tmp_path):
    output = gpu_checks.train_and_check(
        seconds=600, recipe="synth/ctc_blstm", data=str(prepared), run=str(tmp_path / "run"),
        overrides=(*TINY_MODEL[:2], "train.max_frames=600", "train.max_epochs=12",
                   "train.patience=100", "train.lr=5e-3"))  # 48 steps: the loss falls 29%
    row = output.rows[0]
    assert row["steps"] >= 2 * gpu_checks.TRAIN_WINDOW and row["drop"] == pytest.approx(
        1 - row["last loss"] / row["first loss"])
    assert output.verdict() is None, output.rows


def test_training_check_with_too_few_steps_fails_saying_so(prepared, tmp_path):
    output = gpu_checks.train_and_check(
        seconds=60, recipe="synth/ctc_blstm", data=str(prepared), run=str(tmp_path / "run"),
        overrides=(*TINY_MODEL[:2], "train.max_epochs=1", "train.max_frames=100000"))
    assert output.rows[0]["ok"] is False
    assert output.verdict().startswith(f"only {output.rows[0]['steps']} steps ran: 10 are needed")


def test_stage_output_is_ok_only_with_checks_that_all_hold():
    assert StageOutput().verdict() == "the stage checked nothing"
    assert StageOutput([{"n": 1}]).verdict() == "the stage checked nothing"
    assert StageOutput([{"check": "a", "ok": True}]).verdict() is None
    assert StageOutput([{"check": "a", "ok": True}], problem="pytest exited 3").verdict() == (
        "pytest exited 3")
