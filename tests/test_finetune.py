"""Fine-tuning with ``seqkit train --init`` (#29.6): a trained model's weights and statistics,
a fresh optimizer, and a one-line refusal of a model that does not fit."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seqkit.cli.main import app
from seqkit.corpora.timit.prepare import prepare_corpus
from seqkit.errors import CheckpointError, ConfigError
from seqkit.synth.corpus import synthesize_corpus
from seqkit.training import load_recipe, read_run_log, train
from seqkit.training.runlog import Notice

SMALL = """
[model]
kind = "{kind}"
joint_dim = 32
[model.encoder]
layers = 1
hidden = 48
stack = 3
[train]
lr = {lr}
max_frames = 900
threads = 1
patience = 0
[data]
phone_set = 39
"""


def _recipe(tmp_path: Path, *overrides: str, kind: str = "ctc", lr: float = 1e-3):
    path = tmp_path / f"{kind}-{lr}.toml"
    path.write_text(SMALL.format(kind=kind, lr=lr))
    return load_recipe(path, list(overrides))


@pytest.fixture(scope="module")
def trained(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """A CTC run of 20 epochs at lr 1e-2 on ``prepared`` (about 15 s): its dir and epochs.

    Its dev PER falls from ~97% (blanks and a few phones) to ~70%."""
    root = tmp_path_factory.mktemp("init")
    summary = train(_recipe(root, lr=1e-2), prepared, root / "run", max_epochs=20)
    return root / "run", summary.epochs


@pytest.fixture(scope="module")
def other_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny synthesized corpus (other voices and sentences), prepared."""
    root = tmp_path_factory.mktemp("synth_S4x2_ft")
    synthesize_corpus(root / "corpus", speakers=4, sentences=2, seed=5)
    prepare_corpus(root / "corpus", root / "prepared")
    return root / "prepared"


def test_init_starts_at_the_init_run_s_dev_per_with_a_fresh_optimizer(
    prepared: Path, trained: tuple[Path, list], tmp_path: Path
) -> None:
    run, history = trained
    best = min(e.dev_per_pct for e in history)
    scratch_first = history[0].dev_per_pct
    assert scratch_first - best > 15  # the init run learned something
    notices: list[str] = []
    summary = train(_recipe(tmp_path), prepared, tmp_path / "ft", init=run, max_epochs=1,
                    log=lambda r: notices.append(r.text) if isinstance(r, Notice) else None)
    first = summary.epochs[0].dev_per_pct
    assert abs(first - best) < 6, (first, best)  # continues where it left off ...
    assert first < scratch_first - 15  # ... far below a run from scratch after one epoch
    assert any("fine-tuning from" in n and str(run / "best.pt") in n and "fresh optimizer" in n
               and "its statistics" in n for n in notices), notices
    saved = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    init = torch.load(run / "best.pt", weights_only=True)
    assert saved["init"]["path"] == str(run / "best.pt")
    assert saved["init"]["best_score"] == pytest.approx(best)
    # a fresh optimizer and schedule: its own steps and epochs only
    assert saved["epoch"] == 1 and saved["step"] == summary.steps < init["step"]
    table = tomllib.loads((tmp_path / "ft" / "config.toml").read_text())["run"]
    assert table["init"] == str(run / "best.pt")
    assert read_run_log(tmp_path / "ft").run.init["path"] == str(run / "best.pt")


def test_a_fine_tuned_model_keeps_its_init_statistics_and_resumes_bit_exactly(
    trained: tuple[Path, list], other_corpus: Path, tmp_path: Path
) -> None:
    run, _ = trained
    knobs = ("train.vtlp=0.1", "train.spec_augment=true", "train.max_frames=500")
    full = train(_recipe(tmp_path, *knobs), other_corpus, tmp_path / "full", init=run,
                 max_epochs=2)
    init_stats = torch.load(run / "best.pt", weights_only=True)["stats"]
    saved = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    assert saved["stats"] == init_stats  # not other_corpus's own stats.json
    assert "stats.json" not in saved["corpora"][0]["sha256"]  # not read
    stop_at = full.steps // 2 + 1
    part = train(_recipe(tmp_path, *knobs, f"train.max_steps={stop_at}"), other_corpus,
                 tmp_path / "part", init=run, max_epochs=2)
    assert part.steps == stop_at
    resumed = train(_recipe(tmp_path, *knobs), other_corpus, tmp_path / "part", max_epochs=2,
                    resume=True)  # --init need not be repeated: the run recorded it
    again = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert resumed.steps == full.steps and again["stats"] == init_stats
    for name, value in saved["model"].items():
        torch.testing.assert_close(again["model"][name], value, rtol=0, atol=0, msg=name)
    with pytest.raises(CheckpointError, match="started from .*best.pt; resume without --init"):
        train(_recipe(tmp_path, *knobs), other_corpus, tmp_path / "part", max_epochs=3,
              resume=True, init=tmp_path / "full")


@pytest.mark.parametrize(("overrides", "kind", "message"), [
    (("data.phone_set=61",), "ctc", "trained on 39 phones, the recipe on 61.*data.phone_set=39"),
    ((), "transducer", "holds a ctc model, the recipe trains a transducer"),
    (("data.features.kind=fbank80",), "ctc",
     "features with kind = fbank123, the recipe has fbank80.*data.features.kind=fbank123"),
    (("data.features.cmn=true",), "ctc", "cmn = false, the recipe has true"),
    (("model.encoder.hidden=32",), "ctc",
     "model.encoder.hidden = 48, the recipe 32.*--set model.encoder.hidden=48"),
    (("model.encoder.bidirectional=false",), "ctc", "model.encoder.bidirectional = true"),
])
def test_init_refuses_a_model_of_another_phone_set_kind_front_end_or_shape(
    prepared: Path, trained: tuple[Path, list], tmp_path: Path, overrides: tuple[str, ...],
    kind: str, message: str
) -> None:
    run, _ = trained
    with pytest.raises(CheckpointError, match=message):
        train(_recipe(tmp_path, *overrides, kind=kind), prepared, tmp_path / "ft", init=run)
    assert not (tmp_path / "ft").exists()  # refused before anything was written


def test_a_refused_init_leaves_the_run_that_force_would_replace(
    prepared: Path, trained: tuple[Path, list], tmp_path: Path
) -> None:
    """--force starts over only once the --init model fits: a refusal loses nothing."""
    run, _ = trained
    out = tmp_path / "ft"
    train(_recipe(tmp_path, "train.max_steps=1"), prepared, out, max_epochs=1)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(CheckpointError, match="trained on 39 phones"):
        train(_recipe(tmp_path, "data.phone_set=61"), prepared, out, init=run, force=True)
    assert sorted(p.name for p in out.iterdir()) == before and (out / "last.pt").exists()


def test_init_with_another_dropout_is_accepted(
    prepared: Path, trained: tuple[Path, list], tmp_path: Path
) -> None:
    """Dropout shapes no weight: a fine-tuning recipe may change it."""
    run, _ = trained
    summary = train(_recipe(tmp_path, "model.encoder.dropout=0.3", "train.max_steps=1"),
                    prepared, tmp_path / "ft", init=run, max_epochs=1)
    assert summary.steps == 1


def test_init_refusals_on_the_command_line_are_one_line_and_exit_2(
    prepared: Path, trained: tuple[Path, list], tmp_path: Path
) -> None:
    run, _ = trained
    (tmp_path / "r.toml").write_text(SMALL.format(kind="ctc", lr=1e-3))
    runner = CliRunner()
    for extra, message in ((["--set", "data.phone_set=61"], "trained on 39 phones"),
                           ([], "not found")):
        init = str(tmp_path / "missing") if message == "not found" else str(run)
        result = runner.invoke(app, ["train", str(tmp_path / "r.toml"), "--data", str(prepared),
                                     "--out", str(tmp_path / "out"), "--init", init, *extra])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
        assert not (tmp_path / "out").exists()


def test_init_cannot_be_combined_with_a_pretrained_encoder(
    prepared: Path, trained: tuple[Path, list], tmp_path: Path
) -> None:
    run, _ = trained
    recipe = _recipe(tmp_path, f"train.init_encoder={run}", kind="transducer")
    with pytest.raises(ConfigError, match="--init loads the whole model"):
        train(recipe, prepared, tmp_path / "t", init=run)


def test_the_finetune_recipe_fits_the_demo_model_at_a_lower_learning_rate() -> None:
    """synth/finetune takes `--init demo/run-ctc`: synth/ctc_blstm's weights and inputs."""
    demo, finetune = load_recipe("synth/ctc_blstm"), load_recipe("synth/finetune")
    assert finetune.model == demo.model
    assert finetune.data.features == demo.data.features
    assert finetune.data.phone_set == demo.data.phone_set
    assert finetune.train.lr <= demo.train.lr / 5
