"""Outputs are written whole or not at all, with the permissions of any new file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seqkit.atomic import write_atomic


def test_write_atomic_replaces_the_file_with_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.json"
    write_atomic(target, lambda tmp: tmp.write_text("one"))
    write_atomic(target, lambda tmp: tmp.write_text("two"))
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_text() == "two"
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_atomic(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
