"""Runs that cannot be mixed, stranded or silently damaged (#20): one process per output folder,
SIGTERM like Ctrl-C, resume from any moment, no debris. Real processes, stopped or killed at a
chosen step through the trainer's test hook (no sleeps, no timed assertions)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from seqkit.atomic import remove_debris, staged_dir, write_atomic
from seqkit.errors import OutputLockedError
from seqkit.locks import lock_file, output_lock
from seqkit.training.trainer import KILL_HOOK

TINY = """
[model]
kind = "ctc"
[model.encoder]
layers = 1
hidden = 16
stack = 3
[train]
lr = 3e-3
max_frames = 1  # one utterance per batch: 6 steps per epoch on the tiny corpus
threads = 1
log_every = 1
[data]
phone_set = 39
"""


def _train_cmd(recipe: Path, prepared: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "seqkit.cli.main", "train", str(recipe), "--data",
            str(prepared), "--out", str(out), "--max-epochs", "2", *extra]


def _env(kill: str | None = None) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop(KILL_HOOK, None)
    if kill is not None:
        env[KILL_HOOK] = kill
    return env


def _run(cmd: list[str], kill: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=_env(kill), capture_output=True, text=True, timeout=300)


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def _epochs(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["epoch"] for r in map(json.loads, lines) if r["kind"] == "epoch"]


def _steps(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r["kind"] == "step"]


@pytest.mark.slow  # ~1 min on 2 shared cores: two train processes import torch
def test_a_second_train_into_a_locked_out_fails_naming_the_holder(
    prepared: Path, recipe: Path, tmp_path: Path
) -> None:
    """#20.1: two trains into one --out mixed their metrics; now the second exits 2."""
    out = tmp_path / "run"
    # the first run stops itself (SIGSTOP) before its first step, holding the lock
    first = subprocess.Popen(_train_cmd(recipe, prepared, out), env=_env("0:SIGSTOP"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, status = os.waitpid(first.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        second = _run(_train_cmd(recipe, prepared, out))
        assert second.returncode == 2, second.stderr
        assert f"pid {first.pid}" in second.stderr and "seqkit train" in second.stderr
        assert len([line for line in second.stderr.splitlines() if line.strip()]) == 1
    finally:
        os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert _epochs(out) == [1, 2]
    assert not lock_file(out).exists()


# ten moments of a 2 x 6-step run: before the first checkpoint (steps 0-5, epoch 1), at the
# epoch boundary and in epoch 2
KILLS = ["0:SIGKILL", "0:SIGTERM", "2:SIGKILL", "3:SIGTERM", "5:SIGKILL", "6:SIGKILL",
         "6:SIGTERM", "8:SIGKILL", "9:SIGTERM", "11:SIGKILL"]


@pytest.mark.slow  # ~1 min each: three processes import torch and train
@pytest.mark.parametrize("kill", KILLS)
def test_a_run_killed_at_any_step_resumes_to_completion_without_duplicate_epochs(
    prepared: Path, recipe: Path, tmp_path: Path, kill: str
) -> None:
    """#20.2: a kill before the first checkpoint stranded the run; SIGTERM wrote nothing."""
    out = tmp_path / "run"
    killed = _run(_train_cmd(recipe, prepared, out), kill=kill)
    name = kill.split(":")[1]
    if name == "SIGTERM":  # handled like Ctrl-C: last.pt written, exit non-zero
        assert killed.returncode == 143, killed.stderr  # 128 + SIGTERM, as after `timeout`
        assert (out / "last.pt").exists() and "continue with --resume" in killed.stderr
    else:
        assert killed.returncode == -signal.SIGKILL
    assert lock_file(out).exists() or name == "SIGTERM"  # a dead holder's lock stays behind
    killed_files = [p.name for p in out.iterdir()]
    again = _run(_train_cmd(recipe, prepared, out))  # a plain re-run is refused, as before
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = _run(_train_cmd(recipe, prepared, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    if "last.pt" not in killed_files:  # no checkpoint was written: starts over, says so
        assert "starting over" in resumed.stderr
    assert _epochs(out) == [1, 2]
    assert _steps(out) == sorted(set(_steps(out)))
    assert not lock_file(out).exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock_file(out).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                          "command": "seqkit train"}))
    with output_lock(out, command="test"):
        holder = json.loads(lock_file(out).read_text())
        assert holder["pid"] == os.getpid()
    assert not lock_file(out).exists()


def test_a_lock_held_by_another_process_is_refused_and_reentrant_in_this_one(
    tmp_path: Path, hold_lock) -> None:
    out = tmp_path / "out"
    with hold_lock(out, "holder") as holder:
        with pytest.raises(OutputLockedError, match=rf"in use by holder \(pid {holder.pid}"):
            with output_lock(out):
                pass
    with output_lock(out), output_lock(out):  # reentrant: staged_dir inside a locked command
        pass


def test_a_failed_command_removes_the_folders_it_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError), staged_dir(out):
        raise RuntimeError("failed")
    assert list(tmp_path.iterdir()) == []


def test_debris_of_killed_writers_is_removed_and_nothing_else(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    keep = ["last.pt", ".notes.txt", "metrics.jsonl", ".hidden"]
    for name in keep:
        (run / name).write_text("x")
    debris = [".last.pt.abcd_123.pt", ".metrics.jsonl.zz9y8x7w.jsonl"]
    for name in debris:
        (run / name).write_text("half")
    (tmp_path / ".run.partial-k2j3h4g5").mkdir()
    removed = remove_debris(run, ["last.pt", "metrics.jsonl"])
    assert sorted(p.name for p in removed) == sorted(debris)
    assert sorted(p.name for p in run.iterdir()) == sorted(keep)
    assert remove_debris(tmp_path, ["run"]) == [tmp_path / ".run.partial-k2j3h4g5"]
    write_atomic(run / "last.pt", lambda tmp: tmp.write_text("y"))  # its own temp: gone too
    assert sorted(p.name for p in run.iterdir()) == sorted(keep)


def test_train_with_missing_data_leaves_no_run_folder(recipe: Path, tmp_path: Path) -> None:
    """#20.5: a failed train left an empty --out (and its parents) behind."""
    from typer.testing import CliRunner

    from seqkit.cli.main import app

    out = tmp_path / "runs" / "x"
    result = CliRunner().invoke(app, ["train", str(recipe), "--data", str(tmp_path / "nope"),
                                      "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert list(tmp_path.iterdir()) == [recipe]


def _in_process_recipe(recipe: Path):
    from seqkit.training import load_recipe

    return load_recipe(recipe)


def test_train_refuses_an_out_another_process_holds(
    prepared: Path, recipe: Path, tmp_path: Path, hold_lock) -> None:
    """#20.1 in one test process: the lock is taken before any work (here: before the data)."""
    from seqkit.training import train

    out = tmp_path / "run"
    with hold_lock(out, "seqkit train") as holder:
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            train(_in_process_recipe(recipe), tmp_path / "no-data", out)
    assert not out.exists()


def test_sigterm_checkpoints_like_ctrl_c_and_a_run_without_checkpoint_resumes_from_scratch(
    prepared: Path, recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#20.2 in one process: SIGTERM at step 2 writes last.pt; without it, --resume starts
    over (as after a kill -9 before the first checkpoint) instead of a dead end."""
    from seqkit.training import train
    from seqkit.training.runlog import Notice

    out = tmp_path / "run"
    monkeypatch.setenv(KILL_HOOK, "2:SIGTERM")
    before = signal.getsignal(signal.SIGTERM)
    stopped = train(_in_process_recipe(recipe), prepared, out, max_epochs=2)
    assert stopped.stopped == "interrupted" and stopped.steps == 2
    assert stopped.stop_signal == signal.SIGTERM
    assert (out / "last.pt").exists()
    assert signal.getsignal(signal.SIGTERM) == before  # the handler was put back
    monkeypatch.delenv(KILL_HOOK)
    resumed = train(_in_process_recipe(recipe), prepared, out, max_epochs=2, resume=True)
    assert [e.epoch for e in resumed.epochs] == _epochs(out) == [1, 2]

    (out / "last.pt").unlink()  # as if killed before its first checkpoint
    (out / "best.pt").unlink()
    notices: list[str] = []
    again = train(_in_process_recipe(recipe), prepared, out, max_epochs=2, resume=True,
                  log=lambda r: notices.append(r.text) if isinstance(r, Notice) else None)
    assert again.steps == resumed.steps and _epochs(out) == [1, 2]
    assert len(notices) == 1 and "starting over" in notices[0]


def test_a_stop_signal_and_its_interruption_map_back_and_forth() -> None:
    """The demo re-raises a run's stop_signal as the exception the CLI maps to 143 or 130."""
    from seqkit.training.trainer import Terminated, interruption_of, stop_signal_of

    assert type(interruption_of(signal.SIGTERM)) is Terminated
    assert type(interruption_of(signal.SIGINT)) is KeyboardInterrupt
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        assert stop_signal_of(interruption_of(stop_signal)) == stop_signal


def test_train_stopped_by_sigterm_exits_143_and_by_ctrl_c_130(
    prepared: Path, recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#20: SIGTERM exited 130 like Ctrl-C; `timeout`, systemd and Slurm expect 128 + 15."""
    from typer.testing import CliRunner

    from seqkit.cli.main import app

    args = ["train", str(recipe), "--data", str(prepared), "--max-epochs", "2", "--out"]
    # Ctrl-C as a terminal delivers it (a shell's background job starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for kill, code in (("2:SIGTERM", 143), ("2:SIGINT", 130)):
            out = tmp_path / kill.replace(":", "-")
            monkeypatch.setenv(KILL_HOOK, kill)
            result = CliRunner().invoke(app, [*args, str(out)])
            assert result.exit_code == code, result.output
            assert (out / "last.pt").exists() and "continue with --resume" in result.output
    finally:
        signal.signal(signal.SIGINT, previous)


def test_train_stopped_by_sigterm_before_its_first_step_exits_143_not_1(
    recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#20: a SIGTERM while the features were built ended as click's "Aborted!", exit 1."""
    from typer.testing import CliRunner

    from seqkit.cli.main import app
    from seqkit.training import trainer

    def terminated(*args: object, **kwargs: object) -> None:
        raise trainer.Terminated("signal 15")

    monkeypatch.setattr(trainer, "_build_run", terminated)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(recipe), "--data", str(tmp_path),
                                      "--out", str(out)])
    assert result.exit_code == 143, result.output
    assert "interrupted before training began" in result.output and not out.exists()


@pytest.mark.slow  # ~30 s on 2 shared cores: two prepare processes
def test_a_second_prepare_into_one_out_fails_instead_of_replacing_the_first(
    prepared: Path, tmp_path: Path
) -> None:
    """#20.3: two `seqkit data prepare` into one OUT both exited 0, the later one replacing the
    first's output; now the second exits 2 while the first (stopped mid-work) holds OUT."""
    corpus, out = prepared.parent / "corpus", tmp_path / "prepared"
    first = subprocess.Popen(
        [sys.executable, "-c",
         "import os, signal, sys\n"
         "from seqkit.corpora.timit.prepare import prepare_corpus\n"
         "stopped = []\n"
         "def progress(label, done, total):\n"
         "    if not stopped:\n"
         "        stopped.append(1); os.kill(os.getpid(), signal.SIGSTOP)\n"
         "prepare_corpus(sys.argv[1], sys.argv[2], progress=progress)\n",
         str(corpus), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, status = os.waitpid(first.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        second = _run([sys.executable, "-m", "seqkit.cli.main", "data", "prepare", str(corpus),
                       str(out)])
        assert second.returncode == 2, second.stderr
        assert f"pid {first.pid}" in second.stderr and "seqkit data prepare" in second.stderr
    finally:
        os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert (out / "train.jsonl").exists() and not lock_file(out).exists()


def test_prepare_cli_into_a_held_out_exits_2_and_leaves_it_alone(
    prepared: Path, tmp_path: Path, hold_lock) -> None:
    """#20.3, fast: the lock is what `seqkit data prepare` takes before reading the corpus."""
    from typer.testing import CliRunner

    from seqkit.cli.main import app

    out = tmp_path / "prepared"
    with hold_lock(out, "seqkit data prepare") as holder:
        result = CliRunner().invoke(app, ["data", "prepare", str(prepared.parent / "corpus"),
                                          str(out)])
    assert result.exit_code == 2 and f"pid {holder.pid}" in result.output
    assert not out.exists()


def test_synth_into_a_held_out_fails_before_synthesizing(tmp_path: Path, hold_lock) -> None:
    """#20.1: synth OUT is locked too, before any work."""
    from seqkit.synth.corpus import synthesize_corpus

    out = tmp_path / "corpus"
    with hold_lock(out, "seqkit data synth") as holder:
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            synthesize_corpus(out, speakers=3, sentences=1, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_synth_into_a_held_non_empty_out_names_the_holder_not_the_files(
    tmp_path: Path, hold_lock) -> None:
    """#20: synth checked OUT before taking its lock, so a second synth into an OUT another
    synth was still writing got "exists and is not empty" instead of who holds it; as prepare
    and train do, the lock comes first, then the check."""
    from seqkit.synth.corpus import synthesize_corpus

    out = tmp_path / "corpus"
    out.mkdir()
    (out / "splits.json").write_text("{}")
    with hold_lock(out, "seqkit data synth") as holder:
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            synthesize_corpus(out, speakers=3, sentences=1, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]
