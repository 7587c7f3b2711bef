"""The root command: version, help with examples on every command, errors as one line + exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import seqkit
from seqkit.cli.main import app

runner = CliRunner()

COMMANDS = [
    ["data", "synth"],
    ["data", "prepare"],
    ["data", "download"],
    ["train"],
    ["decode"],
    ["evaluate"],
    ["bench", "losses"],
    ["bench", "train"],
    ["bench", "decode"],
    ["bench", "prepare"],
    ["bench", "stream"],
    ["bench", "peers"],
    ["bench", "voices"],
    ["bench", "gpu"],
    ["bench", "profile"],
    ["demo"],
    ["recipes"],
]


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"seqkit {seqkit.__version__}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_a_runnable_example(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Example: seqkit" in result.output


def test_user_error_is_one_red_line_and_exit_code_2(tmp_path) -> None:
    missing = tmp_path / "no-such-corpus"
    result = runner.invoke(app, ["data", "prepare", str(missing), str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert str(missing) in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_exception_instead(tmp_path) -> None:
    result = runner.invoke(app, ["--debug", "data", "prepare", str(tmp_path / "x"), str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, seqkit.errors.SeqkitError)


def test_demo_rejects_an_unknown_model_before_doing_any_work(tmp_path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--model", "hmm"])
    assert result.exit_code == 2
    assert "'hmm' is not one of 'ctc'" in result.output and "'transducer'" in result.output
    assert not (tmp_path / "d").exists()


def test_bench_train_without_a_prepared_corpus_is_one_line_and_exit_2(tmp_path) -> None:
    result = runner.invoke(app, ["bench", "train", "--data", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not a prepared corpus" in lines[0], result.output


@pytest.mark.parametrize("command", [["bench", "losses"], ["data", "prepare", "c", "o"],
                                     ["recipes"]], ids=" ".join)
def test_an_unknown_format_is_refused_with_the_choices(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--format", "yaml"], terminal_width=200)
    assert result.exit_code == 2
    assert "table" in result.output and "json" in result.output
