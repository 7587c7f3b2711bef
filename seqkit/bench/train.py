"""Training throughput: seqkit's trainer against a plain PyTorch loop on the same work.

For each recipe, both sides train the same model (same seed) on the same global batches with the
same loss, optimizer, clipping and precision, augmentation off; ours is
:func:`seqkit.training.train` (bookkeeping, logging, schedule, non-finite checks), the plain loop
is written below. The ratio of plain frames/s to ours must stay <= 1.10 (toolkit overhead <= 10%).

:func:`run_two_corpora` times our trainer on two corpora against one (``seqkit bench train
--two-corpora``): the per-step cost of mixing (a chained index over two feature stores, weighted
draws per epoch) must stay within 5% (ratio <= 1.05), with the recipes' own augmentation on,
since perturbation and masking are part of the data pipeline's step.

Peak memory is the plain loop's: how far the process's resident set rose above where it stood
before the first step (Linux's high-water mark, reset through ``/proc/self/clear_refs``), so it
counts the activations and gradients of a training step, not the data or the libraries.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from seqkit.audio.features import read_stats
from seqkit.data.batching import BucketBatchSampler, FeatureDataset, load_split
from seqkit.data.checksums import verify_prepared
from seqkit.data.corpus_set import DevSet, record_corpora, resolve_corpora
from seqkit.data.pipeline import TrainingPipeline, load_training_data
from seqkit.data.splits import split_manifest
from seqkit.errors import CorpusError
from seqkit.models import build_model
from seqkit.progress import ProgressFn
from seqkit.training import load_recipe, read_run_log, train
from seqkit.training.trainer import autocast_dtype

RECIPES = ("synth/ctc_blstm", "synth/transducer")
_NO_AUGMENTATION = ("train.spec_augment=false", "train.speed_perturb=0", "train.vtlp=0",
                    "train.channel_db=0", "train.lowpass_probability=0")


def training_batches(recipe: Any, data_dir: Path, count: int
                     ) -> tuple[FeatureDataset, list[list[int]], torch.nn.Module]:
    """The train split, the first ``count`` global batches the trainer would draw (epochs in
    order, augmentation off) and the recipe's model, seeded as the trainer seeds it."""
    t = recipe.train
    verify_prepared(data_dir, ["stats.json"])  # the manifest: in load_split
    features, stats = read_stats(data_dir / "stats.json")
    data = load_split(data_dir, "train", phone_set=recipe.data.phone_set, features=features,
                      stats=stats)
    torch.manual_seed(t.seed)
    model = build_model(recipe.model, input_dim=features.dim, vocab_size=len(data.vocab))
    sampler = BucketBatchSampler(data.lengths, t.max_frames, seed=t.seed,
                                 bucket_width=recipe.data.bucket_width)
    batches = [b for epoch in range(100) for b in sampler.global_batches(epoch)][:count]
    return data, batches, model


def _plain_loop(recipe: Any, data_dir: Path, steps: int) -> tuple[float, list[int], float | None]:
    """Frames/s of a minimal loop: collate, forward, mean loss, backward, clip, Adam step; the
    batches' frames; the loop's peak memory in MiB (None off Linux)."""
    t = recipe.train
    dtype = autocast_dtype(recipe, torch.device("cpu"))
    data, batches, model = training_batches(recipe, data_dir, steps + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    batch_frames = [sum(data.lengths[i] for i in b) for b in batches]
    resident_before = _reset_peak_resident()
    frames, start = 0, 0.0
    for n, indices in enumerate(batches):
        if n == 1:  # the first step warms up allocators and kernels; time the rest
            frames, start = 0, time.perf_counter()
        batch = data.collate(indices)
        with (torch.autocast("cpu", dtype=dtype) if dtype is not None
              else contextlib.nullcontext()):
            nll = model(batch.feats, batch.feat_lengths, batch.targets, batch.target_lengths)
        loss = nll.sum() / batch.target_lengths.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        frames += int(batch.feat_lengths.sum())
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    peak_mib = (peak - resident_before) / 1024 if peak and resident_before else None
    return frames / seconds, batch_frames, peak_mib


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _reset_peak_resident() -> int | None:
    """Reset this process's resident high-water mark; its resident set now (KiB), None where
    the kernel offers neither.

    Memory freed by an earlier recipe first goes back to the system (glibc's ``malloc_trim``), or
    a later recipe's step would reuse it unseen and its peak would depend on the order.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_kib("VmRSS")


def _ours(recipe_path: str, overrides: list[str], data_dir: Path, steps: int,
          batch_frames: list[int]) -> float:
    """Frames/s of seqkit's trainer over the same steps, from its metrics log (after step 1)."""
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(recipe_path, [*overrides, f"train.max_steps={steps + 1}",
                                           "train.log_every=1", "train.max_epochs=100",
                                           "train.patience=0"])
        train(recipe, data_dir, Path(tmp) / "run")
        step_records = read_run_log(Path(tmp) / "run").steps[1:]
    frames = batch_frames[1 : len(step_records) + 1]
    seconds = sum(f / r.frames_per_s for f, r in zip(frames, step_records, strict=True))
    return sum(frames) / seconds


def run(
    data_dir: str | os.PathLike[str],
    *,
    recipes: tuple[str, ...] = RECIPES,
    steps: int = 10,
    amp: str | None = None,
    overrides: tuple[str, ...] = (),
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Time ``steps`` training steps of each recipe with seqkit and with a plain loop.

    Args:
        data_dir: a prepared synthesized corpus (``seqkit data prepare``).
        recipes: recipes to time (files or built-in names).
        steps: timed steps per side (one more is run first to warm up).
        amp: ``train.amp`` for both sides instead of the recipe's (``"off"`` = float32).
        overrides: ``--set`` overrides for every recipe, both sides (e.g.
            ``model.joint_stride=2``; augmentation stays off and ``amp`` wins over them).
        progress: called as ``progress("bench train", done, total)``.

    Returns:
        One row per recipe: ``recipe``, ``precision`` (what both sides trained in),
        ``ours_frames_per_s``, ``plain_frames_per_s``, ``ratio`` (plain / ours; <= 1.10 is the
        target), ``steps``, ``plain_peak_mib`` (the plain loop's peak memory above its start,
        MiB; None off Linux).

    Raises:
        CorpusError: ``data_dir`` holds no prepared corpus.
    """
    data_dir = check_prepared(data_dir)
    rows: list[dict[str, Any]] = []
    for n, path in enumerate(recipes):
        # the plain loop has no augmentation: time the same work on our side
        sets = [*overrides, *_NO_AUGMENTATION,
                *([f"train.amp={amp}"] if amp is not None else [])]
        recipe = load_recipe(path, sets)
        if recipe.model.kind == "lm":
            continue
        plain, batch_frames, peak_mib = _plain_loop(recipe, data_dir, steps)
        ours = _ours(path, sets, data_dir, steps, batch_frames)
        dtype = autocast_dtype(recipe, torch.device("cpu"))
        rows.append({"recipe": str(path), "precision": "bf16" if dtype else "float32",
                     "ours_frames_per_s": ours,
                     "plain_frames_per_s": plain,
                     "ratio": plain / ours if ours > 0 else math.inf, "steps": steps,
                     "plain_peak_mib": peak_mib})
        if progress is not None:
            progress("bench train", n + 1, len(recipes))
    return rows


# the second corpus's share per epoch in the two-corpora timing: the weighted draw is exercised
SECOND_WEIGHT = 0.5


def run_two_corpora(
    data_dir: str | os.PathLike[str],
    second: str | os.PathLike[str] | None = None,
    *,
    recipes: tuple[str, ...] = RECIPES,
    steps: int = 30,
    amp: str | None = None,
    overrides: tuple[str, ...] = (),
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Time ``steps`` steps of seqkit's trainer on one corpus and on two, per recipe.

    Args:
        data_dir: a prepared corpus (the one-corpus run, and the first of the two).
        second: the second prepared corpus, at weight :data:`SECOND_WEIGHT`. Default: a copy
            of ``data_dir`` (its manifests and statistics; its feature cache linked), so both
            runs batch the same kind of utterances and only the mixing differs.
        recipes: recipes to time (files or built-in names).
        steps: timed steps per run (one more is run first to warm up).
        amp: ``train.amp`` instead of the recipe's (``"off"`` = float32).
        overrides: ``--set`` overrides for every recipe (augmentation stays as the recipe has
            it: the pipeline's perturbation is part of a step).
        progress: called as ``progress("bench train", done, total)``.

    Returns:
        One row per recipe: ``recipe``, ``one_ms_per_step`` / ``two_ms_per_step`` (mean wall
        time of a step, its batch built included), ``one_frames_per_s`` /
        ``two_frames_per_s``, ``ratio`` (one corpus's frames/s over two's: the per-frame cost
        of mixing; <= 1.05 is the target), ``steps``.

    Raises:
        CorpusError: ``data_dir`` or ``second`` holds no prepared corpus.
    """
    data_dir = check_prepared(data_dir)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        other = check_prepared(second) if second is not None else _copy_prepared(
            data_dir, Path(tmp) / "copy")
        for n, path in enumerate(recipes):
            sets = [*overrides, *([f"train.amp={amp}"] if amp is not None else [])]
            recipe = load_recipe(path, [*sets, f"train.max_steps={steps + 1}",
                                        "train.max_epochs=100", "train.patience=0"])
            if recipe.model.kind == "lm":
                continue
            row: dict[str, Any] = {"recipe": str(path)}
            for name, data, weights in (("one", [data_dir], None),
                                        ("two", [data_dir, other],
                                         {str(other): SECOND_WEIGHT})):
                seconds, frames, timed = _timed_steps(recipe, data, weights, Path(tmp) / name)
                row[f"{name}_ms_per_step"] = 1000 * seconds / max(timed, 1)
                row[f"{name}_frames_per_s"] = frames / seconds if seconds > 0 else 0.0
            two = row["two_frames_per_s"]
            row["ratio"] = row["one_frames_per_s"] / two if two > 0 else math.inf
            row["steps"] = steps
            rows.append(row)
            if progress is not None:
                progress("bench train", n + 1, len(recipes))
    return rows


def _copy_prepared(data_dir: Path, out: Path) -> Path:
    """A second prepared folder with ``data_dir``'s files (its feature cache linked, not
    copied: the stores are keyed by the manifests, which are the same)."""
    out.mkdir(parents=True)
    for item in data_dir.iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
    if (data_dir / "cache").is_dir():
        (out / "cache").symlink_to((data_dir / "cache").resolve(), target_is_directory=True)
    return out


def _timed_steps(recipe: Any, data: list[Path], weights: dict[str, float] | None,
                 run_dir: Path) -> tuple[float, int, int]:
    """Wall seconds, input frames and count of the steps after the first of a short training
    run; a step whose epoch ended before it (a dev pass in between) is left out."""
    marks: list[tuple[float, str, int]] = []

    def mark(description: str, done: int, total: int) -> None:
        marks.append((time.perf_counter(), description, done))

    train(recipe, data, run_dir, data_weights=weights, progress=mark, force=True)
    pipeline = _pipeline(recipe, data, weights)
    epochs: dict[int, list[list[int]]] = {}
    seconds, frames, timed = 0.0, 0, 0
    for (start, before, _), (end, description, done) in itertools.pairwise(marks):
        if description != before:
            continue
        epoch = int(description.split()[-1]) - 1
        batches = epochs.setdefault(epoch, pipeline.global_batches(epoch))
        seconds += end - start
        frames += pipeline.frames(batches[done - 1])
        timed += 1
    return seconds, frames, timed


def _pipeline(recipe: Any, data: list[Path], weights: dict[str, float] | None
              ) -> TrainingPipeline:
    """The batches the trainer drew (its stores cached by then), to count their frames."""
    corpora = resolve_corpora(data, weights)
    records = record_corpora(corpora, dev=DevSet.FIRST, stats_read=True)
    loaded = load_training_data(corpora, records, phone_set=recipe.data.phone_set,
                                features=recipe.data.features)
    t = recipe.train
    return TrainingPipeline(loaded.train, weights=[c.weight for c in corpora],
                            stats=loaded.stats, features=recipe.data.features,
                            max_frames=t.max_frames, bucket_width=recipe.data.bucket_width,
                            seed=t.seed)


def check_prepared(data_dir: str | os.PathLike[str]) -> Path:
    """``data_dir`` as a Path, if it holds a prepared corpus (the benches train on its split).

    Raises:
        CorpusError: it does not, with the commands that make one.
    """
    data_dir = Path(data_dir)
    if not split_manifest(data_dir, "train").is_file():
        raise CorpusError(
            f"{data_dir} is not a prepared corpus: run `make demo` (it makes demo/prepared) or "
            "`seqkit data synth corpus && seqkit data prepare corpus prepared`, then --data"
        )
    return data_dir
