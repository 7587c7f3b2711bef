"""Distributed data parallel training: 2 gloo workers equal 1 process on the same global batches."""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from typer.testing import CliRunner

from seqkit.cli.main import app
from seqkit.errors import ConfigError
from seqkit.training import load_recipe, read_run_log, train
from seqkit.training.distributed import (
    DistributedContext,
    TrainLaunch,
    barrier,
    launch_local,
    long_wait_group,
    release_group,
    setup,
)

RECIPE = """
[model]
kind = "ctc"
[model.encoder]
layers = 1
hidden = 24
stack = 3
[train]
max_frames = 1200
max_steps = 3
optimizer = "sgd"  # Adam would amplify float rounding of tiny gradients
lr = 0.05
threads = 1
"""


@pytest.mark.slow  # ~1-2 min on 2 shared cores: two launched workers import torch and train
def test_two_gloo_workers_match_one_process_on_the_same_global_batches(
    prepared: Path, tmp_path: Path
) -> None:
    (tmp_path / "r.toml").write_text(RECIPE)
    recipe = load_recipe(tmp_path / "r.toml")
    single = train(recipe, prepared, tmp_path / "one")
    assert single.stopped == "max_steps" and single.steps == 3
    # the shipped path: `seqkit train --nproc 2` launches `seqkit train` in two workers
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    result = CliRunner().invoke(app, ["train", str(tmp_path / "r.toml"), "--data", str(prepared),
                                      "--out", str(tmp_path / "two"), "--nproc", "2"])
    assert result.exit_code == 0, result.output
    # torch's elastic agent took over Ctrl-C and SIGTERM while it ran: they are ours again
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    two_ckpt = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert two_ckpt["step"] == 3
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    two = two_ckpt["model"]
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-4, atol=1e-5, msg=name)
    # the epoch ended within the 3 steps: the sharded dev evaluation agrees too
    dev_one = [e.dev_loss for e in single.epochs]
    dev_two = [e.dev_loss for e in read_run_log(tmp_path / "two").epochs]
    assert dev_one and dev_two == pytest.approx(dev_one, rel=1e-4)


@pytest.mark.slow  # ~1-2 min on 2 shared cores, as above
def test_two_workers_keep_a_frozen_pretrained_encoder_as_one_process_does(
    prepared: Path, tmp_path: Path
) -> None:
    (tmp_path / "ctc.toml").write_text(RECIPE)
    train(load_recipe(tmp_path / "ctc.toml"), prepared, tmp_path / "ctc")
    transducer = RECIPE.replace('kind = "ctc"', 'kind = "transducer"\njoint_dim = 16').replace(
        "max_steps = 3", f"max_steps = 6\ninit_encoder = '{tmp_path / 'ctc'}'\n"
                         "freeze_encoder_epochs = 1")
    (tmp_path / "t.toml").write_text(transducer)
    single = train(load_recipe(tmp_path / "t.toml"), prepared, tmp_path / "one")
    assert single.steps == 6 and len(single.epochs) >= 2  # the frozen epoch and after it
    result = CliRunner().invoke(app, ["train", str(tmp_path / "t.toml"), "--data", str(prepared),
                                      "--out", str(tmp_path / "two"), "--nproc", "2"])
    assert result.exit_code == 0, result.output
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["model"]
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-4, atol=1e-5, msg=name)


def _wait_for_slow_rank0(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=2))
    ctx = DistributedContext(rank, 2, rank, 2, torch.device("cpu"))
    group = long_wait_group(ctx)
    if rank == 0:
        time.sleep(5)  # "building the feature stores" for longer than the default group allows
    barrier(ctx, group)
    release_group(group)
    dist.destroy_process_group()


@pytest.mark.slow  # ~10 s: two spawned workers import torch
def test_workers_wait_for_rank0_past_the_default_collective_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # raises if either worker fails, e.g. a barrier that gave up after the 2 s default
    torch.multiprocessing.spawn(_wait_for_slow_rank0, args=(port,), nprocs=2)


def test_setup_without_launcher_is_a_single_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = setup("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)


def test_launch_rejects_zero_workers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--nproc must be >= 1"):
        launch_local(0, "seqkit.cli.main", TrainLaunch(tmp_path / "r.toml", (tmp_path,),
                                                       tmp_path))


def test_worker_command_line_carries_every_option(tmp_path: Path) -> None:
    launch = TrainLaunch(Path("r.toml"), (Path("p"),), Path("o"), ("train.lr=1", "train.seed=2"),
                         max_epochs=3, max_minutes=0.5, resume=True)
    assert launch.argv() == ["train", "r.toml", "--data", "p", "--out", "o", "--set",
                             "train.lr=1", "--set", "train.seed=2", "--max-epochs", "3",
                             "--max-minutes", "0.5", "--resume"]
    several = TrainLaunch(Path("r.toml"), (Path("a"), Path("b")), Path("o"),
                          data_weights=("b=0.3",), dev="all", init=Path("runs/x"))
    assert several.argv() == ["train", "r.toml", "--data", "a", "--data", "b", "--out", "o",
                              "--data-weight", "b=0.3", "--dev", "all", "--init", "runs/x"]
