"""One process at a time per output: a lock file beside each folder (or file) a command writes.

Two ``seqkit train`` runs into one ``--out`` would otherwise both pass the empty-folder check
(nothing is written until the feature store is built) and interleave their checkpoints and
``metrics.jsonl``; two ``seqkit data prepare`` into one OUT would silently replace each other.
So each command's library entry point holds :func:`output_lock` on its output for the whole
run, taken before any work.

The lock is ``.NAME.lock`` in the output's parent folder (beside it, not inside: a staged
output replaces the folder whole, and a run folder's "is it empty" check must not see it). It
is an ``flock`` on that file, so the kernel releases it when its holder dies, however it dies
(kill -9 included): a lock file left by a dead process is stale by construction. The file holds
the holder's pid, host and command, for the message the next process gets. Where the file
system has no ``flock``, the pid and host decide instead: a lock of a pid that no longer runs on
this host is stale and taken over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from seqkit.errors import OutputLockedError

_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth (reentrant)


def lock_file(output: str | os.PathLike[str]) -> Path:
    """Where the lock of ``output`` lives: ``.NAME.lock`` beside it."""
    out = Path(output)
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def output_lock(output: str | os.PathLike[str], *, command: str = "seqkit",
                wait: bool = False) -> Iterator[Path]:
    """Hold the lock of ``output`` for the ``with`` block; reentrant within one process.

    Missing parent folders are created, and those still empty when the block ends are removed
    again, so a command that fails leaves no empty folder behind.

    Args:
        output: the folder (or file) the command writes.
        command: what holds it, for the message another process gets (e.g. "seqkit train").
        wait: block until the holder is done instead of failing (shared caches, where the
            second process then finds the first one's result).

    Yields:
        The lock file.

    Raises:
        OutputLockedError: another live process holds it (and ``wait`` is False).
    """
    path = lock_file(output).absolute()
    if path in _held:
        _held[path] += 1
        try:
            yield path
        finally:
            _held[path] -= 1
        return
    created = _make_parents(path.parent)
    try:
        fd = _acquire(path, Path(output), command, wait)
        _held[path] = 1
        try:
            yield path
        finally:
            del _held[path]
            with contextlib.suppress(OSError):
                path.unlink()  # first, so that a waiting process sees a new file (see _acquire)
            os.close(fd)
    finally:
        for folder in created:  # deepest first; rmdir only removes empty ones
            with contextlib.suppress(OSError):
                folder.rmdir()


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the created ones, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for part in reversed(missing):
        part.mkdir(exist_ok=True)
    return missing


def _acquire(path: Path, output: Path, command: str, wait: bool) -> int:
    """Lock ``path`` and write this process into it; the open descriptor holds the lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            locked = _flock(fd, wait)
            if locked is None:  # no flock on this file system: pid and host decide, and a
                # waiter goes ahead (it cannot wait without flock; its writes are atomic)
                locked = wait or not _held_by_live_process(path)
            if not locked:
                raise OutputLockedError(_held_message(path, output))
            # The previous holder unlinks the file before it lets go: a lock on an unlinked
            # file locks nothing, so check that the path still names what was locked.
            if _same_file(fd, path):
                _write_holder(fd, command)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _flock(fd: int, wait: bool) -> bool | None:
    """True: locked; False: held by another; None: this file system cannot flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in _NO_FLOCK:
            return None
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _write_holder(fd: int, command: str) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def read_holder(path: Path) -> dict[str, object]:
    """What the lock file says about its holder ({} if unreadable)."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _held_by_live_process(path: Path) -> bool:
    """Without flock: whether the holder written in ``path`` may still run.

    A pid on this host that no longer runs is dead, so its lock is stale; a holder on another
    host cannot be checked from here and counts as live.
    """
    holder = read_holder(path)
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int):
        return False
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _held_message(path: Path, output: Path) -> str:
    holder = read_holder(path)
    who = (f"{holder.get('command', 'seqkit')} (pid {holder.get('pid', '?')} on "
           f"{holder.get('host', '?')}, since {holder.get('since', '?')})") if holder else (
        "another process")
    return (f"{output} is in use by {who}: wait for it to finish or choose another output; "
            f"if that process is gone, delete {path}")
