"""Outputs are written whole or not at all, with the permissions of any new file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seqkit.atomic import check_output_dir, replace_dir, staged_dir, write_atomic
from seqkit.errors import OutputExistsError


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


def test_staged_dir_replaces_a_directory_whole_with_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "corpus"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged_dir(target) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".corpus.")
        (staging / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # the previous output stays until the end
    umask = os.umask(0)
    os.umask(umask)
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


def test_a_failed_staged_dir_keeps_the_previous_directory_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    target = tmp_path / "prepared"
    target.mkdir()
    (target / "train.jsonl").write_text("old")
    with pytest.raises(KeyboardInterrupt), staged_dir(target) as staging:
        (staging / "train.jsonl").write_text("half")
        raise KeyboardInterrupt
    assert (target / "train.jsonl").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_replace_dir_puts_the_previous_directory_back_when_the_move_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, new = tmp_path / "out", tmp_path / "new"
    target.mkdir()
    (target / "a").write_text("previous")
    new.mkdir()
    real_replace = os.replace

    def refuse_new(src, dst):  # type: ignore[no-untyped-def]
        if Path(src) == new:
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_new)
    with pytest.raises(OSError, match="disk gone"):
        replace_dir(new, target)
    assert (target / "a").read_text() == "previous"
    monkeypatch.undo()
    assert replace_dir(new, target) == target and not any(target.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_check_output_dir_refuses_a_file_and_a_non_empty_dir_unless_forced(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "new", force=False)  # absent: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="is a file"):
        check_output_dir(tmp_path / "file", force=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("x")
    with pytest.raises(OutputExistsError, match="--force"):
        check_output_dir(tmp_path / "full", force=False)
    check_output_dir(tmp_path / "full", force=True)
