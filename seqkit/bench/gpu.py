"""``seqkit bench gpu``: what a CUDA machine must tell us about seqkit, in one run of minutes.

No GPU has run seqkit's Triton kernels yet, and when one is lent there may be minutes, not hours,
and no network (issues #19, #30). So one command runs every check in order, each stage in a
process of its own (:mod:`seqkit.bench.gpu_stage`) with its own time limit: a stage that raises,
segfaults, exits or runs past its limit is recorded as failed with its message, and the next
stage still runs. The report (``gpu-report.md`` and ``gpu-report.json``) is written atomically
after every stage, so a run killed half-way still leaves the stages it finished, and its first
lines give the verdict of each stage. A stage is "ok" only if it checked something and every
check held (:meth:`~seqkit.bench.gpu_stage.StageOutput.verdict`).

The stages (:data:`STAGES`; :mod:`seqkit.bench.gpu_checks` holds what they run):

1. ``ctc``: our CTC loss and gradient at B=8 T=1000 S=200 C=62 against the float64 CPU
   reference and torch's ``ctc_loss``.
2. ``transducer``: the transducer loss at B=4 T=300 U=80 V=500 against the float64 CPU
   reference and torchaudio's ``rnnt_loss``; the pruned path and the fused joint too.
3. ``determinism``: repeated backwards, bitwise equal under
   ``torch.use_deterministic_algorithms(True)``.
4. ``strided inputs``: transposed, sliced and expanded (stride 0) inputs and lengths.
5. ``autocast``: bf16 and fp16 training steps of the synth recipes against float32.
6. ``speed and memory``: time and peak memory (the gradient counted) against torch /
   torchaudio at the shapes above and the transducer-benchmark shape B=30 T=500 U=100 V=500.
7. ``cuda tests``: the loss test files under pytest, every case on CUDA.
8. ``corpus``: a small synthesized corpus, prepared (or ``--data``, an existing prepared one).
9. ``train ctc`` and ``train transducer``: each recipe trained from scratch for its slice; its
   loss must fall by :data:`~seqkit.bench.gpu_checks.TRAIN_LOSS_DROP`.

Refused in one line: without CUDA, and under ``TRITON_INTERPRET=1`` (the kernels would run in
the interpreter and the report would describe it, not the GPU).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import seqkit
from seqkit.atomic import write_atomic
from seqkit.bench.gpu_stage import StageOutput, one_line
from seqkit.errors import BackendUnavailableError, ConfigError

CHECKS = "seqkit.bench.gpu_checks"
# The test files with CUDA cases: their Triton cases run on CUDA tensors when CUDA is there. The
# kernel-safety file first: its cases (determinism with several warps, offsets past 2**31, no
# recompilation per batch size, no register spills) are the ones only a GPU can confirm.
CUDA_TEST_FILES = ("tests/test_kernel_safety.py", "tests/test_ctc_loss.py",
                   "tests/test_transducer_loss.py")


@dataclass(frozen=True)
class Stage:
    """One stage of the check.

    Attributes:
        name: as the report names it.
        seconds: its slice of :data:`DEFAULT_MINUTES`, start-up of its process included.
        target: ``"module:function"`` run in the stage's process with ``kwargs`` and
            ``seconds`` (its time limit).
        kwargs: JSON arguments; ``"{work}"``, ``"{data}"`` and ``"{root}"`` in a text value
            become the run's work folder, prepared corpus and checkout.
        needs_corpus: skipped when there is no prepared corpus (the corpus stage failed).
    """

    name: str
    seconds: float
    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    needs_corpus: bool = False


# Sized for an H100 with a cold Triton cache (every kernel compiles on first use): each process
# spends a few seconds importing torch and compiling before it checks anything.
STAGES: tuple[Stage, ...] = (
    Stage("ctc", 40, f"{CHECKS}:check_ctc"),
    Stage("transducer", 60, f"{CHECKS}:check_transducer"),
    Stage("determinism", 25, f"{CHECKS}:check_determinism"),
    Stage("strided inputs", 30, f"{CHECKS}:check_strided"),
    Stage("autocast", 35, f"{CHECKS}:compare_autocast"),
    Stage("speed and memory", 45, f"{CHECKS}:time_kernels"),
    Stage("cuda tests", 70, f"{CHECKS}:run_tests",
          {"files": list(CUDA_TEST_FILES), "root": "{root}", "select": "triton or cuda"}),
    Stage("corpus", 35, f"{CHECKS}:make_corpus", {"work": "{work}"}),
    Stage("train ctc", 45, f"{CHECKS}:train_and_check",
          {"recipe": "synth/ctc_blstm", "data": "{data}", "run": "{work}/ctc"},
          needs_corpus=True),
    Stage("train transducer", 45, f"{CHECKS}:train_and_check",
          {"recipe": "synth/transducer", "data": "{data}", "run": "{work}/transducer"},
          needs_corpus=True),
)
# Kept back from the stages: the report, and the parent's own start-up.
REPORT_RESERVE_MINUTES = 0.25
DEFAULT_MINUTES = round(sum(s.seconds for s in STAGES) / 60 + REPORT_RESERVE_MINUTES, 2)  # 7.42
# A stage given less than this is skipped: its process could not even import torch.
MIN_STAGE_SECONDS = 5.0
# A stage may run into the time earlier stages left unused, up to this many times its slice.
STAGE_STRETCH = 2.0
# After its time limit a stage gets SIGTERM, then SIGKILL this many seconds later.
KILL_GRACE_SECONDS = 5.0
TRUTHY = ("1", "true", "yes", "on", "y")


@dataclass(frozen=True)
class StageResult:
    """A stage as the report records it.

    Attributes:
        name: the stage (see :data:`STAGES`).
        status: ``"ok"``, ``"failed"`` (raised, died, ran out of time, or a check failed) or
            ``"skipped"``.
        planned_seconds: its slice of the budget.
        seconds: wall-clock seconds it took.
        rows, notes: as in :class:`~seqkit.bench.gpu_stage.StageOutput`.
        error: why it failed or was skipped, on one line.
    """

    name: str
    status: str
    planned_seconds: float
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class GpuReport:
    """One run of the GPU check.

    Attributes:
        device: the CUDA device's name.
        started: UTC time the run started, ISO 8601.
        budget_minutes: the total time budget.
        seconds: wall-clock seconds so far.
        versions: seqkit, torch, CUDA, Triton, torchaudio and Python versions.
        stages: the stages run so far, in order.
    """

    device: str
    started: str
    budget_minutes: float
    seconds: float
    versions: dict[str, str]
    stages: list[StageResult]

    @property
    def verdict(self) -> str:
        """``"ok"`` only if every stage ran and held; else ``"FAILED"`` or ``"INCOMPLETE"``."""
        statuses = {s.status for s in self.stages}
        if "failed" in statuses:
            return "FAILED"
        return "ok" if statuses == {"ok"} else "INCOMPLETE"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"verdict": self.verdict, **asdict(self)}


def plan_stages(minutes: float = DEFAULT_MINUTES,
                stages: tuple[Stage, ...] = STAGES) -> list[Stage]:
    """``stages`` with their slices scaled so that they and the reserve fill ``minutes``.

    Raises:
        ConfigError: ``minutes`` leaves nothing for the stages.
    """
    if not (minutes > REPORT_RESERVE_MINUTES + 0.25 and minutes < float("inf")):
        raise ConfigError(
            f"--minutes must be more than {REPORT_RESERVE_MINUTES + 0.25:g} and finite, found "
            f"{minutes}: the check is planned for {DEFAULT_MINUTES:g}")
    scale = (minutes - REPORT_RESERVE_MINUTES) * 60 / sum(s.seconds for s in stages)
    return [replace(s, seconds=s.seconds * scale) for s in stages]


def refuse_unless_gpu() -> None:
    """Raise unless the kernels would run on a CUDA device.

    Raises:
        BackendUnavailableError: ``TRITON_INTERPRET`` is set, or there is no CUDA device.
    """
    if os.environ.get("TRITON_INTERPRET", "").strip().lower() in TRUTHY:
        raise BackendUnavailableError(
            "TRITON_INTERPRET is set: the kernels would run in Triton's interpreter on the CPU, "
            "not on the GPU; unset TRITON_INTERPRET and run seqkit bench gpu again")
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "no CUDA device: seqkit bench gpu needs one; run it on a machine where "
            "torch.cuda.is_available() is true (seqkit bench losses times the CPU paths)")


def run_gpu_check(
    out: str | os.PathLike[str],
    *,
    minutes: float = DEFAULT_MINUTES,
    data: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    stages: tuple[Stage, ...] | None = None,
    stage: Callable[[str], None] | None = None,
) -> GpuReport:
    """Run every stage within its slice of ``minutes`` and write the report to ``out``.

    A stage's time limit is the end of its slice in the plan less the time already spent, so a
    stage that finishes early leaves its time to the next, up to :data:`STAGE_STRETCH` times
    its own slice. Each stage's log is kept in ``out/logs/``.

    Args:
        out: folder for ``gpu-report.md``, ``gpu-report.json``, ``logs/`` and ``work/``.
        minutes: the total budget (:func:`plan_stages` shares it).
        data: a prepared corpus to train on instead of synthesizing one.
        root: the seqkit checkout whose tests run (default: the one this module is in).
        stages: what to run (default :data:`STAGES`; tests swap in stages that fault).
        stage: called with a one-line description as each stage starts and ends.

    Returns:
        The report (also written to ``out`` after every stage).

    Raises:
        BackendUnavailableError: ``TRITON_INTERPRET`` set, or no CUDA device (before anything
            is written).
        ConfigError: ``minutes`` too small.
    """
    refuse_unless_gpu()
    plan = plan_stages(minutes, STAGES if stages is None else stages)
    out = Path(out)
    say = stage or (lambda _line: None)
    started, start = datetime.now(UTC).isoformat(timespec="seconds"), time.monotonic()
    deadline = start + (minutes - REPORT_RESERVE_MINUTES) * 60
    values = {"work": str((out / "work").resolve()),
              "data": str(Path(data).resolve()) if data else str((out / "work" / "prepared")
                                                                   .resolve()),
              "root": str(Path(root).resolve() if root else _checkout())}
    device, found = torch.cuda.get_device_name(), versions()
    results: list[StageResult] = []
    planned_end = start
    corpus_ok = data is not None
    report = None
    for item in plan:
        planned_end += item.seconds
        limit = min(planned_end, deadline) - time.monotonic()
        limit = min(limit, STAGE_STRETCH * item.seconds)
        if item.needs_corpus and not corpus_ok:
            result = skipped(item, "no prepared corpus: the corpus stage failed")
        elif item.name == "corpus" and data is not None:
            result = skipped(item, f"using the prepared corpus {data}")
        elif limit < MIN_STAGE_SECONDS:
            result = skipped(item, "no budget left")
        else:
            say(f"{item.name} (up to {limit:.0f} s)")
            kwargs = {k: _fill(v, values) for k, v in item.kwargs.items()}
            log = out / "logs" / f"{item.name.replace(' ', '-')}.log"
            result = run_stage(item, kwargs, limit_s=limit, log=log)
        if item.name == "corpus" and data is None:
            corpus_ok = result.status == "ok"
        results.append(result)
        say(f"{item.name}: {result.status}" + (f": {result.error}" if result.error else ""))
        report = GpuReport(device, started, minutes, time.monotonic() - start, found,
                           list(results))
        write_report(out, report)
    assert report is not None  # the plan is never empty
    return report


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def _checkout() -> Path:
    """The checkout whose ``tests/`` run: the one this seqkit was imported from, else (an
    installed wheel, as gpu-kit/run.sh installs it) the working directory."""
    source = Path(seqkit.__file__).resolve().parent.parent
    return source if (source / "tests").is_dir() else Path.cwd()


def run_stage(stage: Stage, kwargs: dict[str, Any], *, limit_s: float, log: Path) -> StageResult:
    """Run ``stage`` in a process of its own for at most ``limit_s`` seconds; never raises.

    The process (and any it started: it leads a new session) gets SIGTERM at the limit and
    SIGKILL :data:`KILL_GRACE_SECONDS` later. Its output goes to ``log``, with ``faulthandler``
    on, so a segfault leaves a Python stack there.

    Returns:
        ``"ok"`` if the stage returned checks that all held; ``"failed"`` with a one-line error
        if it raised, died, exited without a result, ran past its limit or a check failed.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        # -P: not the working directory first on sys.path (a checkout's seqkit/ is not the
        # installed package: seqkit.cli and seqkit.recipes live elsewhere in it)
        command = [sys.executable, "-P", "-X", "faulthandler", "-m", "seqkit.bench.gpu_stage",
                   stage.target, json.dumps({**kwargs, "seconds": limit_s}), str(result_path)]
        with open(log, "w", encoding="utf-8") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            timed_out = _wait(process, limit_s)
        seconds = time.monotonic() - begin
        data = json.loads(result_path.read_text("utf-8")) if result_path.is_file() else None
    if timed_out:
        error = f"ran past its {limit_s:.0f} s limit and was stopped{_last_line(log)}"
    elif data is None:
        error = f"{_death(process.returncode)} without a result{_last_line(log)}"
    elif "error" in data:
        with open(log, "a", encoding="utf-8") as sink:
            sink.write(data.get("traceback", ""))
        error = data["error"]
    else:
        output = StageOutput(data["rows"], data["notes"], data["problem"])
        verdict = output.verdict()
        return StageResult(stage.name, "failed" if verdict else "ok", stage.seconds, seconds,
                           output.rows, output.notes, verdict)
    return StageResult(stage.name, "failed", stage.seconds, seconds,
                       notes=[f"log: {log.name}"], error=error)


def _wait(process: subprocess.Popen[bytes], limit_s: float) -> bool:
    """Wait for ``process`` up to ``limit_s``; past it, stop its whole session. True if stopped.

    Ctrl-C (or any exception) while waiting also stops the session before it propagates.
    """
    try:
        process.wait(timeout=limit_s)
        return False
    except subprocess.TimeoutExpired:
        _stop(process)
        return True
    except BaseException:
        _stop(process)
        raise


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the stage's session, SIGKILL to what is left of it after the grace period."""
    _signal_session(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    _signal_session(process.pid, signal.SIGKILL)  # the leader and anything it started
    process.wait()


def _signal_session(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left in it


def _death(returncode: int) -> str:
    """``exited 3`` or ``killed by SIGSEGV``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited {returncode}"


def _last_line(log: Path) -> str:
    """``": <what the log says last>"``, or nothing: faulthandler's "Fatal Python error" line
    if there is one, else the last non-empty line (often the error's own words)."""
    try:
        lines = [line.strip() for line in log.read_text("utf-8", "replace").splitlines()
                 if line.strip()]
    except OSError:
        return ""
    fatal = [line for line in lines if line.startswith("Fatal Python error")]
    line = (fatal or lines or [""])[-1]
    return f": {' '.join(line.split())[:300]}" if line else ""


def skipped(stage: Stage, reason: str) -> StageResult:
    """A stage that did not run, and why."""
    return StageResult(stage.name, "skipped", stage.seconds, 0.0, error=reason)


def versions() -> dict[str, str]:
    """The versions a reader of the report needs (a package that fails to import: its error)."""
    found = {"seqkit": seqkit.__version__, "python": platform.python_version(),
             "torch": torch.__version__, "cuda": str(torch.version.cuda)}
    for name in ("triton", "torchaudio"):
        try:
            found[name] = __import__(name).__version__
        except Exception as error:  # noqa: BLE001 - the report says what is missing
            found[name] = f"not importable ({type(error).__name__})"
    return found


def write_report(out: str | os.PathLike[str], report: GpuReport) -> tuple[Path, Path]:
    """Write ``gpu-report.md`` and ``gpu-report.json`` into ``out``, each atomically.

    Both texts are rendered before either file is touched, so a report that cannot be
    rendered leaves the previous pair as it was.

    Returns:
        The markdown and JSON paths.
    """
    out = Path(out)
    texts = {"gpu-report.md": render_markdown(report),
             "gpu-report.json": json.dumps(report.to_dict(), indent=2) + "\n"}
    paths = [write_atomic(out / name, lambda tmp, text=text: tmp.write_text(text, "utf-8"))
             for name, text in texts.items()]
    return paths[0], paths[1]


def render_markdown(report: GpuReport) -> str:
    """The report as markdown: the verdict of each stage first, then each stage's rows."""
    lines = [f"# seqkit bench gpu: {report.verdict}", ""]
    lines += [f"- {s.name}: **{s.status}**" + (f": {_escape(s.error)}" if s.error else "")
              for s in report.stages]
    lines += ["", f"{report.device}; started {report.started}, {report.seconds / 60:.1f} of "
              f"{report.budget_minutes:g} minutes. "
              + ", ".join(f"{k} {v}" for k, v in report.versions.items()) + ".", "",
              "| stage | status | seconds | planned s |", "|---|---|---:|---:|"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.planned_seconds:.0f} |"
              for s in report.stages]
    for result in report.stages:
        lines += ["", f"## {result.name}: {result.status}", ""]
        if result.error:
            lines += [f"**{_escape(result.error)}**", ""]
        lines += _markdown_table(result.rows)
        lines += [f"- {_escape(note)}" for note in result.notes]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_escape(_cell(row.get(c))) for c in columns) + " |"
              for row in rows]
    return [*lines, ""]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.2e}"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


__all__ = ["STAGES", "GpuReport", "Stage", "StageOutput", "StageResult", "one_line",
           "plan_stages", "refuse_unless_gpu", "run_gpu_check", "run_stage", "write_report"]
