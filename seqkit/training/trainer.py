"""The training loop: CTC, transducer and phone-LM recipes, resumable and distributed.

One process::

    train(load_recipe("recipes/synth/ctc_blstm.toml"), "prepared", "runs/ctc")
    train(load_recipe("synth/finetune"), ["held_out", "mine"], "runs/mine", init="demo/run-ctc")

N processes (the same code; the launcher sets RANK / WORLD_SIZE)::

    seqkit train recipes/synth/ctc_blstm.toml --data prepared --out runs/ctc --nproc 2
    torchrun --nnodes 2 --nproc-per-node 4 ... -m seqkit.cli.main train ...

Read it top to bottom: :func:`train` builds a :class:`_Run` (restoring ``last.pt`` on resume),
then each epoch is :func:`_train_epoch` (one :func:`_step` per global batch) followed by
:func:`_end_epoch` (dev loss and PER, plateau LR, early stopping, ``last.pt`` / ``best.pt``,
curves). The batches come ready from :class:`seqkit.data.pipeline.TrainingPipeline` (corpora
mixed, bucketed, sharded, perturbed, masked). A step takes this worker's share of the global
batch, (optionally) adds weight noise, forwards to per-utterance NLLs normalized by the global
batch's label count, backpropagates, removes the noise, clips and updates. Only rank 0 writes
files.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.parallel import DistributedDataParallel

from seqkit.atomic import remove_debris, write_atomic
from seqkit.data.batching import FeatureDataset
from seqkit.data.corpus_set import (
    Corpus,
    CorpusRecord,
    DevSet,
    first_change,
    record_corpora,
    resolve_corpora,
)
from seqkit.data.phones import vocabulary
from seqkit.data.pipeline import TrainingData, TrainingPipeline, load_training_data
from seqkit.errors import CheckpointError, ConfigError, OutputExistsError, TrainingError
from seqkit.locks import output_lock
from seqkit.models import ModelConfig, build_model
from seqkit.models.checkpoint import (
    BEST,
    LAST,
    InitModel,
    init_from_pretrained,
    load_checkpoint,
    load_init,
    model_payload,
    read_init,
    resolve_checkpoint,
    save_checkpoint,
    saved_stats,
)
from seqkit.progress import ProgressFn
from seqkit.training import distributed
from seqkit.training.config import Amp, Optimizer, RecipeConfig, recipe_to_toml, run_to_toml
from seqkit.training.dev_scores import forward_nll, label_count, measure_dev
from seqkit.training.plots import plot_curves
from seqkit.training.runlog import (
    METRICS,
    EpochRecord,
    Notice,
    Record,
    RunRecord,
    StepRecord,
    append_record,
    truncate_after,
)
from seqkit.training.schedule import PlateauSchedule, budget_factor

if TYPE_CHECKING:
    from seqkit.audio.features import FeatureStats

LogFn = Callable[[Record | Notice], None]

RUN_FILES = (BEST, LAST, METRICS, "curves.png", "config.toml")

# A test hook: "STEP:SIGNAL" (e.g. "3:SIGKILL") makes the trainer send itself SIGNAL when STEP
# optimizer steps are done (0: before the first), so tests can kill a run at a chosen moment.
KILL_HOOK = "SEQKIT_TEST_KILL_AT_STEP"


class Terminated(KeyboardInterrupt):
    """SIGTERM during training: handled like Ctrl-C (``last.pt`` written, run resumable).

    ``timeout``, systemd, Slurm and Kubernetes stop a job with SIGTERM, whose default action
    ends the process without a checkpoint.
    """


def stop_signal_of(stop: KeyboardInterrupt) -> int:
    """The signal behind an interruption: ``SIGTERM`` for :class:`Terminated`, else ``SIGINT``."""
    return signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT


def interruption_of(stop_signal: int | None) -> KeyboardInterrupt:
    """The interruption a signal stands for, the inverse of :func:`stop_signal_of`:
    :class:`Terminated` for ``SIGTERM``, else :class:`KeyboardInterrupt` (Ctrl-C)."""
    return Terminated() if stop_signal == signal.SIGTERM else KeyboardInterrupt()


@dataclass(frozen=True)
class TrainSummary:
    """What a run did.

    Attributes:
        run_dir: the run directory.
        epochs: one record per completed epoch (including those before a resume).
        best_epoch: epoch of ``best.pt`` (None if no epoch completed).
        best_score: its dev score, named by ``best_metric``.
        best_metric: ``"dev_per_pct"`` (dev PER in %) or, for an ``lm``, ``"dev_loss"``.
        steps: optimizer steps in total.
        stopped: why the run ended: ``"max_epochs"``, ``"early_stopping"``,
            ``"max_minutes"``, ``"max_steps"`` or ``"interrupted"`` (Ctrl-C or SIGTERM).
        seconds: wall-clock time of this invocation.
        stop_signal: what interrupted it: ``signal.SIGINT`` (Ctrl-C) or ``signal.SIGTERM``;
            None when ``stopped`` is not ``"interrupted"``. A command exits 128 + it, as a
            process that signal ended would (130, 143), which is what ``timeout``, systemd
            and Slurm read.
    """

    run_dir: Path
    epochs: list[EpochRecord]
    best_epoch: int | None
    best_score: float | None
    best_metric: str
    steps: int
    stopped: str
    seconds: float
    stop_signal: int | None = None


@dataclass
class _RunState:
    """Training state that goes into ``last.pt`` besides model, optimizer and schedule."""

    epoch: int = 0  # 0-based epoch in progress
    position: int = 0  # global batches done in this epoch
    step: int = 0  # optimizer steps done
    best_score: float = math.inf  # dev PER % (dev loss for an lm) of best.pt
    best_epoch: int | None = None
    epochs_since_best: int = 0
    history: list[EpochRecord] = field(default_factory=list)


@dataclass
class _EpochMeter:
    """Sums over the epoch's steps (this invocation's share when resumed mid-epoch)."""

    start: float
    loss_sum: float = 0.0  # NLL of the updated batches (this worker)
    labels: float = 0.0
    frames: float = 0.0  # input frames of all global batches (all workers)
    skipped: int = 0
    window_start: float = 0.0  # since the last step record
    window_frames: int = 0


@dataclass
class _Run:
    """Everything one training run holds; the helpers below read and update it."""

    recipe: RecipeConfig
    ctx: distributed.DistributedContext
    run_dir: Path
    data: TrainingPipeline  # every step's batch
    dev_set: FeatureDataset
    stats: FeatureStats | None  # what the features are normalized with (checkpoints keep it)
    model: torch.nn.Module  # unwrapped: what checkpoints hold and dev scores use
    net: torch.nn.Module  # what a step calls: the DDP wrapper when there are several workers
    optimizer: torch.optim.Optimizer
    schedule: PlateauSchedule
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    corpora: list[CorpusRecord]  # what it reads: config.toml, metrics.jsonl, checkpoints
    dev_choice: DevSet
    init: dict[str, Any] | None  # the --init model it started from (path, epoch, best score)
    deadline: float  # time.monotonic() at which max_minutes runs out (inf: no limit)
    progress: ProgressFn | None
    log: LogFn | None
    state: _RunState = field(default_factory=_RunState)
    meter: _EpochMeter = field(default_factory=lambda: _EpochMeter(start=0.0))
    anneal_start: float = 0.0  # time.monotonic() when the loop started: the budget left then
    bad_in_row: int = 0
    kill_at: tuple[int, int] | None = None  # the KILL_HOOK test hook: (step, signal)
    stop_signal: int | None = None  # SIGINT or SIGTERM, once one interrupted the run

    @property
    def kind(self) -> str:
        return self.recipe.model.kind

    @property
    def frozen_encoder_epochs(self) -> int:
        """Epochs at the start that leave the pretrained encoder as it is (0: none)."""
        t = self.recipe.train
        return t.freeze_encoder_epochs if t.init_encoder else 0


@dataclass(frozen=True)
class _StepResult:
    nll: float  # this worker's summed NLL
    labels: int  # this worker's label count
    updated: bool  # False: non-finite loss or gradient, batch skipped
    lr: float


# ---------------------------------------------------------------------------------------------
# the loop


def train(
    recipe: RecipeConfig,
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    run_dir: str | os.PathLike[str],
    *,
    data_weights: Mapping[str, float] | None = None,
    dev: str = "first",
    init: str | os.PathLike[str] | None = None,
    resume: bool = False,
    force: bool = False,
    max_epochs: int | None = None,
    max_minutes: float | None = None,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
) -> TrainSummary:
    """Train a recipe on one or several prepared corpora, writing checkpoints and logs to
    ``run_dir``.

    Args:
        recipe: model, training and data settings (:func:`seqkit.training.load_recipe`).
        data: a ``seqkit data prepare`` output (``train.jsonl``, ``dev.jsonl``,
            ``stats.json``), or several: the run trains on the union of their train splits,
            each with its own feature store, normalized with statistics over the union
            (:mod:`seqkit.data.corpus_set`).
        run_dir: where ``best.pt``, ``last.pt``, ``config.toml``, ``metrics.jsonl`` and
            ``curves.png`` go.
        data_weights: ``{corpus: weight}``, a corpus named by its ``data`` path or folder
            name: it contributes ``round(weight x its train utterances)`` utterances to each
            epoch (a fresh random subset below 1, repeats above). Default: 1 each.
        dev: ``"first"``: the first corpus's dev split scores each epoch (LR schedule, early
            stopping, ``best.pt``); ``"all"``: every corpus's dev split, pooled.
        init: start from a trained model of the same kind, shape, phone set and front end: a
            run dir (its ``best.pt``) or a ``.pt`` file. Its weights only: the optimizer, LR
            schedule, epochs and early stopping start afresh. Its normalization statistics
            are kept (the weights were trained on them), not recomputed on ``data``.
        resume: continue from ``run_dir/last.pt`` exactly (same next batch, same LR); a run
            stopped before its first checkpoint (no ``last.pt``, no ``best.pt``) starts over,
            with a :class:`Notice`. Refused when the corpora (by content), their weights or
            the dev choice differ from what the run recorded.
        force: start over in an existing run directory (its run files are removed).
        max_epochs: overrides ``train.max_epochs``.
        max_minutes: overrides ``train.max_minutes`` (0 = no limit).
        progress: called as ``progress("epoch N", batches_done, batches_total)``.
        log: called with every :class:`StepRecord` and :class:`EpochRecord` written to
            ``metrics.jsonl``, and with a :class:`Notice` for what the user should know
            (a resume that starts over, a damaged feature store rebuilt, the corpora and dev
            set of a run of several, the model fine-tuned from).

    The run records its corpora (folder, weight, dev split, SHA-256 of the files read) and
    the ``init`` model in ``config.toml`` (a ``[run]`` table, which :func:`load_recipe`
    ignores), in the first line of ``metrics.jsonl`` (a :class:`RunRecord`) and in its
    checkpoints.

    ``run_dir`` is locked for the whole call (:func:`seqkit.locks.output_lock`), before any
    work, so a second run into it fails at once instead of mixing its results in; temp files
    that killed runs left in it are removed.

    Returns:
        What happened; KeyboardInterrupt and SIGTERM are caught, ``last.pt`` written and
        ``stopped="interrupted"`` returned, with the signal in ``stop_signal``.

    Raises:
        OutputExistsError: ``run_dir`` exists and neither ``resume`` nor ``force`` is set.
        OutputLockedError: another process trains into ``run_dir``.
        CheckpointError: nothing to resume, ``last.pt`` does not fit the recipe or recorded
            other corpora, or ``init`` is another kind of model (shape, phone set, front end).
        CorpusError, AudioError, ConfigError: bad data or settings (a weight outside
            (0, 100] or for no corpus, a corpus given twice, a changed prepared folder).
        TrainingError: ``train.max_bad_steps`` non-finite losses or gradients in a row.
    """
    started = time.monotonic()
    run_dir = Path(run_dir)
    sources = _Sources(resolve_corpora(data, data_weights), _dev_choice(dev),
                       Path(init) if init is not None else None)
    max_epochs = recipe.train.max_epochs if max_epochs is None else max_epochs
    max_minutes = recipe.train.max_minutes if max_minutes is None else max_minutes
    if max_epochs < 1:
        raise ConfigError(f"--max-epochs must be >= 1, found {max_epochs}")
    # read (and refused) before --force clears run_dir; a resumed run's is checked on last.pt
    init_read = (_init_of(recipe, sources, None, run_dir)
                 if sources.init is not None and not resume else None)
    ctx = distributed.setup()
    lock = (output_lock(run_dir, command="seqkit train") if ctx.is_main
            else contextlib.nullcontext())
    try:
        with lock, _sigterm_as_interrupt(), _created_dir(run_dir, ctx.is_main):
            resume = _prepare_run_dir(run_dir, resume=resume, force=force, is_main=ctx.is_main,
                                      log=log)
            distributed.barrier(ctx)
            deadline = started + max_minutes * 60 if max_minutes > 0 else math.inf
            run = _build_run(recipe, sources, run_dir, ctx, resume=resume, deadline=deadline,
                             progress=progress, log=log, init_read=init_read)
            stopped = _run_epochs(run, max_epochs)
            if stopped != "interrupted":
                distributed.barrier(ctx)  # rank 0 has written its files
        state = run.state
        return TrainSummary(
            run_dir=run_dir,
            epochs=list(state.history),
            best_epoch=state.best_epoch,
            best_score=state.best_score if state.best_epoch is not None else None,
            best_metric=_best_metric(recipe.model.kind),
            steps=state.step,
            stopped=stopped,
            seconds=time.monotonic() - started,
            stop_signal=run.stop_signal,
        )
    finally:
        distributed.teardown(ctx)


def _run_epochs(run: _Run, max_epochs: int) -> str:
    """Train until a limit; returns why it stopped (see :attr:`TrainSummary.stopped`)."""
    run.anneal_start = time.monotonic()  # the budget left when training proper starts
    try:
        while run.state.epoch < max_epochs:
            stopped = _train_epoch(run)
            if stopped is not None:
                _save(run, LAST)  # stopped mid-epoch: last.pt keeps the position
                _plot(run)  # so that a run cut short in epoch 1 still has its curves.png
                return stopped
            if _end_epoch(run):
                return "early_stopping"
        return "max_epochs"
    except KeyboardInterrupt as stop:
        _save(run, LAST)
        run.stop_signal = stop_signal_of(stop)
        return "interrupted"


def _train_epoch(run: _Run) -> str | None:
    """Steps from the current position to the end of the epoch; the reason if stopped early."""
    state, t = run.state, run.recipe.train
    batches = run.data.global_batches(state.epoch)
    now = time.monotonic()
    run.meter = _EpochMeter(start=now, window_start=now)
    run.model.train()
    if _freeze_encoder_for_epoch(run):
        _wrap(run)
    while state.position < len(batches):
        if t.max_steps and state.step >= t.max_steps:
            return "max_steps"
        if run.kill_at is not None and run.kill_at[0] == state.step:
            os.kill(os.getpid(), run.kill_at[1])
        global_batch = batches[state.position]
        result = _step(run, global_batch)
        if result is None:
            return "max_minutes"
        _count_step(run, result, run.data.frames(global_batch))
        if run.progress is not None and run.ctx.is_main:
            run.progress(f"epoch {state.epoch + 1}", state.position, len(batches))
    return None


def _step(run: _Run, global_batch: list[int]) -> _StepResult | None:
    """One optimizer step on this worker's share of a global batch; None when out of time."""
    t, ctx = run.recipe.train, run.ctx
    indices = run.data.local_share(global_batch)
    batch = run.data.batch(indices, run.state.step).to(ctx.device)  # augmented, seeded by step
    lr = run.schedule.lr(run.state.step)
    if t.budget_anneal and math.isfinite(run.deadline):
        lr *= budget_factor((run.deadline - time.monotonic())
                            / max(run.deadline - run.anneal_start, 1e-9))
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with _weight_noise(run):
        autocast = (torch.autocast(ctx.device.type, dtype=run.amp_dtype)
                    if run.amp_dtype is not None else contextlib.nullcontext())
        with autocast:
            nll = forward_nll(run.net, run.kind, batch).float()  # (B,)
        # Sum over the global batch / its label count; DDP averages gradients over workers,
        # so scale by world_size to get the global mean.
        n_labels = label_count(run.data.train_set, global_batch, run.kind)
        loss = nll.sum() * (ctx.world_size / max(n_labels, 1))
        # one all-reduce: every worker skips the same batches and stops at the same step
        bad, out_of_time = distributed.any_flag(
            ctx, not bool(torch.isfinite(loss)), time.monotonic() > run.deadline)
        if out_of_time:
            return None
        if not bad:
            run.optimizer.zero_grad(set_to_none=True)
            (run.scaler.scale(loss) if run.scaler is not None else loss).backward()
    updated = not bad and _clip_and_update(run)
    if updated:
        run.bad_in_row = 0
    else:
        _skip_batch(run)
    return _StepResult(float(nll.detach().sum()),
                       label_count(run.data.train_set, indices, run.kind), updated, lr)


def _end_epoch(run: _Run) -> bool:
    """Dev scores, LR schedule, epoch record, checkpoints and curves; True = stop early."""
    state, t, ctx, meter = run.state, run.recipe.train, run.ctx, run.meter
    train_seconds = time.monotonic() - meter.start
    loss_sum, labels = distributed.sum_values(ctx, meter.loss_sum, meter.labels)
    dev = measure_dev(run.model, run.kind, run.dev_set, max_frames=t.max_frames, ctx=ctx)
    run.schedule.update(dev.score)
    improved = dev.score < state.best_score
    if improved:
        state.best_score, state.best_epoch, state.epochs_since_best = dev.score, state.epoch + 1, 0
    else:
        state.epochs_since_best += 1
    record = EpochRecord(
        epoch=state.epoch + 1, steps=state.step, train_loss=loss_sum / max(labels, 1.0),
        dev_loss=dev.loss, dev_per_pct=dev.per_pct, lr=run.optimizer.param_groups[0]["lr"],
        frames_per_s=meter.frames / max(train_seconds, 1e-9), skipped=meter.skipped,
        seconds=time.monotonic() - meter.start, best=improved)
    state.history.append(record)
    state.epoch, state.position = state.epoch + 1, 0
    _emit(run, record)
    _save(run, LAST)
    if improved:
        _save(run, BEST)
    _plot(run)
    return bool(t.patience and state.epochs_since_best >= t.patience)


# ---------------------------------------------------------------------------------------------
# inside a step


@contextlib.contextmanager
def _weight_noise(run: _Run) -> Iterator[None]:
    """Weight noise (Graves 2011) for one batch's forward and backward, removed afterwards.

    Seeded by the step, so every worker adds the same noise and a resumed run the same as an
    uninterrupted one.
    """
    t = run.recipe.train
    noise: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    if t.weight_noise > 0:
        gen = torch.Generator(run.ctx.device).manual_seed(t.seed * 1_000_003 + run.state.step)
        with torch.no_grad():
            for p in run.model.parameters():
                eps = torch.randn(p.shape, generator=gen, device=p.device,
                                  dtype=p.dtype) * t.weight_noise
                p.add_(eps)
                noise.append((p, eps))
    try:
        yield
    finally:
        with torch.no_grad():
            for p, eps in noise:
                p.sub_(eps)


def _clip_and_update(run: _Run) -> bool:
    """Unscale (fp16), clip, and step if the gradient norm is finite; whether it stepped."""
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
    max_norm = run.recipe.train.grad_clip if run.recipe.train.grad_clip > 0 else math.inf
    norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm)
    if not bool(torch.isfinite(norm)):
        return False
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    return True


def _skip_batch(run: _Run) -> None:
    """Drop a batch with a non-finite loss or gradient; too many in a row end the run."""
    t = run.recipe.train
    run.optimizer.zero_grad(set_to_none=True)
    run.meter.skipped += 1
    run.bad_in_row += 1
    if run.bad_in_row >= t.max_bad_steps:
        raise TrainingError(
            f"{run.bad_in_row} non-finite losses or gradients in a row (epoch "
            f"{run.state.epoch + 1}, step {run.state.step}): likely causes are a learning rate "
            f"too high (train.lr={t.lr}), fp16 overflow (use train.amp=bf16 or off), NaN/inf "
            "features (check the audio and stats.json), or CTC targets longer than the frames "
            "(lower model.encoder.stack)"
        )


def _count_step(run: _Run, result: _StepResult, batch_frames: int) -> None:
    """Advance the position, add the step to the epoch's sums, log every ``log_every`` steps."""
    state, meter = run.state, run.meter
    if result.updated:
        meter.loss_sum += result.nll
        meter.labels += result.labels
    meter.frames += batch_frames
    meter.window_frames += batch_frames
    state.position += 1
    state.step += 1
    if state.step % run.recipe.train.log_every == 0:
        now = time.monotonic()
        _emit(run, StepRecord(
            epoch=state.epoch + 1, step=state.step, loss=result.nll / max(result.labels, 1),
            lr=result.lr, frames_per_s=meter.window_frames / max(now - meter.window_start, 1e-9),
            skipped=meter.skipped))
        meter.window_start, meter.window_frames = now, 0


# ---------------------------------------------------------------------------------------------
# setup


def _build_run(
    recipe: RecipeConfig, sources: _Sources, run_dir: Path, ctx: distributed.DistributedContext,
    *, resume: bool, deadline: float, progress: ProgressFn | None, log: LogFn | None,
    init_read: tuple[InitModel | None, dict[str, Any] | None] | None = None,
) -> _Run:
    """Data, model, optimizer and schedule; restored from ``last.pt`` on resume.

    Cheap checks come before the feature stores are built: the corpora against their checksums
    and (on resume) against what the run recorded, an ``--init`` model against the recipe
    (``init_read``: what :func:`train` already read of it, for a run that starts afresh).
    """
    t = recipe.train
    _set_threads(recipe, ctx)
    text_only = recipe.model.kind == "lm"
    saved = load_checkpoint(run_dir / LAST) if resume else None
    init, init_record = (init_read if saved is None and init_read is not None
                         else _init_of(recipe, sources, saved, run_dir))
    stats_given = init.stats if init is not None else _saved_init_stats(saved)
    records = record_corpora(sources.corpora, dev=sources.dev,
                             stats_read=not text_only and init_record is None)
    if saved is not None and saved.get("corpora") is not None:
        change = first_change([CorpusRecord.from_dict(r) for r in saved["corpora"]], records)
        if change is not None:
            raise CheckpointError(
                f"cannot resume {run_dir}: its corpora changed, {change}: resume with the --data "
                f"it trained on (listed in {run_dir / 'config.toml'}) or start over with --force")
    loaded = _load_data(recipe, sources, records, stats_given, ctx, progress, log)
    pipeline = TrainingPipeline(
        loaded.train, stats=loaded.stats,
        weights=[c.weight for c, r in zip(sources.corpora, records, strict=True) if r.utterances],
        features=None if text_only else recipe.data.features, augmentation=t.augmentation,
        max_frames=t.max_frames, bucket_width=recipe.data.bucket_width, seed=t.seed,
        rank=ctx.rank, world_size=ctx.world_size)
    input_dim = pipeline.train_set.feats[0].shape[1] if pipeline.train_set.feats else 0
    torch.manual_seed(t.seed)  # same initial weights on every worker
    model = build_model(recipe.model, input_dim=input_dim, vocab_size=len(pipeline.vocab))
    model.to(ctx.device)
    for part, source in (("encoder", t.init_encoder), ("predictor", t.init_predictor)):
        if source:
            init_from_pretrained(model, source, part, vocab=list(pipeline.vocab))
    if init is not None:
        load_init(model, init)
    amp_dtype = autocast_dtype(recipe, ctx.device)
    run = _Run(
        recipe=recipe, ctx=ctx, run_dir=run_dir, data=pipeline, dev_set=loaded.dev,
        stats=loaded.stats, model=model, net=model, optimizer=_make_optimizer(recipe, model),
        schedule=PlateauSchedule(t.lr, t.warmup_steps, t.lr_factor, t.lr_patience, t.min_lr),
        scaler=torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None,
        amp_dtype=amp_dtype, corpora=records, dev_choice=sources.dev, init=init_record,
        deadline=deadline, progress=progress, log=log, kill_at=_kill_hook())
    if saved is not None:
        _restore(run, saved)
    if ctx.is_main:
        toml = recipe_to_toml(recipe) + "\n" + run_to_toml(
            [r.to_dict() for r in records], dev=sources.dev.value,
            init=init_record["path"] if init_record else None)
        write_atomic(run_dir / "config.toml", lambda tmp: tmp.write_text(toml, encoding="utf-8"))
        if saved is None:  # a new run: what it reads heads its log
            append_record(run_dir, RunRecord([r.to_dict() for r in records], sources.dev.value,
                                             init_record))
        _tell(run, loaded, sources, records, init)
    _freeze_encoder_for_epoch(run)
    _wrap(run)
    return run


@dataclass(frozen=True)
class _Sources:
    """What a run reads, as :func:`train` was asked: corpora, dev choice, ``--init``."""

    corpora: list[Corpus]
    dev: DevSet
    init: Path | None


def _dev_choice(dev: str) -> DevSet:
    try:
        return DevSet(dev)
    except ValueError:
        raise ConfigError(f"--dev must be first or all, found {dev!r}") from None


def _init_of(recipe: RecipeConfig, sources: _Sources, saved: dict[str, Any] | None,
             run_dir: Path) -> tuple[InitModel | None, dict[str, Any] | None]:
    """The ``--init`` model to load (None on resume: ``last.pt`` has the weights) and the
    record of where the run started from (a resumed run's own)."""
    if saved is not None:
        recorded = saved.get("init")
        if sources.init is not None and (
                recorded is None or Path(recorded["path"]) != resolve_checkpoint(sources.init)):
            raise CheckpointError(
                f"cannot resume {run_dir} with --init {sources.init}: it started from "
                f"{recorded['path'] if recorded else 'scratch'}; resume without --init or start "
                "over with --force")
        return None, recorded
    if sources.init is None:
        return None, None
    t = recipe.train
    if t.init_encoder or t.init_predictor:
        raise ConfigError(
            "--init loads the whole model, and train.init_encoder / train.init_predictor would "
            "overwrite parts of it: remove them (--set train.init_encoder= --set "
            "train.init_predictor=)")
    phone_set = recipe.data.phone_set
    init = read_init(sources.init, config=recipe.model, phone_set=phone_set,
                     vocab=list(vocabulary(phone_set)),
                     features=None if recipe.model.kind == "lm" else recipe.data.features)
    return init, {"path": str(init.path), "epoch": init.epoch, "best_score": init.best_score}


def _saved_init_stats(saved: dict[str, Any] | None) -> FeatureStats | None:
    """A resumed fine-tuning run's statistics: those of the model it started from, which its
    checkpoints carry (a run from scratch takes its corpora's again: None)."""
    return saved_stats(saved) if saved is not None and saved.get("init") is not None else None


def _tell(run: _Run, loaded: TrainingData, sources: _Sources, records: list[CorpusRecord],
          init: InitModel | None) -> None:
    """Notices of what a run reads: its corpora when several, statistics not taken as they are
    from one folder, the model it is fine-tuned from."""
    if run.log is None:
        return
    if len(records) > 1:
        parts = []
        for c, r in zip(sources.corpora, records, strict=True):
            share = (f", weight {c.weight:g}: {max(1, round(c.weight * r.utterances))} per "
                     "epoch" if c.weight != 1 and r.utterances else "")
            parts.append(f"{c.name} ({r.utterances or 'dev only, no'} train utterances{share})")
        dev = [r.name for r in records if r.dev]
        which = ("the first corpus's dev split" if sources.dev == DevSet.FIRST
                 else "every corpus's dev split, pooled")
        hint = "; --dev all pools every corpus's" if sources.dev == DevSet.FIRST else ""
        run.log(Notice(f"training on {len(records)} corpora: {', '.join(parts)}; dev set: "
                       f"{which} ({', '.join(dev)}: {len(run.dev_set)} utterances{hint})"))
    if loaded.stats_source:
        run.log(Notice(f"features normalized with the statistics of {loaded.stats_source}"))
    if init is not None:
        best = (f", best dev {'PER' if run.kind != 'lm' else 'loss'} {init.best_score:.2f}"
                + ("%" if run.kind != "lm" else "") if init.best_score is not None else "")
        epoch = f"epoch {init.epoch}" if init.epoch is not None else "no epoch recorded"
        frames = (f"; features normalized with its statistics ({init.stats.frames} frames), "
                  "not the corpora's" if init.stats is not None else "")
        run.log(Notice(f"fine-tuning from {init.path} ({epoch}{best}): its weights only, with a "
                       f"fresh optimizer and LR schedule{frames}"))


def _freeze_encoder_for_epoch(run: _Run) -> bool:
    """Freeze or thaw a pretrained encoder as the current epoch asks; whether that changed it."""
    if not run.frozen_encoder_epochs:
        return False
    frozen = run.state.epoch < run.frozen_encoder_epochs
    was_frozen = not any(p.requires_grad for p in run.model.encoder.parameters())
    if frozen == was_frozen:
        return False
    run.model.encoder.requires_grad_(not frozen)
    return True


def _wrap(run: _Run) -> None:
    """Build the DDP wrapper of several workers over the weights that train now.

    DDP registers only weights that require a gradient when it is built, so a frozen encoder
    is left out of the gradient all-reduce without a search for unused weights on every step;
    the wrapper is built again when the encoder thaws.
    """
    if run.ctx.distributed:
        device = run.ctx.device
        run.net = DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None)


def _prepare_run_dir(run_dir: Path, *, resume: bool, force: bool, is_main: bool,
                     log: LogFn | None) -> bool:
    """Check and clear ``run_dir`` for this run; whether to resume from its ``last.pt``.

    A run killed before its first checkpoint has no ``last.pt`` (only ``config.toml`` and
    some step records): ``resume`` then starts it over rather than leave a dead end between
    "pass --resume" and "last.pt not found".
    """
    if is_main:
        remove_debris(run_dir, RUN_FILES)  # of killed runs: the run dir is locked
    if resume:
        if (run_dir / LAST).exists():
            return True
        if (run_dir / BEST).exists():
            raise CheckpointError(
                f"cannot resume: {run_dir / LAST} not found (but {BEST} is): pass --force to "
                "start over or choose another --out"
            )
        if is_main:
            for name in RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            if log is not None:
                log(Notice(f"{run_dir} has no checkpoint to resume (stopped before its first "
                           "one): starting over"))
        return False
    if run_dir.exists() and any(run_dir.iterdir()):
        if not force:
            raise OutputExistsError(
                f"run directory {run_dir} exists and is not empty: pass --resume to continue "
                "it, --force to start over, or choose another --out"
            )
        if is_main:
            for name in RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    return False


@contextlib.contextmanager
def _created_dir(run_dir: Path, is_main: bool) -> Iterator[None]:
    """Remove ``run_dir`` again if this run created it and fails leaving it empty (e.g. a bad
    ``--data``), so a failed command leaves no empty folder behind."""
    created = is_main and not run_dir.exists()
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if empty
        raise


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` (a KeyboardInterrupt) for the block.

    The loop then writes ``last.pt`` as on Ctrl-C. Further SIGTERMs are ignored while it does
    (a second one would only interrupt the checkpoint). Signal handlers belong to the main
    thread; elsewhere SIGTERM keeps its meaning.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _kill_hook() -> tuple[int, int] | None:
    """The :data:`KILL_HOOK` test hook's (step, signal), or None when it is not set."""
    value = os.environ.get(KILL_HOOK)
    if not value:
        return None
    step, _, name = value.partition(":")
    try:
        return int(step), int(signal.Signals[name or "SIGKILL"])
    except (ValueError, KeyError):
        raise ConfigError(f"{KILL_HOOK}={value!r}: expected STEP:SIGNAL, e.g. 3:SIGTERM") from None


def _set_threads(recipe: RecipeConfig, ctx: distributed.DistributedContext) -> None:
    if ctx.device.type != "cpu":
        return
    threads = recipe.train.threads or max(1, (os.cpu_count() or 1) // ctx.local_world_size)
    torch.set_num_threads(threads)


def _load_data(
    recipe: RecipeConfig, sources: _Sources, records: list[CorpusRecord],
    stats: FeatureStats | None, ctx: distributed.DistributedContext,
    progress: ProgressFn | None, log: LogFn | None = None,
) -> TrainingData:
    """The corpora loaded (:func:`seqkit.data.pipeline.load_training_data`); with several
    workers, rank 0 builds and caches the feature stores first, for as long as that takes."""
    data, text_only = recipe.data, recipe.model.kind == "lm"
    wait = distributed.long_wait_group(ctx) if data.cache and not text_only else None
    if wait is not None and not ctx.is_main:
        distributed.barrier(ctx, wait)
    # with the cache, rank 0 builds each store while the others wait: all cores are its own
    sharing = 1 if data.cache else ctx.local_world_size
    loaded = load_training_data(
        sources.corpora, records, phone_set=data.phone_set,
        features=None if text_only else data.features, stats=stats, cache=data.cache,
        jobs=data.feature_jobs or max(1, (os.cpu_count() or 1) // sharing),
        progress=progress if ctx.is_main else None,
        notice=(lambda text: log(Notice(text))) if log is not None and ctx.is_main else None)
    if wait is not None and ctx.is_main:
        distributed.barrier(ctx, wait)
    distributed.release_group(wait)
    return loaded


def _make_optimizer(recipe: RecipeConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = recipe.train
    if t.optimizer == Optimizer.SGD:
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, nesterov=True,
                               weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def autocast_dtype(recipe: RecipeConfig, device: torch.device) -> torch.dtype | None:
    """The dtype ``train.amp`` trains in on ``device``; None = float32.

    bf16 on a CPU without bfloat16 hardware is float32 without a word: recipes ask for bf16 where
    the hardware has it, not for bf16 emulated in software. fp16 off CUDA warns.
    """
    if recipe.train.amp == Amp.OFF:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if recipe.train.amp == Amp.BF16 else torch.float16
    if recipe.train.amp == Amp.BF16:
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    warnings.warn(f"train.amp={recipe.train.amp} needs CUDA; training in float32 on "
                  f"{device.type}", stacklevel=3)
    return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU trains an LSTM in bfloat16 in hardware (AVX512-BF16 or AMX).

    There, bf16 autocast trains the synth recipes' models ~1.5x faster than float32
    (``seqkit bench train --amp``, BENCHMARKS.md). The CPU flags alone are not enough: oneDNN
    has no bf16 LSTM below AVX-512 (an AVX2-only CPU, or ``ONEDNN_MAX_CPU_ISA=AVX2``), so a
    one-step bf16 LSTM is tried once and its failure means no.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if not any(getattr(torch.cpu, name, lambda: False)() for name in checks):
        return False
    return _bf16_lstm_runs()


@functools.cache
def _bf16_lstm_runs() -> bool:
    """Whether oneDNN builds a bfloat16 LSTM here (a 1-frame, 1-unit forward under autocast)."""
    lstm = torch.nn.LSTM(1, 1)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 1, 1))
    except RuntimeError:  # "could not create a primitive descriptor for the LSTM forward ..."
        return False
    return True


# ---------------------------------------------------------------------------------------------
# files


def _best_metric(kind: str) -> str:
    """What ``best_score`` holds: dev PER in %, or dev loss for a phone LM (which has no PER)."""
    return "dev_loss" if kind == "lm" else "dev_per_pct"


def _emit(run: _Run, record: Record) -> None:
    if run.ctx.is_main:
        append_record(run.run_dir, record)
        if run.log is not None:
            run.log(record)


def _plot(run: _Run) -> None:
    if run.ctx.is_main:
        plot_curves(run.state.history, run.run_dir / "curves.png")


def _save(run: _Run, name: str) -> None:
    """Write ``best.pt`` or ``last.pt``: the model plus everything an exact resume needs."""
    if not run.ctx.is_main:
        return
    state = run.state
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    payload = model_payload(
        run.model, vocab=list(run.data.vocab), phone_set=run.data.phone_set,
        features=run.recipe.data.features if run.stats is not None else None, stats=run.stats)
    save_checkpoint(run.run_dir / name, {
        **payload,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.schedule.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "epoch": state.epoch,  # with position: where the sampler resumes
        "position": state.position,
        "step": state.step,
        "rng": rng,
        "train_config": run.recipe.to_dict(),
        "best_score": state.best_score if state.best_epoch is not None else None,
        "best_metric": _best_metric(run.kind),
        "best_epoch": state.best_epoch,
        "epochs_since_best": state.epochs_since_best,
        "history": [asdict(e) for e in state.history],
        "corpora": [r.to_dict() for r in run.corpora],  # --resume refuses others
        "dev_set": run.dev_choice.value,
        "init": run.init,  # the --init model it started from, or None
    })


_STATE_KEYS = ("optimizer", "scheduler", "epoch", "position", "step", "rng", "best_score",
               "best_epoch", "epochs_since_best", "history")


def _same_model_config(saved: Any, config: ModelConfig) -> bool:
    """Whether a checkpoint's model config is ``config``; keys the checkpoint predates (e.g.
    ``model.joint_stride``) take their defaults, as when the model is loaded."""
    try:
        return ModelConfig.from_dict(saved) == config
    except ConfigError:
        return False


def _restore(run: _Run, saved: dict[str, Any]) -> None:
    """Load ``last.pt`` (read as ``saved``) into the run: weights, optimizer, schedule,
    position, RNG."""
    path = run.run_dir / LAST
    missing = [k for k in _STATE_KEYS if k not in saved]
    if missing:
        raise CheckpointError(
            f"{path} holds no training state of this seqkit version (no {missing[0]}): start "
            "over with --force"
        )
    if not _same_model_config(saved["model_config"], run.recipe.model):
        raise CheckpointError(
            f"{path} was trained with another model config than this recipe: resume with the "
            "run's own recipe (RUN/config.toml) or use --force"
        )
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.schedule.load_state_dict(saved["scheduler"])
    if run.scaler is not None and saved.get("scaler"):
        run.scaler.load_state_dict(saved["scaler"])
    best = saved["best_score"]
    run.state = _RunState(
        saved["epoch"], saved["position"], saved["step"],
        math.inf if best is None else float(best), saved["best_epoch"],
        saved["epochs_since_best"], [EpochRecord(**h) for h in saved["history"]])
    torch.set_rng_state(saved["rng"]["torch"])
    if "cuda" in saved["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    if run.ctx.is_main:
        truncate_after(run.run_dir, run.state.step)

