"""The run log ``RUN/metrics.jsonl``: one JSON line per logged step and per epoch.

The trainer appends to it; the demo, ``seqkit bench train`` and anyone plotting a run read it
back through :func:`read_run_log` instead of parsing lines by hand. Each line is a record's
fields plus ``"kind": "step"`` or ``"kind": "epoch"``; PER fields are percents named ``*_pct``.
A run started by this seqkit opens its log with one ``"kind": "run"`` line (:class:`RunRecord`):
the corpora it reads and where it started from.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from seqkit.atomic import write_atomic
from seqkit.errors import CheckpointError

METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class StepRecord:
    """One logged training step (every ``train.log_every`` steps).

    Attributes:
        epoch: 1-based epoch number.
        step: optimizer steps so far (all epochs).
        loss: this worker's batch NLL per label (nats).
        lr: learning rate of the step.
        frames_per_s: input frames per second since the previous step record (all workers).
        skipped: batches skipped so far in this epoch for non-finite loss or gradient.
    """

    epoch: int
    step: int
    loss: float
    lr: float
    frames_per_s: float
    skipped: int


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's numbers.

    Attributes:
        epoch: 1-based epoch number.
        steps: optimizer steps so far (all epochs).
        train_loss: mean training NLL per label (nats) over the epoch's batches.
        dev_loss: dev NLL per label (nats).
        dev_per_pct: dev phone error rate in % after 39-phone folding (None for an ``lm``).
        lr: learning rate at the end of the epoch.
        frames_per_s: training input frames per second (all workers).
        skipped: batches skipped for non-finite loss or gradient.
        seconds: wall-clock time of the epoch including evaluation.
        best: whether this epoch improved the best dev score (and wrote ``best.pt``).
    """

    epoch: int
    steps: int
    train_loss: float
    dev_loss: float
    dev_per_pct: float | None
    lr: float
    frames_per_s: float
    skipped: int
    seconds: float
    best: bool


@dataclass(frozen=True)
class RunRecord:
    """What a run reads, the first line of its log (written once, when the run starts).

    Attributes:
        corpora: per ``--data``, in order: ``name`` (as given), ``path`` (resolved),
            ``weight``, ``dev`` (whether its dev split is in the dev set) and ``sha256`` (of
            each file read, by name); see :class:`seqkit.data.corpus_set.CorpusRecord`.
        dev_set: ``"first"`` (the first corpus's dev split) or ``"all"`` (every corpus's).
        init: the ``--init`` model it started from (``path``, ``epoch``, ``best_score``), or
            None (from scratch).
    """

    corpora: list[dict[str, Any]]
    dev_set: str
    init: dict[str, Any] | None = None


Record = StepRecord | EpochRecord


@dataclass(frozen=True)
class Notice:
    """Something a user should know about a run, told through the trainer's ``log`` callback
    (the library prints nothing); not written to ``metrics.jsonl``.

    Attributes:
        text: one line, e.g. "runs/x has no checkpoint to resume ...: starting over".
    """

    text: str
_KINDS: dict[str, type[StepRecord] | type[EpochRecord] | type[RunRecord]] = {
    "step": StepRecord, "epoch": EpochRecord, "run": RunRecord}


@dataclass(frozen=True)
class RunLog:
    """A run's log, split by kind, each list in the order written."""

    steps: list[StepRecord]
    epochs: list[EpochRecord]
    run: RunRecord | None = None  # None: a log written before seqkit recorded it

    @property
    def epoch_seconds(self) -> float:
        """Wall-clock seconds of all completed epochs (training and dev evaluation)."""
        return sum(e.seconds for e in self.epochs)


def to_json(record: Record | RunRecord) -> dict[str, Any]:
    """A record as its ``metrics.jsonl`` object (its fields plus ``"kind"``)."""
    kind = next(k for k, cls in _KINDS.items() if isinstance(record, cls))
    return {"kind": kind, **asdict(record)}


def from_json(data: dict[str, Any], *, source: str = METRICS) -> Record | RunRecord:
    """Inverse of :func:`to_json`.

    Raises:
        CheckpointError: not a record this seqkit writes (another kind or other fields).
    """
    cls = _KINDS.get(data.get("kind", ""))
    names = {f.name for f in fields(cls)} if cls is not None else set()
    if cls is None or set(data) - {"kind"} != names:
        raise CheckpointError(
            f"{source}: line {json.dumps(data)[:120]} is not a step or epoch record of this "
            "seqkit version: start the run over with --force"
        )
    return cls(**{k: v for k, v in data.items() if k != "kind"})


def append_record(run_dir: str | os.PathLike[str], record: Record | RunRecord) -> None:
    """Append one record to ``run_dir/metrics.jsonl``."""
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(to_json(record)) + "\n")


def read_run_log(run_dir: str | os.PathLike[str]) -> RunLog:
    """Every record of ``run_dir/metrics.jsonl`` (empty when the run has not logged yet).

    Raises:
        CheckpointError: a line that is not JSON or not a record (the message names the file).
    """
    path = Path(run_dir) / METRICS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return RunLog([], [])
    records = []
    for line in filter(str.strip, lines):
        try:
            records.append(from_json(json.loads(line), source=str(path)))
        except ValueError:
            raise CheckpointError(
                f"{path} holds a line that is not JSON ({line[:60]!r}): the file was edited or "
                "truncated; start the run over with --force"
            ) from None
    runs = [r for r in records if isinstance(r, RunRecord)]
    return RunLog([r for r in records if isinstance(r, StepRecord)],
                  [r for r in records if isinstance(r, EpochRecord)], runs[0] if runs else None)


def truncate_after(run_dir: str | os.PathLike[str], step: int) -> None:
    """Drop records written after optimizer step ``step`` (a resumed run writes them again)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and _step_of(json.loads(line)) <= step]
    write_atomic(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept),
                                                  encoding="utf-8"))


def _step_of(data: dict[str, Any]) -> int:
    return int(data.get("step", data.get("steps", 0)))  # a run record: 0, always kept
