"""Prepared folders carry the checksums of their content and readers refuse a changed file (#20):
a manifest edited, cut short or swapped after `seqkit data prepare` no longer trains or scores
silently; a folder prepared before the checksums existed still loads, with a warning."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqkit.cli.main import app
from seqkit.data.checksums import CHECKSUMS_FILE, verify_prepared
from seqkit.data.splits import split_manifest
from seqkit.decoding.ngram import ngram_from_manifest
from seqkit.errors import CorpusError, CorpusWarning

runner = CliRunner()
TINY = """
[model]
kind = "ctc"
[model.encoder]
layers = 1
hidden = 8
stack = 3
[train]
threads = 1
[data]
phone_set = 39
"""


def _copy(prepared: Path, into: Path) -> Path:
    """The prepared folder's own files (not its feature cache), copied into ``into``."""
    into.mkdir()
    for path in prepared.iterdir():
        if path.is_file():
            shutil.copy(path, into / path.name)
    return into


def _damage(path: Path) -> None:
    """Overwrite a few bytes in the middle: same size, other content (a bit flip, a bad copy)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4] = b"7777" if data[middle:middle + 4] != b"7777" else b"1111"
    path.write_bytes(bytes(data))


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_prepare_writes_checksums_of_what_it_wrote_and_an_untouched_folder_verifies(
    prepared: Path) -> None:
    listed = json.loads((prepared / CHECKSUMS_FILE).read_text())["files"]
    assert sorted(listed) == ["dev.jsonl", "stats.json", "test.jsonl", "train.jsonl"]
    assert listed["train.jsonl"]["bytes"] == (prepared / "train.jsonl").stat().st_size
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        verify_prepared(prepared, ["train.jsonl", "dev.jsonl", "test.jsonl", "stats.json"])


def test_train_refuses_a_manifest_changed_after_prepare_naming_it_and_the_fix(
    prepared: Path, tmp_path: Path) -> None:
    """#20: bytes overwritten in train.jsonl trained on silently (or failed deep in parsing)."""
    data = _copy(prepared, tmp_path / "prepared")
    _damage(data / "train.jsonl")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(recipe), "--data", str(data), "--out", str(out),
                                 "--max-epochs", "1"])
    assert result.exit_code == 2, result.output
    [line] = _error_lines(result.output)
    message = " ".join(result.output.split())
    assert "train.jsonl changed since `seqkit data prepare` wrote it (same size" in message
    corpus = (prepared.parent / "corpus").resolve()
    assert f"re-run `seqkit data prepare {corpus} {data} --force`" in message
    assert not out.exists() and not (data / "cache").exists()  # refused before any work


def test_evaluate_refuses_a_changed_test_manifest_and_scores_an_untouched_one(
    tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    data = _copy(tiny_runs["prepared"], tmp_path / "prepared")
    args = ["evaluate", str(tiny_runs["ctc"]), "--data", str(data), "--format", "json"]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    _damage(data / "test.jsonl")
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and len(_error_lines(refused.output)) == 1
    assert "test.jsonl changed since `seqkit data prepare`" in " ".join(refused.output.split())


def test_a_truncated_missing_or_foreign_file_is_refused(prepared: Path, tmp_path: Path) -> None:
    data = _copy(prepared, tmp_path / "prepared")
    (data / "dev.jsonl").write_bytes((data / "dev.jsonl").read_bytes()[:-10])
    with pytest.raises(CorpusError, match=r"dev\.jsonl changed .* \(\d+ bytes, expected \d+\)"):
        verify_prepared(data, ["dev.jsonl"])
    (data / "stats.json").unlink()
    with pytest.raises(CorpusError, match=r"stats\.json is missing from the prepared folder"):
        verify_prepared(data, ["stats.json"])
    (data / "extra.jsonl").write_text("{}\n")
    with pytest.raises(CorpusError, match=r"extra\.jsonl was not written by"):
        verify_prepared(data, ["extra.jsonl"])
    verify_prepared(data, ["absent.json"])  # neither listed nor there: the caller's to report


def test_an_lm_from_a_changed_prepared_folder_is_refused(prepared: Path, tmp_path: Path) -> None:
    """decode/evaluate --lm PREPARED (or its train.jsonl) read the train manifest too."""
    data = _copy(prepared, tmp_path / "prepared")
    ngram_from_manifest(data, 39)
    _damage(data / "train.jsonl")
    for source in (data, split_manifest(data, "train")):
        with pytest.raises(CorpusError, match="train.jsonl changed since"):
            ngram_from_manifest(source, 39)


def test_a_folder_prepared_before_checksums_loads_with_one_warning(
    prepared: Path, tmp_path: Path) -> None:
    data = _copy(prepared, tmp_path / "prepared")
    (data / CHECKSUMS_FILE).unlink()
    with pytest.warns(CorpusWarning, match=f"has no {CHECKSUMS_FILE}") as caught:
        lm = ngram_from_manifest(data, 39)
    assert lm.symbols and len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a manifest by path, no checksums beside it:
        ngram_from_manifest(split_manifest(data, "train"), 39)  # no warning


def test_an_unreadable_checksums_file_is_refused(prepared: Path, tmp_path: Path) -> None:
    data = _copy(prepared, tmp_path / "prepared")
    (data / CHECKSUMS_FILE).write_text("{not json")
    with pytest.raises(CorpusError, match=f"cannot read .*{CHECKSUMS_FILE}.*re-run"):
        verify_prepared(data, ["train.jsonl"])
