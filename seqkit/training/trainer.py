"""The training loop: CTC, transducer and phone-LM recipes, resumable and distributed.

One process::

    train(load_recipe("recipes/synth/ctc_blstm.toml"), "prepared", "runs/ctc")

N processes (the same code; the launcher sets RANK / WORLD_SIZE)::

    seqkit train recipes/synth/ctc_blstm.toml --data prepared --out runs/ctc --nproc 2
    torchrun --nnodes 2 --nproc-per-node 4 ... -m seqkit.cli.main train ...

Each step: take this worker's share of the next global batch, (optionally) add weight noise,
forward to per-utterance NLLs, normalize by the global batch's label count, backward, remove
the noise, clip, step. Each epoch: dev loss and dev PER (greedy decoding, 39-phone folding),
plateau LR schedule, early stopping, ``last.pt`` / ``best.pt``. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from seqkit.atomic import write_atomic
from seqkit.audio.augment import spec_augment
from seqkit.audio.features import FeatureStats, compute_stats, read_stats
from seqkit.data.batching import Batch, BucketBatchSampler, FeatureDataset, load_split
from seqkit.decoding.greedy import ctc_greedy, transducer_greedy
from seqkit.errors import CheckpointError, ConfigError, OutputExistsError, TrainingError
from seqkit.metrics import phone_error_rate
from seqkit.models import build_model
from seqkit.models.checkpoint import (
    init_from_pretrained,
    load_checkpoint,
    model_payload,
    save_checkpoint,
)
from seqkit.progress import ProgressFn
from seqkit.training import distributed
from seqkit.training.config import RecipeConfig, recipe_to_toml

LogFn = Callable[[dict[str, Any]], None]

RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl", "curves.png", "config.toml")
BUDGET_ANNEAL_FLOOR = 0.05  # train.budget_anneal ends at this fraction of the scheduled LR


@dataclass(frozen=True)
class EpochSummary:
    """One epoch's numbers (also a ``metrics.jsonl`` line with ``"kind": "epoch"``).

    Attributes:
        epoch: 1-based epoch number.
        steps: optimizer steps so far (all epochs).
        train_loss: mean training NLL per label (nats) over the epoch's batches.
        dev_loss: dev NLL per label (nats).
        dev_per: dev phone error rate in % after 39-phone folding (None for an ``lm``).
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
    dev_per: float | None
    lr: float
    frames_per_s: float
    skipped: int
    seconds: float
    best: bool


@dataclass(frozen=True)
class TrainSummary:
    """What a run did.

    Attributes:
        run_dir: the run directory.
        epochs: one summary per completed epoch (including those before a resume).
        best_epoch: epoch of ``best.pt`` (None if no epoch completed).
        best_score: its dev PER in % (dev loss for an ``lm``).
        steps: optimizer steps in total.
        stopped: why the run ended: ``"max_epochs"``, ``"early_stopping"``,
            ``"max_minutes"``, ``"max_steps"`` or ``"interrupted"``.
        seconds: wall-clock time of this invocation.
    """

    run_dir: Path
    epochs: list[EpochSummary]
    best_epoch: int | None
    best_score: float | None
    steps: int
    stopped: str
    seconds: float


@dataclass
class PlateauSchedule:
    """Linear warmup, then reduce-on-plateau of the dev score (lower is better).

    The LR is a pure function of the step and of ``scale``, which :meth:`update` lowers by
    ``factor`` after ``patience`` epochs without improvement; the whole state is five numbers.
    Epochs before the score first improves do not count: a CTC or transducer model emits only
    blanks for its first epochs (dev PER stuck near 100%) and needs its full LR to leave them.
    """

    base_lr: float
    warmup_steps: int
    factor: float
    patience: int
    min_lr: float
    scale: float = 1.0
    best: float = math.inf
    bad_epochs: int = 0
    moved: bool = False  # has the score improved on its first value yet?

    def lr(self, step: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return max(self.base_lr * self.scale, self.min_lr) * warm

    def update(self, score: float) -> None:
        """Record an epoch's dev score."""
        if score < self.best:
            self.moved = self.moved or math.isfinite(self.best)
            self.best, self.bad_epochs = score, 0
            return
        if not self.moved:
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.scale *= self.factor
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, float]:
        """The mutable state."""
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs,
                "moved": float(self.moved)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.scale = float(state["scale"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.moved = bool(state.get("moved", True))


@dataclass
class _Progress:
    """Training state that goes into ``last.pt`` besides model and optimizer."""

    epoch: int = 0  # 0-based epoch in progress
    position: int = 0  # global batches done in this epoch
    step: int = 0  # optimizer steps done
    best_score: float = math.inf
    best_epoch: int | None = None
    epochs_since_best: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# setup helpers


def _prepare_run_dir(run_dir: Path, *, resume: bool, force: bool, is_main: bool) -> None:
    if resume:
        if not (run_dir / "last.pt").exists():
            raise CheckpointError(
                f"cannot resume: {run_dir / 'last.pt'} not found; drop --resume to start a new run"
            )
        return
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


def _write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _set_threads(recipe: RecipeConfig, ctx: distributed.DistributedContext) -> None:
    if ctx.device.type != "cpu":
        return
    threads = recipe.train.threads or max(1, (os.cpu_count() or 1) // ctx.local_world_size)
    torch.set_num_threads(threads)


def _load_data(
    recipe: RecipeConfig, data_dir: Path, ctx: distributed.DistributedContext,
    progress: ProgressFn | None,
) -> tuple[FeatureDataset, FeatureDataset, FeatureStats | None]:
    data = recipe.data
    if recipe.model.kind == "lm":  # phone language model: transcripts only
        kw: dict[str, Any] = {"phone_set": data.phone_set, "features": None, "stats": None}
        return load_split(data_dir, "train", **kw), load_split(data_dir, "dev", **kw), None
    prepared_features, stats = read_stats(data_dir / "stats.json")
    if ctx.distributed and not ctx.is_main and data.cache:
        distributed.barrier(ctx)  # rank 0 computes and caches the features first
    report = progress if ctx.is_main else None
    if prepared_features != data.features:
        # Another front end than `seqkit data prepare` used: statistics of the training set.
        train_raw = load_split(data_dir, "train", phone_set=data.phone_set,
                               features=data.features, stats=None, cache=data.cache,
                               progress=report)
        stats = compute_stats(train_raw.feats)
        train_set = FeatureDataset(train_raw.ids, [stats.normalize(f) for f in train_raw.feats],
                                   train_raw.targets, train_raw.vocab, train_raw.phone_set)
    else:
        train_set = load_split(data_dir, "train", phone_set=data.phone_set,
                               features=data.features, stats=stats, cache=data.cache,
                               progress=report)
    dev_set = load_split(data_dir, "dev", phone_set=data.phone_set, features=data.features,
                         stats=stats, cache=data.cache, progress=report)
    if ctx.distributed and ctx.is_main and data.cache:
        distributed.barrier(ctx)
    return train_set, dev_set, stats


def _make_optimizer(recipe: RecipeConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = recipe.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, nesterov=True,
                               weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def _amp_dtype(recipe: RecipeConfig, device: torch.device) -> torch.dtype | None:
    if recipe.train.amp == "off":
        return None
    if device.type != "cuda":
        warnings.warn(
            f"train.amp={recipe.train.amp} needs CUDA; training in float32 on {device.type}",
            stacklevel=3,
        )
        return None
    return torch.bfloat16 if recipe.train.amp == "bf16" else torch.float16


# ---------------------------------------------------------------------------------------------
# one step and one evaluation


def _forward(model: torch.nn.Module, kind: str, batch: Batch) -> torch.Tensor:
    """(B,) per-utterance NLL."""
    if kind == "lm":
        return model(batch.targets, batch.target_lengths)
    return model(batch.feats, batch.feat_lengths, batch.targets, batch.target_lengths)


def _label_count(dataset: FeatureDataset, indices: list[int], kind: str) -> int:
    """Labels predicted in a batch: the normalizer of the loss (LMs also predict the end)."""
    extra = 1 if kind == "lm" else 0
    return sum(int(dataset.targets[i].numel()) + extra for i in indices)


def _augment(batch: Batch, recipe: RecipeConfig, generator: torch.Generator) -> Batch:
    t = recipe.train
    feats = batch.feats.clone()
    for b, n in enumerate(batch.feat_lengths.tolist()):
        feats[b, :n] = spec_augment(batch.feats[b, :n], freq_masks=t.freq_masks,
                                    freq_width=t.freq_width, time_masks=t.time_masks,
                                    time_width=t.time_width, generator=generator)
    return Batch(batch.ids, feats, batch.feat_lengths, batch.targets, batch.target_lengths)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    kind: str,
    dataset: FeatureDataset,
    *,
    max_frames: int,
    ctx: distributed.DistributedContext | None = None,
) -> tuple[float, float | None]:
    """Dev loss per label and dev PER (%, 39-phone folding; None for an ``lm``).

    Args:
        model: the unwrapped model (switched to eval mode and back).
        kind: ``"ctc"``, ``"transducer"`` or ``"lm"``.
        dataset: the dev set.
        max_frames: padded frame budget per batch.
        ctx: with several workers each evaluates a share and the results are combined.

    Returns:
        ``(loss, per)``, the same on every worker.
    """
    ctx = ctx or distributed.DistributedContext(0, 1, 0, 1, torch.device("cpu"))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sampler = BucketBatchSampler(dataset.lengths, max_frames, shuffle=False, bucket_width=0,
                                 rank=ctx.rank, world_size=min(ctx.world_size, len(dataset)))
    loss_sum, labels = 0.0, 0
    hyps: dict[str, list[int]] = {}
    for indices in (sampler.local_share(b) for b in sampler.global_batches(0)):
        batch = dataset.collate(indices).to(device)
        nll = _forward(model, kind, batch).float()
        finite = torch.isfinite(nll)
        loss_sum += float(nll[finite].sum())
        labels += _label_count(dataset, [i for i, ok in zip(indices, finite.tolist(), strict=True)
                                         if ok], kind)
        if kind == "ctc":
            log_probs, out_lengths = model.log_probs(batch.feats, batch.feat_lengths)
            decoded = ctc_greedy(log_probs, out_lengths)
        elif kind == "transducer":
            f, out_lengths = model.encode(batch.feats, batch.feat_lengths)
            decoded = transducer_greedy(model, f, out_lengths)
        else:
            continue
        hyps.update(zip(batch.ids, decoded, strict=True))
    loss_sum, labels = distributed.sum_values(ctx, loss_sum, float(labels))
    model.train(was_training)
    loss = loss_sum / max(labels, 1.0)
    if kind == "lm":
        return loss, None
    for part in distributed.gather_objects(ctx, hyps)[1:]:
        hyps.update(part)
    index = {u: i for i, u in enumerate(dataset.ids)}
    refs = [[dataset.vocab[k] for k in dataset.targets[index[u]].tolist()] for u in hyps]
    hyp_phones = [[dataset.vocab[k] for k in h] for h in hyps.values()]
    return loss, _percent(phone_error_rate(refs, hyp_phones, fold=39))


def _percent(fraction: float) -> float:
    """``phone_error_rate`` returns a fraction; summaries and logs use percent."""
    return 100.0 * float(fraction)


# ---------------------------------------------------------------------------------------------
# files


def _payload(
    recipe: RecipeConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    schedule: PlateauSchedule, scaler: torch.amp.GradScaler | None, state: _Progress,
    dataset: FeatureDataset, stats: FeatureStats | None,
) -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    payload = model_payload(
        model, vocab=list(dataset.vocab), phone_set=dataset.phone_set,
        features=recipe.data.features if stats is not None else None, stats=stats)
    return {
        **payload,
        "optimizer": optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": state.epoch,
        "position": state.position,
        "sampler": {"epoch": state.epoch, "position": state.position},
        "step": state.step,
        "rng": rng,
        "train_config": recipe.to_dict(),
        "best_dev_per": state.best_score if state.best_epoch is not None else None,
        "best_epoch": state.best_epoch,
        "epochs_since_best": state.epochs_since_best,
        "history": state.history,
    }


def _append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint (they will be written again)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    _write_text_atomic(path, "".join(line + "\n" for line in kept))


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Train/dev loss and dev PER by epoch as a PNG (matplotlib Agg), written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(fig)
    epochs = [h["epoch"] for h in history]
    ax_loss, ax_per = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["dev_loss"] for h in history], "s-", label="dev")
    ax_loss.set(xlabel="epoch", ylabel="NLL per label (nats)", title="loss")
    ax_loss.legend()
    pers = [h["dev_per"] for h in history]
    if any(p is not None for p in pers):
        ax_per.plot(epochs, [p if p is not None else math.nan for p in pers], "o-", color="C2")
    ax_per.set(xlabel="epoch", ylabel="PER % (39 phones)", title="dev PER")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _load_state(path: Path) -> dict[str, Any]:
    payload = load_checkpoint(path)
    if "optimizer" not in payload:
        raise CheckpointError(f"{path} holds no training state: start over with --force")
    return payload


# ---------------------------------------------------------------------------------------------
# the loop


def train(
    recipe: RecipeConfig,
    data_dir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    force: bool = False,
    max_epochs: int | None = None,
    max_minutes: float | None = None,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
) -> TrainSummary:
    """Train a recipe on a prepared directory, writing checkpoints and logs to ``run_dir``.

    Args:
        recipe: model, training and data settings (:func:`seqkit.training.load_recipe`).
        data_dir: a ``seqkit data prepare`` output (``train.jsonl``, ``dev.jsonl``,
            ``stats.json``).
        run_dir: where ``best.pt``, ``last.pt``, ``config.toml``, ``metrics.jsonl`` and
            ``curves.png`` go.
        resume: continue from ``run_dir/last.pt`` exactly (same next batch, same LR).
        force: start over in an existing run directory (its run files are removed).
        max_epochs: overrides ``train.max_epochs``.
        max_minutes: overrides ``train.max_minutes`` (0 = no limit).
        progress: called as ``progress("epoch N", batches_done, batches_total)``.
        log: called with every ``metrics.jsonl`` record (dicts with ``"kind"`` ``"step"`` or
            ``"epoch"``).

    Returns:
        What happened; KeyboardInterrupt is caught, ``last.pt`` written and
        ``stopped="interrupted"`` returned.

    Raises:
        OutputExistsError: ``run_dir`` exists and neither ``resume`` nor ``force`` is set.
        CheckpointError: nothing to resume, or ``last.pt`` does not fit the recipe.
        CorpusError, AudioError, ConfigError: bad data or settings.
        TrainingError: ``train.max_bad_steps`` non-finite losses or gradients in a row.
    """
    started = time.monotonic()
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    t = recipe.train
    max_epochs = t.max_epochs if max_epochs is None else max_epochs
    max_minutes = t.max_minutes if max_minutes is None else max_minutes
    if max_epochs < 1:
        raise ConfigError(f"--max-epochs must be >= 1, found {max_epochs}")
    ctx = distributed.setup()
    try:
        _prepare_run_dir(run_dir, resume=resume, force=force, is_main=ctx.is_main)
        distributed.barrier(ctx)
        _set_threads(recipe, ctx)
        kind = recipe.model.kind
        train_set, dev_set, stats = _load_data(recipe, data_dir, ctx, progress)
        input_dim = train_set.feats[0].shape[1] if train_set.feats else 0

        torch.manual_seed(t.seed)  # same initial weights on every worker
        model = build_model(recipe.model, input_dim=input_dim, vocab_size=len(train_set.vocab))
        model.to(ctx.device)
        if t.init_encoder or t.init_predictor:
            for part, source in (("encoder", t.init_encoder), ("predictor", t.init_predictor)):
                if source:
                    init_from_pretrained(model, source, part, vocab=list(train_set.vocab))
        optimizer = _make_optimizer(recipe, model)
        schedule = PlateauSchedule(t.lr, t.warmup_steps, t.lr_factor, t.lr_patience, t.min_lr)
        amp_dtype = _amp_dtype(recipe, ctx.device)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        state = _Progress()
        if resume:
            saved = _load_state(run_dir / "last.pt")
            if saved["model_config"] != recipe.model.to_dict():
                raise CheckpointError(
                    f"{run_dir / 'last.pt'} was trained with another model config than this "
                    "recipe: resume with the run's own recipe (RUN/config.toml) or use --force"
                )
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["scheduler"])
            if scaler is not None and saved.get("scaler"):
                scaler.load_state_dict(saved["scaler"])
            best = saved["best_dev_per"]
            state = _Progress(saved["epoch"], saved["position"], saved["step"],
                              math.inf if best is None else float(best), saved["best_epoch"],
                              saved["epochs_since_best"], list(saved["history"]))
            torch.set_rng_state(saved["rng"]["torch"])
            if "cuda" in saved["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
            if ctx.is_main:
                _truncate_metrics(run_dir, state.step)
        if ctx.is_main:
            _write_text_atomic(run_dir / "config.toml", recipe_to_toml(recipe))
        net: torch.nn.Module = model
        if ctx.distributed:
            net = DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        sampler = BucketBatchSampler(train_set.lengths, t.max_frames, seed=t.seed,
                                     bucket_width=recipe.data.bucket_width, rank=ctx.rank,
                                     world_size=ctx.world_size)

        def checkpoint(name: str) -> None:
            if ctx.is_main:
                save_checkpoint(run_dir / name, _payload(recipe, model, optimizer, schedule,
                                                         scaler, state, train_set, stats))

        def emit(record: dict[str, Any]) -> None:
            if ctx.is_main:
                _append_metrics(run_dir, record)
                if log is not None:
                    log(record)

        stopped = "max_epochs"
        deadline = started + max_minutes * 60 if max_minutes > 0 else math.inf
        anneal_start = time.monotonic()  # the budget left when training proper starts
        bad_in_row = 0
        try:
            while state.epoch < max_epochs:
                epoch_start = time.monotonic()
                batches = sampler.global_batches(state.epoch)
                loss_sum = labels_sum = frames = 0.0
                skipped = 0
                model.train()
                window_start, window_frames = time.monotonic(), 0
                while state.position < len(batches):
                    global_batch = batches[state.position]
                    indices = sampler.local_share(global_batch)
                    batch = train_set.collate(indices)
                    if t.spec_augment and kind != "lm":
                        gen = torch.Generator().manual_seed(
                            (t.seed * 1_000_003 + state.step) * 131 + ctx.rank)
                        batch = _augment(batch, recipe, gen)
                    batch = batch.to(ctx.device)
                    n_labels = _label_count(train_set, global_batch, kind)
                    lr = schedule.lr(state.step)
                    if t.budget_anneal and math.isfinite(deadline):
                        left = (deadline - time.monotonic()) / max(deadline - anneal_start, 1e-9)
                        lr *= min(max(left, BUDGET_ANNEAL_FLOOR), 1.0)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    # Weight noise (Graves 2011): the same noise on every worker, seeded by step.
                    noise: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
                    if t.weight_noise > 0:
                        gen = torch.Generator(ctx.device).manual_seed(
                            t.seed * 1_000_003 + state.step)
                        with torch.no_grad():
                            for p in model.parameters():
                                eps = torch.randn(p.shape, generator=gen, device=p.device,
                                                  dtype=p.dtype) * t.weight_noise
                                p.add_(eps)
                                noise.append((p, eps))
                    try:
                        autocast = (torch.autocast(ctx.device.type, dtype=amp_dtype)
                                    if amp_dtype is not None else contextlib.nullcontext())
                        with autocast:
                            nll = _forward(net, kind, batch).float()  # (B,)
                        # Sum over the global batch / its label count; DDP averages gradients
                        # over workers, so scale by world_size to get the global mean.
                        loss = nll.sum() * (ctx.world_size / max(n_labels, 1))
                        bad, out_of_time = distributed.any_flag(
                            ctx, not bool(torch.isfinite(loss)), time.monotonic() > deadline)
                        if out_of_time:
                            stopped = "max_minutes"
                            break
                        grad_ok = not bad
                        if not bad:
                            optimizer.zero_grad(set_to_none=True)
                            (scaler.scale(loss) if scaler is not None else loss).backward()
                    finally:
                        with torch.no_grad():
                            for p, eps in noise:
                                p.sub_(eps)  # noise only for this batch's forward/backward
                    if grad_ok:
                        if scaler is not None:
                            scaler.unscale_(optimizer)
                        max_norm = t.grad_clip if t.grad_clip > 0 else math.inf
                        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                        grad_ok = bool(torch.isfinite(norm))
                    if grad_ok:
                        if scaler is not None:
                            scaler.step(optimizer)
                            scaler.update()
                        else:
                            optimizer.step()
                        bad_in_row = 0
                        loss_sum += float(nll.detach().sum())
                        labels_sum += _label_count(train_set, indices, kind)
                    else:
                        optimizer.zero_grad(set_to_none=True)
                        skipped += 1
                        bad_in_row += 1
                        if bad_in_row >= t.max_bad_steps:
                            raise TrainingError(
                                f"{bad_in_row} non-finite losses or gradients in a row (epoch "
                                f"{state.epoch + 1}, step {state.step}): likely causes are a "
                                f"learning rate too high (train.lr={t.lr}), fp16 overflow "
                                "(use train.amp=bf16 or off), NaN/inf features (check the "
                                "audio and stats.json), or CTC targets longer than the frames "
                                "(lower model.encoder.stack)"
                            )
                    batch_frames = sum(train_set.lengths[i] for i in global_batch)
                    frames += batch_frames
                    window_frames += batch_frames
                    state.position += 1
                    state.step += 1
                    if progress is not None and ctx.is_main:
                        progress(f"epoch {state.epoch + 1}", state.position, len(batches))
                    if state.step % t.log_every == 0:
                        now = time.monotonic()
                        emit({"kind": "step", "epoch": state.epoch + 1, "step": state.step,
                              "loss": float(nll.detach().sum()) / max(
                                  _label_count(train_set, indices, kind), 1),
                              "lr": lr, "frames_per_s": window_frames / max(now - window_start,
                                                                            1e-9),
                              "skipped": skipped})
                        window_start, window_frames = now, 0
                    if t.max_steps and state.step >= t.max_steps:
                        stopped = "max_steps"
                        break
                if state.position < len(batches):
                    break  # stopped mid-epoch: last.pt below keeps the position
                # end of epoch: evaluate, schedule, checkpoint
                train_time = time.monotonic() - epoch_start
                loss_sum, labels_sum = distributed.sum_values(ctx, loss_sum, labels_sum)
                dev_loss, dev_per = evaluate(model, kind, dev_set, max_frames=t.max_frames,
                                             ctx=ctx)
                score = dev_per if dev_per is not None else dev_loss
                schedule.update(score)
                improved = score < state.best_score
                if improved:
                    state.best_score, state.best_epoch = score, state.epoch + 1
                    state.epochs_since_best = 0
                else:
                    state.epochs_since_best += 1
                summary = EpochSummary(
                    epoch=state.epoch + 1, steps=state.step,
                    train_loss=loss_sum / max(labels_sum, 1.0), dev_loss=dev_loss,
                    dev_per=dev_per, lr=optimizer.param_groups[0]["lr"], frames_per_s=frames /
                    max(train_time, 1e-9), skipped=skipped,
                    seconds=time.monotonic() - epoch_start, best=improved)
                state.history.append(asdict(summary))
                state.epoch += 1
                state.position = 0
                emit({"kind": "epoch", **asdict(summary)})
                checkpoint("last.pt")
                if improved:
                    checkpoint("best.pt")
                if ctx.is_main:
                    plot_curves(state.history, run_dir / "curves.png")
                if t.patience and state.epochs_since_best >= t.patience:
                    stopped = "early_stopping"
                    break
            else:
                stopped = "max_epochs"
            if stopped in ("max_minutes", "max_steps"):
                checkpoint("last.pt")
        except KeyboardInterrupt:
            stopped = "interrupted"
            checkpoint("last.pt")
        if stopped != "interrupted":
            distributed.barrier(ctx)  # rank 0 has written its files
        return TrainSummary(
            run_dir=run_dir,
            epochs=[EpochSummary(**h) for h in state.history],
            best_epoch=state.best_epoch,
            best_score=state.best_score if state.best_epoch is not None else None,
            steps=state.step,
            stopped=stopped,
            seconds=time.monotonic() - started,
        )
    finally:
        distributed.teardown(ctx)


def run_worker(
    recipe: dict[str, Any], data_dir: str, run_dir: str, options: dict[str, Any]
) -> TrainSummary:
    """Entry point of one distributed worker (picklable; see ``distributed.launch_local``).

    Args:
        recipe: :meth:`RecipeConfig.to_dict` output.
        data_dir: the prepared directory.
        run_dir: the run directory.
        options: keyword arguments of :func:`train` (``resume``, ``force``, ``max_epochs``,
            ``max_minutes``).
    """
    return train(RecipeConfig.from_dict(recipe), data_dir, run_dir, **options)

