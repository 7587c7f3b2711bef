"""The demo end to end on a tiny corpus (slow: synthesis, training, evaluation, decoding)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seqkit.cli.exits import TERMINATED
from seqkit.cli.main import app
from seqkit.data.phones import PHONES_39
from seqkit.data.splits import SPLITS_FILE
from seqkit.demo import MIN_TRAIN_SHARE, left_out, training_minutes
from seqkit.training.trainer import KILL_HOOK

pytestmark = pytest.mark.slow


def test_short_demo_writes_a_complete_report_and_resumes_from_its_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--minutes", "0.8", "--speakers", "8",
            "--sentences", "4", "--voice-speakers", "1", "--format", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    for key in ("per_pct", "per61_pct", "train_seconds", "model", "test_utterances",
                "test_speakers", "seqkit_version"):
        assert key in report
    assert report["model"] == "ctc"
    assert report["engines"][0] == "espeak" and "piper" in report["engines"]  # all found here
    assert report["synth_seconds"] > 0
    # A model that emits only blanks deletes every phone: 100%. A short run (0.4 min of
    # training) measured 87.6% with beam + LM and 95.6% greedy on 2 cores under ~12x load,
    # where training stopped inside epoch 1; an idle machine trains further and scores lower.
    assert 0.0 <= report["per_pct"] < 95.0
    assert report["del"] < report["ref_phones"]
    assert report["test_speakers"] >= 1 and report["test_utterances"] >= report["test_speakers"]
    # synthesis counts against the budget: training got what it left, at least a quarter
    budget = report["train_minutes_budget"]
    assert budget == pytest.approx(training_minutes(0.8, report["synth_seconds"]))
    assert 0.8 * MIN_TRAIN_SHARE <= budget < 0.8
    assert training_minutes(13.0, 240.0) == 9.0 and training_minutes(1.0, 120.0) == 0.25
    assert 0.0 < report["train_seconds"] <= budget * 60 + 60
    for name in ("curves", "confusion", "alignment"):
        assert Path(report["paths"][name]).stat().st_size > 0, name
    assert set(report["sample"]["reference"]) <= set(PHONES_39)
    assert set(report["sample"]["hypothesis"]) <= set(PHONES_39)

    corpus_stamp = (out / "corpus" / SPLITS_FILE).stat().st_mtime_ns
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (out / "corpus" / SPLITS_FILE).stat().st_mtime_ns == corpus_stamp
    assert json.loads((out / "report.json").read_text())["train_seconds"] == report["train_seconds"]

    # A run this demo cannot resume (here: a last.pt without training state, as an older seqkit
    # wrote) is trained again from the start instead of stopping the demo.
    last = out / "run-ctc" / "last.pt"
    saved = torch.load(last, weights_only=True)
    del saved["optimizer"]
    torch.save(saved, last)
    longer = [*args[:4], "0.9", *args[5:]]
    third = CliRunner().invoke(app, longer)
    assert third.exit_code == 0, third.output
    assert "training from the start" in third.output
    assert json.loads((out / "report.json").read_text())["train_seconds"] > 0

    # SIGTERM in training (the test hook, at step 2) exits 143 after writing last.pt, as
    # `seqkit train` does; the same command then resumes it to a report.
    (out / "report.json").unlink()
    shutil.rmtree(out / "run-ctc")
    monkeypatch.setenv(KILL_HOOK, "2:SIGTERM")
    stopped = CliRunner().invoke(app, args)
    assert stopped.exit_code == TERMINATED, stopped.output
    assert "interrupted" in stopped.output and (out / "run-ctc" / "last.pt").exists()
    assert not (out / "report.json").exists()
    monkeypatch.delenv(KILL_HOOK)
    resumed = CliRunner().invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert (out / "report.json").exists()


def test_demo_names_the_voice_engines_it_leaves_out_and_what_to_install() -> None:
    status = {"espeak": None, "piper": None,
              "flite": "flite is not installed: install the Debian package flite",
              "festival": "festival is not installed: install the Debian package festival"}
    assert left_out(("espeak", "piper"), status) == [
        "leaving out flite's voices of people: flite is not installed: install the Debian "
        "package flite",
        "leaving out festival's voices of people: festival is not installed: install the Debian "
        "package festival"]
    assert left_out(("espeak", "piper", "flite", "festival"), {k: None for k in status}) == []
