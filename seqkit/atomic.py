"""Outputs written whole or not at all: built beside the target, then moved onto it.

Every file seqkit writes (checkpoints, reports, pictures, LMs, demo state, feature caches) goes
through :func:`write_atomic`; every directory it publishes (a synthesized corpus, a prepared
directory) is built in :func:`staged_dir` and moved into place by :func:`replace_dir`. So an
interrupted run never leaves a partial output, a failed replacement keeps the previous one, and
results get the permissions any new file or directory would (``mkstemp`` and ``mkdtemp`` alone
make them private to their owner).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from seqkit.errors import OutputExistsError
from seqkit.locks import output_lock

# What write_atomic and staged_dir name their temp files and folders: ".NAME.<8 random
# characters of mkstemp>SUFFIX" and ".NAME.partial-<8 random characters>".
_RANDOM = r"[a-z0-9_]{8}"
_TEMP_FILE = re.compile(rf"^\.(?P<name>.+)\.{_RANDOM}(?P<suffix>\.[^.]+)$")
_STAGED_DIR = re.compile(rf"^\.(?P<name>.+)\.partial-{_RANDOM}$")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _file_mode() -> int:
    return 0o666 & ~_umask()


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp file in ``path``'s folder, then move it onto ``path``.

    Args:
        path: the file to (re)place; its folder is created if needed.
        write: writes the whole content to the path it is given.

    Returns:
        ``path`` as a Path.

    Raises:
        OSError: the folder or the temp file cannot be written (nothing is left behind).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                suffix=target.suffix or ".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(_file_mode())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 1) -> Path:
    """Write ``data`` as UTF-8 JSON (and a final newline) with :func:`write_atomic`."""
    text = json.dumps(data, indent=indent) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_debris(folder: str | os.PathLike[str], names: Iterable[str] | None = None) -> list[Path]:
    """Delete what :func:`write_atomic` and :func:`staged_dir` left in ``folder`` when killed.

    Their temp files and staging folders are removed when they fail or are interrupted, but a
    process killed outright (kill -9, out of memory, power loss) leaves them: hidden, and as big
    as the output (a 23 MB ``.last.pt.*.pt``). A command calls this at start, while it holds the
    output's lock (:mod:`seqkit.locks`), when no live process can be writing them.

    Args:
        folder: where to look (not recursive).
        names: the outputs whose debris to remove (e.g. ``["last.pt"]``); None = any.

    Returns:
        What was removed.
    """
    wanted = None if names is None else set(names)
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        temp, staged = _TEMP_FILE.match(entry.name), _STAGED_DIR.match(entry.name)
        if temp is not None and entry.is_file() and not entry.is_symlink():
            name = temp["name"]
            if temp["suffix"] not in (Path(name).suffix, ".tmp"):
                continue
            if wanted is None or name in wanted:
                entry.unlink(missing_ok=True)
                removed.append(entry)
        elif staged is not None and entry.is_dir() and not entry.is_symlink():
            if wanted is None or staged["name"] in wanted:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def check_output_dir(path: str | os.PathLike[str], *, force: bool) -> None:
    """Refuse an output directory that :func:`staged_dir` would replace without ``force``.

    Called before any work, so a refused run costs nothing.

    Raises:
        OutputExistsError: ``path`` is a file, or a non-empty directory and ``force`` is False.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} is a file, expected a directory: choose another OUT")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(
            f"{out} exists and is not empty: choose another OUT or pass --force to replace it"
        )


def replace_dir(new: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Move directory ``new`` onto ``target``; an existing ``target`` is replaced as a whole.

    The previous ``target`` is first moved aside (beside it), then ``new`` moved in, then the
    previous one deleted; if moving ``new`` in fails, the previous one is put back.

    Args:
        new: the finished directory, on the same file system as ``target``.
        target: where it goes.

    Returns:
        ``target`` as a Path.

    Raises:
        OSError: a move failed (``target`` then holds what it held before).
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return target
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / "previous")
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / "previous", target)  # put the previous output back
        old.rmdir()  # empty now; a failure to restore keeps it, holding the previous output
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target


@contextmanager
def staged_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """An empty directory beside ``path`` to build an output in, published when the block ends.

    When the ``with`` block finishes, the directory replaces ``path`` (:func:`replace_dir`); when
    it raises (an error, Ctrl-C), the directory is deleted and ``path`` is left as it was. The
    block holds ``path``'s lock (:func:`seqkit.locks.output_lock`, reentrant: a caller that
    took it before checking ``path`` keeps it), so two processes never stage the same output,
    and staging folders left by killed processes are removed first.

    Args:
        path: the directory to (re)place; its parent is created if needed.

    Yields:
        The staging directory (hidden, in ``path``'s parent, usual permissions).

    Raises:
        OutputLockedError: another process writes ``path``.
    """
    target = Path(path)
    with output_lock(target):
        remove_debris(target.parent, [target.name])
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            tmp.chmod(0o777 & ~_umask())
            yield tmp
            replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
