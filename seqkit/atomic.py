"""Files written whole or not at all: a temp file beside the target, then ``os.replace``.

Every output seqkit writes (checkpoints, reports, pictures, LMs, demo state) goes through
:func:`write_atomic`, so an interrupted write never leaves a partial file, and the result gets
the permissions any new file would (``mkstemp`` alone makes it private to its owner).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


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
