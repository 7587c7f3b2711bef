"""Distributed data parallel training: process groups and launching local workers.

Workers are started by torch.distributed's own launcher (the elastic agent behind ``torchrun``),
either by ``seqkit train --nproc N`` (:func:`launch_local`, which runs ``seqkit train`` in each
worker just as ``torchrun`` does) or by ``torchrun`` across machines. Either way each worker
finds ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its
environment, and :func:`setup` joins the process group from them: NCCL when the worker has a
GPU, gloo on CPU.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from seqkit.errors import ConfigError, TrainingError

# How long workers wait for rank 0 to build feature stores (see long_wait_group).
LONG_WAIT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class DistributedContext:
    """Where this worker stands.

    Attributes:
        rank: global rank (0 writes files).
        world_size: number of workers.
        local_rank: rank on this machine (picks the GPU).
        local_world_size: workers on this machine (shares the CPU cores).
        device: the worker's device.
        initialized_here: whether :func:`setup` created the process group (and
            :func:`teardown` should destroy it).
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this worker writes files and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one worker takes part."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"environment variable {name} must be an integer, found {raw!r}"
        ) from None


def setup(device: str | None = None) -> DistributedContext:
    """Join the process group described by the launcher's environment variables, if any.

    Args:
        device: ``"cpu"`` or ``"cuda"``; None = CUDA when available. With CUDA, worker
            ``LOCAL_RANK`` uses GPU ``LOCAL_RANK``.

    Returns:
        The worker's context (a single worker when ``WORLD_SIZE`` is unset or 1).

    Raises:
        ConfigError: CUDA was asked for but is not available, or the environment is malformed.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available: use device cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    initialized_here = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        initialized_here = True
    return DistributedContext(rank, world_size, local_rank, local_world_size, dev,
                              initialized_here)


def teardown(ctx: DistributedContext) -> None:
    """Leave the process group if :func:`setup` created it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def any_flag(ctx: DistributedContext, *flags: bool) -> list[bool]:
    """Each flag OR-ed over all workers (one all-reduce), so that every worker decides alike."""
    if not ctx.distributed:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def sum_values(ctx: DistributedContext, *values: float) -> list[float]:
    """Each value summed over all workers."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(ctx: DistributedContext, obj: Any) -> list[Any]:
    """Every worker's ``obj``, in rank order (a one-element list without distribution)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistributedContext, group: Any = None) -> None:
    """Wait for every worker (of ``group``, by default all of them)."""
    if ctx.distributed:
        dist.barrier(group=group)


def long_wait_group(ctx: DistributedContext) -> Any:
    """A gloo group of every worker whose barrier waits up to :data:`LONG_WAIT`, or None alone.

    For waiting while rank 0 builds the feature stores: an hour or more for 960 h on a few cores,
    where NCCL's collectives give up after 10 minutes (the right limit for a training step).
    Every worker must create it at the same point; destroy it with :func:`release_group`.
    """
    if not ctx.distributed:
        return None
    return dist.new_group(backend="gloo", timeout=LONG_WAIT)


def release_group(group: Any) -> None:
    """Destroy a group made by :func:`long_wait_group` (None: nothing to do)."""
    if group is not None:
        dist.destroy_process_group(group)


@dataclass(frozen=True)
class TrainLaunch:
    """One ``seqkit train`` invocation, to be run by every worker of a local launch.

    Attributes:
        recipe: the recipe file.
        data: the prepared directories (one or several).
        out: the run directory.
        overrides: ``--set`` values, in order.
        max_epochs, max_minutes: budget overrides (None = the recipe's).
        resume, force: as ``seqkit train``.
        data_weights: ``--data-weight`` values (``CORPUS=WEIGHT``), in order.
        dev: ``--dev`` (``first`` or ``all``).
        init: ``--init`` (None: from scratch).
    """

    recipe: Path
    data: tuple[Path, ...]
    out: Path
    overrides: tuple[str, ...] = ()
    max_epochs: int | None = None
    max_minutes: float | None = None
    resume: bool = False
    force: bool = False
    data_weights: tuple[str, ...] = ()
    dev: str = "first"
    init: Path | None = None

    def argv(self) -> list[str]:
        """The ``train`` command line each worker runs (without ``--nproc``)."""
        args = ["train", str(self.recipe)]
        for path in self.data:
            args += ["--data", str(path)]
        args += ["--out", str(self.out)]
        for item in self.data_weights:
            args += ["--data-weight", item]
        if self.dev != "first":
            args += ["--dev", self.dev]
        if self.init is not None:
            args += ["--init", str(self.init)]
        for item in self.overrides:
            args += ["--set", item]
        for flag, value in (("--max-epochs", self.max_epochs),
                            ("--max-minutes", self.max_minutes)):
            if value is not None:
                args += [flag, str(value)]
        return args + ["--resume"] * self.resume + ["--force"] * self.force


def is_main_process() -> bool:
    """Whether this process is rank 0 of a launch (or not launched at all): it reports."""
    return _env_int("RANK", 0) == 0


# What torch's elastic agent takes over while it runs workers.
_AGENT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def launch_local(nproc: int, module: str, launch: TrainLaunch) -> None:
    """Run ``python -m MODULE train ...`` in ``nproc`` workers on this machine.

    The same elastic agent as ``torchrun --standalone --nproc-per-node N -m MODULE train ...``:
    it sets each worker's rendezvous environment (RANK, WORLD_SIZE, MASTER_ADDR, ...), watches
    the workers and stops all when one fails. The workers share the CPU cores equally.

    Args:
        nproc: number of workers (>= 1).
        module: the command-line module the workers run (the ``seqkit`` CLI's main module).
        launch: what to train.

    Raises:
        ConfigError: ``nproc`` < 1.
        TrainingError: a worker failed (the message carries its error).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, found {nproc}")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"seqkit-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # standalone: the agent picks a free port
        max_restarts=0,
        monitor_interval=0.1,
    )
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the agent passes its environment to the workers
    # the agent installs its own SIGINT/SIGTERM/... handlers and leaves them: put ours back after
    handlers = {s: signal.getsignal(s) for s in _AGENT_SIGNALS}
    try:
        elastic_launch(config, sys.executable)("-m", module, *launch.argv())
    except ChildFailedError as err:
        first = next(iter(err.failures.values()), None)
        detail = first.message if first is not None else str(err)
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
        reason = str(detail).strip().splitlines()[-1] if str(detail).strip() else "unknown"
        raise TrainingError(
            f"a training worker failed ({reason}); rerun with --nproc 1 to see the full error"
        ) from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
