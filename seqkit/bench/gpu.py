"""``seqkit bench gpu``: what the first CUDA machine must tell us, in one run of about ten minutes.

No GPU has run seqkit's Triton kernels yet, and when one is lent there may be minutes, not hours
(issue #19). So one command does everything in order, each stage in its own slice of a total
time budget, and writes one report (``gpu-report.md`` and ``gpu-report.json``, atomically, after
every stage, so a run killed half-way still leaves the stages it finished):

1. ``cuda tests``: the Triton kernels' test files (every case runs on the GPU) under pytest, in a
   subprocess; counts per file and the names of failures.
2. ``loss kernels``: our Triton CTC and transducer kernels against torch's ``ctc_loss`` and
   torchaudio's ``rnnt_loss``, forward + backward, median of repeats, peak CUDA memory; the
   shapes of ``seqkit bench losses`` plus the transducer-benchmark shape B=30 T=500 U=100 V=500.
3. ``autocast``: a few Adam steps of each synth recipe's model in bf16 and fp16 autocast
   against float32 from the same weights on the same batch: the losses must stay close.
4. ``corpus``: a small synthesized corpus, prepared (or ``data``, an existing prepared one).
5. ``train synth/ctc_blstm`` and ``train pretrained transducer``: each trained for its slice
   (about three minutes) by :func:`seqkit.training.train` / the demo's PreTrans job.

A stage that raises is recorded as failed with its one-line error and the next stage runs; a
stage whose check does not hold (a failing test, losses apart) is failed with its rows kept; a
stage with no budget left, or whose input failed, is skipped.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import seqkit
from seqkit.atomic import write_atomic
from seqkit.audio.features import FeatureConfig
from seqkit.bench import ctc_loss, transducer_loss
from seqkit.corpora.timit.prepare import prepare_corpus
from seqkit.data.phones import vocabulary
from seqkit.demo import PRETRAIN_CTC_SHARE
from seqkit.errors import BackendUnavailableError, ConfigError
from seqkit.models import build_model
from seqkit.progress import ProgressFn
from seqkit.synth.corpus import synthesize_corpus
from seqkit.training import TrainSummary, load_recipe, read_run_log, train
from seqkit.training.pretrain import PretrainedTransducerRecipes, train_pretrained_transducer
from seqkit.training.trainer import cpu_has_native_bf16

# B, T, U, V of the transducer benchmark that GPU transducer losses are usually compared on
# (the shape of the warp-transducer / k2 / NeMo loss benchmarks).
TRANSDUCER_BENCHMARK_SHAPE = (30, 500, 100, 500)
CTC_SHAPES = ctc_loss.SHAPES
TRANSDUCER_SHAPES = (*transducer_loss.SHAPES, TRANSDUCER_BENCHMARK_SHAPE)

# The test files with CUDA cases: their Triton cases run on CUDA tensors when CUDA is there
# (including the `cuda`-marked ones, the only such tests); the other loss tests are CPU-only.
CUDA_TEST_FILES = ("tests/test_ctc_loss.py", "tests/test_transducer_loss.py")

# Each stage's share of the default 10-minute budget, in minutes; REPORT_RESERVE is kept back
# for the stages' overrun (a training run stops after the step that crosses its deadline, then
# evaluates) and the report.
STAGE_MINUTES: tuple[tuple[str, float], ...] = (
    ("cuda tests", 1.5),
    ("loss kernels", 1.0),
    ("autocast", 0.5),
    ("corpus", 0.75),
    ("train synth/ctc_blstm", 2.75),
    ("train pretrained transducer", 3.0),
)
DEFAULT_MINUTES = 10.0
REPORT_RESERVE_MINUTES = 0.5
# A small corpus: enough for a few epochs of each recipe in its slice of the budget.
CORPUS_SPEAKERS, CORPUS_SENTENCES = 40, 10
# Relative loss difference of autocast against float32, at most, over the compared steps.
AUTOCAST_TOLERANCE = {"bf16": 0.05, "fp16": 0.02}
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

StageFn = Callable[[float], "StageOutput"]


@dataclass(frozen=True)
class StageOutput:
    """What a stage returns.

    Attributes:
        rows: table rows (one dict per row; the same keys as far as possible).
        notes: lines of text for the report.
        problem: a one-line reason the stage's check failed (None = it held).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problem: str | None = None


@dataclass(frozen=True)
class StageResult:
    """A stage as the report records it.

    Attributes:
        name: the stage (see :data:`STAGE_MINUTES`).
        status: ``"ok"``, ``"failed"`` (raised, or its check failed) or ``"skipped"``.
        planned_minutes: its slice of the budget.
        seconds: wall-clock seconds it took.
        rows, notes: as in :class:`StageOutput`.
        error: the one-line error or failed check, or why it was skipped.
    """

    name: str
    status: str
    planned_minutes: float
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class GpuReport:
    """One run of the GPU check.

    Attributes:
        device: the CUDA device's name (or what ran it).
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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return asdict(self)


def plan_stages(minutes: float = DEFAULT_MINUTES) -> list[tuple[str, float]]:
    """Each stage's slice of ``minutes``: :data:`STAGE_MINUTES` scaled in proportion.

    The slices and :data:`REPORT_RESERVE_MINUTES` add up to ``minutes``; at the default
    10 minutes the slices are :data:`STAGE_MINUTES` themselves.

    Raises:
        ConfigError: ``minutes`` leaves nothing for the stages.
    """
    if not (minutes > REPORT_RESERVE_MINUTES and minutes < float("inf")):
        raise ConfigError(
            f"--minutes must be more than {REPORT_RESERVE_MINUTES} and finite, found {minutes}: "
            f"the check is planned for {DEFAULT_MINUTES:g}"
        )
    scale = (minutes - REPORT_RESERVE_MINUTES) / sum(m for _, m in STAGE_MINUTES)
    return [(name, m * scale) for name, m in STAGE_MINUTES]


def run_stage(name: str, fn: StageFn, *, planned_minutes: float, deadline: float) -> StageResult:
    """Run one stage within ``planned_minutes`` (and before ``deadline``), never raising.

    ``fn`` gets the seconds it may take. Any exception becomes a failed stage with the
    exception's one-line message; KeyboardInterrupt still stops the run.
    """
    seconds = min(planned_minutes * 60, deadline - time.monotonic())
    if seconds <= 1.0:
        return StageResult(name, "skipped", planned_minutes, 0.0, error="no budget left")
    start = time.monotonic()
    try:
        output = fn(seconds)
    except Exception as error:  # noqa: BLE001 - one failing stage must not end the check
        return StageResult(name, "failed", planned_minutes, time.monotonic() - start,
                           error=one_line(error))
    return StageResult(name, "failed" if output.problem else "ok", planned_minutes,
                       time.monotonic() - start, output.rows, output.notes, output.problem)


def one_line(error: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line, at most ``limit`` characters (CUDA errors run long)."""
    text = f"{type(error).__name__}: {' '.join(str(error).split()) or '(no message)'}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def skipped(name: str, planned_minutes: float, reason: str) -> StageResult:
    """A stage that did not run, and why."""
    return StageResult(name, "skipped", planned_minutes, 0.0, error=reason)


# ---------------------------------------------------------------------------------------------
# the stages


def run_tests(files: tuple[str, ...], *, root: Path, timeout_s: float) -> StageOutput:
    """Run pytest on ``files`` (relative to ``root``) in a subprocess; counts per file.

    The counts come from pytest's JUnit XML, not from its console output. Past ``timeout_s``
    pytest is interrupted (SIGINT), which stops it after the running test and still writes the
    XML: the tests that finished are counted. Fails the stage when a test fails or errs, none
    passed, or pytest was interrupted.

    Args:
        files: test files, relative to ``root``.
        root: the checkout holding them (its ``tests/conftest.py`` applies).
        timeout_s: seconds pytest may take.
    """
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise ConfigError(f"expected the test files in a seqkit checkout at {root}, found none "
                          f"of {', '.join(missing)}: run seqkit bench gpu from the repository")
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "-m", "not slow", f"--junitxml={xml}", *files]
        returncode, output, timed_out = _run_interruptible(command, root, timeout_s)
        if not xml.is_file():
            tail = " ".join(output.split()[-30:])
            return StageOutput(problem=f"pytest exited {returncode} with no results: {tail}")
        rows, failures = junit_counts(xml)
    total = {k: sum(r[k] for r in rows) for k in ("passed", "failed", "errors", "skipped")}
    notes = [f"failed: {name}" for name in failures[:20]]
    notes.append(f"command: python -m pytest -q -m 'not slow' {' '.join(files)}")
    problems = []
    if timed_out:
        problems.append(f"pytest interrupted after {timeout_s:.0f} s: the counts are the tests "
                        "that finished")
    elif returncode not in (0, 1):  # 1 = some tests failed; 2 interrupted, 3 internal error
        problems.append(f"pytest exited {returncode}: the counts are the tests that finished")
    if total["failed"] or total["errors"]:
        problems.append(f"{total['failed']} failed and {total['errors']} errors of "
                        f"{sum(total.values())}")
    elif not total["passed"]:
        problems.append("no test passed")
    return StageOutput(rows + [{"file": "total", **total}], notes, "; ".join(problems) or None)


def _run_interruptible(command: list[str], cwd: Path, timeout_s: float
                       ) -> tuple[int, str, bool]:
    """Run ``command``; past ``timeout_s`` send SIGINT, then kill if it is still running 30 s on.

    Returns:
        The exit code, stdout and stderr together, and whether the timeout was reached.
    """
    with subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        try:
            output, _ = process.communicate(timeout=timeout_s)
            return process.returncode, output, False
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)  # pytest finishes its report on Ctrl-C
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        return process.returncode, output, True


def junit_counts(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Passed / failed / errors / skipped per test file from a JUnit XML file, and the failures.

    Returns:
        Rows {"file", "passed", "failed", "errors", "skipped"} in file order, and the
        ``file::test`` names of the tests that failed or erred.
    """
    counts: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("classname", "").split(".")[-1] + ".py"
        row = counts.setdefault(name, {"file": name, "passed": 0, "failed": 0, "errors": 0,
                                       "skipped": 0})
        outcome = next((child.tag for child in case
                        if child.tag in ("failure", "error", "skipped")), "passed")
        key = {"failure": "failed", "error": "errors"}.get(outcome, outcome)
        row[key] += 1
        if key in ("failed", "errors"):
            failures.append(f"{name}::{case.get('name')}")
    return list(counts.values()), failures


def time_kernels(
    *,
    device: str = "cuda",
    repeats: int = 5,
    ctc_shapes: tuple[tuple[int, int, int, int], ...] = CTC_SHAPES,
    transducer_shapes: tuple[tuple[int, int, int, int], ...] = TRANSDUCER_SHAPES,
    backend: str | None = None,
    progress: ProgressFn | None = None,
) -> StageOutput:
    """Our CTC and transducer losses against torch / torchaudio, with peak memory.

    The rows of :func:`seqkit.bench.ctc_loss.run` and :func:`seqkit.bench.transducer_loss.run`
    with ``memory=True``, one shape at a time: a shape that fails (out of memory, a kernel
    error, no torchaudio) gets a row with its error and fails the stage, and the other shapes
    still run. ``backend="triton"`` with ``device="cpu"`` runs the kernels in Triton's
    interpreter (how this stage is tested without a GPU).
    """
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for loss, run, shapes, axes in (("ctc", ctc_loss.run, ctc_shapes, "B T S C"),
                                    ("transducer", transducer_loss.run, transducer_shapes,
                                     "B T U V")):
        for shape in shapes:
            try:
                rows += run(repeats=repeats, device=device, progress=progress, shapes=(shape,),
                            backend=backend, memory=True)
            except Exception as error:  # noqa: BLE001 - the other shapes still run
                text = " ".join(f"{a}={n}" for a, n in zip(axes.split(), shape, strict=True))
                rows.append({"loss": loss, "shape": text, "error": one_line(error, 200)})
                problems.append(f"{loss} {text}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return StageOutput(rows, [f"forward + backward, float32, median of {repeats} repeats; "
                              "ratio = ours / peer; peak = CUDA memory beyond the inputs"],
                       f"failed: {', '.join(problems)}" if problems else None)


def compare_autocast(
    *,
    device: str = "cuda",
    precisions: tuple[str, ...] = ("bf16", "fp16"),
    recipes: tuple[str, ...] = ("synth/ctc_blstm", "synth/transducer"),
    steps: int = 5,
    overrides: tuple[str, ...] = (),
    batch: tuple[int, int, int] = (8, 600, 60),
) -> StageOutput:
    """A few Adam steps in autocast against float32: same weights, same batch, same steps.

    Dropout is off so that only the precision differs. Each row compares one recipe's model in
    one precision with its float32 run: the largest relative difference of the step losses,
    against :data:`AUTOCAST_TOLERANCE`. fp16 scales the loss (``torch.amp.GradScaler``, as the
    trainer does); a step the scaler skips is counted.

    Args:
        device: where to train ("cuda"; "cpu" runs bf16 autocast on CPU, for tests).
        precisions: autocast precisions to compare, keys of :data:`AMP_DTYPES`.
        recipes: recipes whose models (and learning rates) are trained.
        steps: optimizer steps per run.
        overrides: ``--set`` overrides for every recipe (tests shrink the models).
        batch: (B, T, U) of the random batch: frames of 123-dim features, labels per utterance.
    """
    target = torch.device(device)
    if target.type == "cpu" and not cpu_has_native_bf16():
        raise BackendUnavailableError(
            "bf16 autocast on this CPU: oneDNN has no bfloat16 LSTM without AVX512-BF16 or AMX "
            "(an AVX2-only CPU); compare autocast on CUDA")
    rows: list[dict[str, Any]] = []
    for name in recipes:
        recipe = load_recipe(name, [*overrides, "model.encoder.dropout=0",
                                    "model.predictor.dropout=0"])
        inputs = _random_batch(*batch, vocab_size=len(vocabulary(recipe.data.phone_set)),
                               device=target)
        reference, _ = _train_steps(recipe, inputs, None, steps, target)
        for precision in precisions:
            losses, skipped_steps = _train_steps(recipe, inputs, AMP_DTYPES[precision], steps,
                                                 target)
            diff = max(abs(a - b) / abs(b) for a, b in zip(losses, reference, strict=True))
            rows.append({"recipe": name, "precision": precision, "steps": steps,
                         "float32 first/last loss": f"{reference[0]:.4f} / {reference[-1]:.4f}",
                         "autocast first/last loss": f"{losses[0]:.4f} / {losses[-1]:.4f}",
                         "max rel diff": diff, "tolerance": AUTOCAST_TOLERANCE[precision],
                         "scaler skipped": skipped_steps,
                         "ok": bool(diff <= AUTOCAST_TOLERANCE[precision])})
    bad = [f"{r['recipe']} {r['precision']}" for r in rows if not r["ok"]]
    problem = f"autocast losses differ from float32 beyond tolerance: {', '.join(bad)}" if bad \
        else None
    return StageOutput(rows, [f"random batch B, T, U = {batch}, dropout off, Adam at the "
                              "recipe's lr; loss = summed NLL / labels"], problem)


def _random_batch(batch: int, frames: int, labels: int, *, vocab_size: int,
                  device: torch.device) -> tuple[torch.Tensor, ...]:
    """Random features (B, T, 123), lengths, targets (B, U) in [1, V) and their lengths."""
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, frames, FeatureConfig().dim, generator=generator)  # (B, T, F)
    feat_lengths = frames - torch.randint(0, frames // 5 + 1, (batch,), generator=generator)
    targets = torch.randint(1, vocab_size, (batch, labels), generator=generator)  # (B, U)
    target_lengths = labels - torch.randint(0, labels // 5 + 1, (batch,), generator=generator)
    feat_lengths[0], target_lengths[0] = frames, labels
    return tuple(x.to(device) for x in (feats, feat_lengths, targets, target_lengths))


def _train_steps(recipe: Any, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype | None,
                 steps: int, device: torch.device) -> tuple[list[float], int]:
    """Step losses of ``steps`` Adam steps from seed-0 weights, and the steps fp16 skipped."""
    feats, feat_lengths, targets, target_lengths = inputs
    torch.manual_seed(0)
    model = build_model(recipe.model, input_dim=feats.shape[-1],
                        vocab_size=len(vocabulary(recipe.data.phone_set))).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.train.lr)
    # a small first scale: the default 65536 overflows on the first steps, which the scaler
    # then skips, and a skipped step is a difference from float32 that precision did not make
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**8) if dtype == torch.float16 \
        else None
    losses, skipped_steps = [], 0
    for _ in range(steps):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            nll = model(feats, feat_lengths, targets, target_lengths).float()  # (B,)
        loss = nll.sum() / target_lengths.sum()
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.train.grad_clip)
            optimizer.step()
        else:
            scale = scaler.get_scale()
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            skipped_steps += int(scaler.get_scale() < scale)
        losses.append(float(loss.detach()))
    return losses, skipped_steps


def make_corpus(work: Path, *, speakers: int = CORPUS_SPEAKERS,
                sentences: int = CORPUS_SENTENCES, progress: ProgressFn | None = None
                ) -> tuple[Path, StageOutput]:
    """Synthesize a small corpus into ``work/corpus`` and prepare it into ``work/prepared``.

    Returns:
        The prepared directory and the stage's rows (one per split).
    """
    corpus = synthesize_corpus(work / "corpus", speakers=speakers, sentences=sentences, seed=0,
                               jobs=os.cpu_count() or 1, force=True, progress=progress)
    prepare_corpus(work / "corpus", work / "prepared", force=True, progress=progress)
    rows = [{"split": name, "speakers": s.speakers, "utterances": s.utterances,
             "hours": s.hours} for name, s in corpus.splits.items()]
    return work / "prepared", StageOutput(rows, [f"synthesized {speakers} speakers x "
                                                 f"{sentences} sentences (seed 0) and prepared"])


def train_ctc(data_dir: Path, run_dir: Path, *, seconds: float,
              progress: ProgressFn | None = None) -> StageOutput:
    """Train ``synth/ctc_blstm`` for ``seconds`` (less a tenth for its last dev pass)."""
    _reset_peak()
    summary = train(load_recipe("synth/ctc_blstm"), data_dir, run_dir, force=True,
                    max_minutes=0.9 * seconds / 60, progress=progress)
    return StageOutput([_training_row("synth/ctc_blstm", summary, run_dir)])


def train_transducer(data_dir: Path, run_dir: Path, *, seconds: float,
                     progress: ProgressFn | None = None) -> StageOutput:
    """Train the demo's pretrained transducer (CTC encoder, phone LM, transducer) for ``seconds``.

    One budget for its three stages, shared as ``seqkit demo --model transducer`` shares it.
    """
    _reset_peak()
    recipes = PretrainedTransducerRecipes(
        ctc=load_recipe("synth/ctc_blstm"), lm=load_recipe("synth/lm"),
        transducer=load_recipe("synth/transducer"), ctc_share=PRETRAIN_CTC_SHARE)
    summary = train_pretrained_transducer(recipes, data_dir, run_dir, force=True,
                                          max_minutes=0.9 * seconds / 60, progress=progress)
    rows = [_training_row(f"pretrain {name}", None, run_dir / "pretrain" / name)
            for name in ("ctc", "lm")]
    return StageOutput([*rows, _training_row("synth/transducer", summary, run_dir)],
                       [f"CTC share of the budget: {PRETRAIN_CTC_SHARE}; peak memory is of "
                        "the three stages together"])


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _training_row(name: str, summary: TrainSummary | None, run_dir: Path) -> dict[str, Any]:
    """One run's epochs, steps, throughput, best dev score and (if CUDA) peak memory.

    Steps and frames/s come from the step records when no epoch finished within the budget.
    """
    log = read_run_log(run_dir)
    epochs, records = log.epochs, log.steps
    rates = [e.frames_per_s for e in epochs] or [r.frames_per_s for r in records]
    return {
        "run": name,
        "epochs": len(epochs),
        "steps": max([e.steps for e in epochs] + [r.step for r in records], default=0),
        "frames/s": statistics.mean(rates) if rates else None,
        "best dev PER %": min((e.dev_per_pct for e in epochs if e.dev_per_pct is not None),
                              default=None),
        "last dev loss": epochs[-1].dev_loss if epochs else None,
        "stopped": summary.stopped if summary is not None else "",
        "peak MiB": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
        else None,
    }


# ---------------------------------------------------------------------------------------------
# the run and its report


def run_gpu_check(
    out: str | os.PathLike[str],
    *,
    minutes: float = DEFAULT_MINUTES,
    data: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    stage: Callable[[str], None] | None = None,
    progress: ProgressFn | None = None,
) -> GpuReport:
    """Run every stage in its slice of ``minutes`` and write the report to ``out``.

    Args:
        out: folder for ``gpu-report.md``, ``gpu-report.json`` and ``work/`` (corpus, runs).
        minutes: the total budget (:func:`plan_stages` shares it).
        data: a prepared corpus to train on instead of synthesizing one.
        root: the seqkit checkout whose tests run (default: the one this module is in).
        stage: called with a one-line description as each stage starts.
        progress: ``progress(description, done, total)`` for the long stages.

    Returns:
        The report (also written to ``out`` after every stage).

    Raises:
        BackendUnavailableError: no CUDA device (before anything is written).
        ConfigError: ``minutes`` too small.
    """
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "no CUDA device: seqkit bench gpu needs one; run it on a machine where "
            "torch.cuda.is_available() is true (seqkit bench losses times the CPU paths)")
    plan = plan_stages(minutes)
    out = Path(out)
    say = stage or (lambda _line: None)
    started, start = datetime.now(UTC).isoformat(timespec="seconds"), time.monotonic()
    deadline = start + (minutes - REPORT_RESERVE_MINUTES) * 60
    functions = _stage_functions(out / "work", Path(root) if root else _checkout(),
                                 Path(data) if data else None, progress)
    results: list[StageResult] = []
    report = None
    for name, planned in plan:
        say(f"{name} ({planned:.1f} min)")
        results.append(functions[name](planned, deadline))
        torch.cuda.empty_cache()
        report = GpuReport(torch.cuda.get_device_name(), started, minutes,
                           time.monotonic() - start, versions(), list(results))
        write_report(out, report)
    assert report is not None  # the plan is never empty
    return report


def _checkout() -> Path:
    """The repository this seqkit was imported from (its ``tests/`` live there)."""
    return Path(seqkit.__file__).resolve().parent.parent


def _stage_functions(work: Path, root: Path, data: Path | None, progress: ProgressFn | None
                     ) -> dict[str, Callable[[float, float], StageResult]]:
    """Each stage's call ``(planned_minutes, deadline) -> StageResult``; ``data`` is filled
    in by the corpus stage for the training stages."""
    prepared: dict[str, Path | None] = {"path": data}

    def stage(name: str, fn: StageFn) -> Callable[[float, float], StageResult]:
        return lambda planned, deadline: run_stage(name, fn, planned_minutes=planned,
                                                   deadline=deadline)

    def corpus(planned: float, deadline: float) -> StageResult:
        if data is not None:
            return skipped("corpus", planned, f"using the prepared corpus {data}")

        def build(_seconds: float) -> StageOutput:
            prepared["path"], output = make_corpus(work, progress=progress)
            return output

        return run_stage("corpus", build, planned_minutes=planned, deadline=deadline)

    def training(name: str, fn: Callable[..., StageOutput], run: str
                 ) -> Callable[[float, float], StageResult]:
        def call(planned: float, deadline: float) -> StageResult:
            if prepared["path"] is None:
                return skipped(name, planned, "no prepared corpus: the corpus stage failed")
            def go(seconds: float) -> StageOutput:
                return fn(prepared["path"], work / run, seconds=seconds, progress=progress)

            return run_stage(name, go, planned_minutes=planned, deadline=deadline)
        return call

    return {
        "cuda tests": stage("cuda tests", lambda s: run_tests(CUDA_TEST_FILES, root=root,
                                                              timeout_s=s)),
        "loss kernels": stage("loss kernels", lambda _s: time_kernels(progress=progress)),
        "autocast": stage("autocast", lambda _s: compare_autocast()),
        "corpus": corpus,
        "train synth/ctc_blstm": training("train synth/ctc_blstm", train_ctc, "ctc"),
        "train pretrained transducer": training("train pretrained transducer",
                                                train_transducer, "transducer"),
    }


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
    """The report as markdown: a summary of the stages, then each stage's table and notes."""
    lines = [f"# seqkit bench gpu: {report.device}", "",
             f"Started {report.started}, {report.seconds / 60:.1f} of "
             f"{report.budget_minutes:g} minutes. "
             + ", ".join(f"{k} {v}" for k, v in report.versions.items()) + ".", "",
             "| stage | status | seconds | planned min | error |", "|---|---|---:|---:|---|"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.planned_minutes:.2f} | "
              f"{_escape(s.error or '')} |" for s in report.stages]
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
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
