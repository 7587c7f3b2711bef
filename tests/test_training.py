"""Training end to end on a tiny synthesized corpus: learning, checkpoints, resume, errors, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import seqkit.training.trainer as trainer
from seqkit.cli.main import app
from seqkit.data.batching import Batch
from seqkit.errors import CheckpointError, ConfigError, OutputExistsError, TrainingError
from seqkit.models import build_model
from seqkit.models.checkpoint import load_model, save_checkpoint
from seqkit.training import load_recipe, train
from seqkit.training.pretrain import PretrainedTransducerRecipes, train_pretrained_transducer

TINY = """
[model]
kind = "{kind}"
joint_dim = 32
[model.encoder]
layers = 1
hidden = 32
stack = 3
[model.predictor]
embed = 16
hidden = 32
[train]
lr = 3e-3
max_frames = 1500
threads = 1
log_every = 2
[data]
phone_set = 39
"""


def _recipe(tmp_path: Path, kind: str, *overrides: str):
    path = tmp_path / f"{kind}.toml"
    path.write_text(TINY.format(kind=kind))
    return load_recipe(path, list(overrides))


def test_ctc_training_lowers_dev_loss_and_checkpoint_reloads_identically(
    prepared: Path, tmp_path: Path
) -> None:
    run = tmp_path / "ctc"
    summary = train(_recipe(tmp_path, "ctc"), prepared, run, max_epochs=4)
    assert summary.stopped == "max_epochs" and len(summary.epochs) == 4
    assert summary.epochs[-1].dev_loss < summary.epochs[0].dev_loss
    assert all(e.dev_per_pct is not None and e.skipped == 0 for e in summary.epochs)
    for name in ("best.pt", "last.pt", "config.toml", "metrics.jsonl", "curves.png"):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3, 4]
    assert any(r["kind"] == "step" for r in records)
    assert load_recipe(run / "config.toml") == _recipe(tmp_path, "ctc")
    # last.pt rebuilds into the same function
    loaded = load_model(run / "last.pt", expect_kind="ctc")
    payload = torch.load(run / "last.pt", weights_only=True)
    assert payload["phone_set"] == 39 and payload["vocab"][0] == "<blank>"
    assert payload["stats"] is not None and payload["epoch"] == 4
    feats = torch.randn(2, 40, loaded.features.dim, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([40, 31])
    again = load_model(run / "last.pt")
    a, _ = loaded.model.log_probs(feats, lengths)
    b, _ = again.model.log_probs(feats, lengths)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_transducer_training_lowers_dev_loss(prepared: Path, tmp_path: Path) -> None:
    summary = train(_recipe(tmp_path, "transducer"), prepared, tmp_path / "rnnt", max_epochs=3)
    assert summary.epochs[-1].dev_loss < summary.epochs[0].dev_loss
    assert load_model(tmp_path / "rnnt", expect_kind="transducer").kind == "transducer"


def test_transducer_with_joint_stride_2_trains_through_the_trainer(
    prepared: Path, tmp_path: Path
) -> None:
    summary = train(_recipe(tmp_path, "transducer", "model.joint_stride=2"), prepared,
                    tmp_path / "rnnt2", max_epochs=3)
    assert summary.epochs[-1].dev_loss < summary.epochs[0].dev_loss
    assert all(e.dev_per_pct is not None and e.skipped == 0 for e in summary.epochs)
    loaded = load_model(tmp_path / "rnnt2", expect_kind="transducer")
    assert loaded.config.joint_stride == 2 and loaded.model.output_stride == 6


def test_pruned_transducer_trains_through_the_trainer(prepared: Path, tmp_path: Path) -> None:
    summary = train(_recipe(tmp_path, "transducer", "model.prune_range=3"), prepared,
                    tmp_path / "pruned", max_epochs=3)
    assert summary.epochs[-1].dev_loss < summary.epochs[0].dev_loss  # the full loss, in eval
    assert all(e.dev_per_pct is not None and e.skipped == 0 for e in summary.epochs)
    loaded = load_model(tmp_path / "pruned", expect_kind="transducer")
    assert loaded.config.prune_range == 3 and hasattr(loaded.model, "simple_f")


def test_phone_lm_trains_on_transcripts_only(prepared: Path, tmp_path: Path) -> None:
    summary = train(_recipe(tmp_path, "lm", "train.max_frames=400"), prepared, tmp_path / "lm",
                    max_epochs=3)
    assert summary.epochs[-1].dev_loss < summary.epochs[0].dev_loss
    assert all(e.dev_per_pct is None for e in summary.epochs)


def test_resume_after_interruption_equals_an_uninterrupted_run(
    prepared: Path, tmp_path: Path
) -> None:
    knobs = ("train.max_frames=900", "train.weight_noise=0.01", "train.spec_augment=true",
             "model.encoder.dropout=0.0", "train.warmup_steps=3", "train.vtlp=0.1",
             "train.speed_perturb=0.1", "train.channel_db=6", "train.lowpass_probability=0.5")
    full = train(_recipe(tmp_path, "ctc", *knobs), prepared, tmp_path / "full", max_epochs=2)
    steps_per_epoch = full.steps // 2
    assert steps_per_epoch >= 2
    stop_at = steps_per_epoch + 1  # in the middle of epoch 2
    part = train(_recipe(tmp_path, "ctc", *knobs, f"train.max_steps={stop_at}"), prepared,
                 tmp_path / "part", max_epochs=2)
    assert part.stopped == "max_steps" and part.steps == stop_at
    resumed = train(_recipe(tmp_path, "ctc", *knobs), prepared, tmp_path / "part",
                    max_epochs=2, resume=True)
    assert resumed.steps == full.steps
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    for name, value in a["model"].items():
        torch.testing.assert_close(b["model"][name], value, rtol=0, atol=0, msg=name)
    assert a["scheduler"] == b["scheduler"]
    assert [e.dev_loss for e in resumed.epochs] == [e.dev_loss for e in full.epochs]


def test_resume_accepts_a_last_pt_written_before_model_joint_stride_existed(
    prepared: Path, tmp_path: Path
) -> None:
    run = tmp_path / "old"
    train(_recipe(tmp_path, "ctc", "train.max_steps=1"), prepared, run, max_epochs=1)
    payload = torch.load(run / "last.pt", weights_only=True)
    del payload["model_config"]["joint_stride"]  # as seqkit wrote it before the option
    save_checkpoint(run / "last.pt", payload)
    resumed = train(_recipe(tmp_path, "ctc"), prepared, run, max_epochs=1, resume=True)
    assert resumed.stopped == "max_epochs" and resumed.steps > 1  # went on from step 1
    with pytest.raises(CheckpointError, match="another model config"):  # a real difference
        train(_recipe(tmp_path, "ctc", "model.encoder.hidden=48"), prepared, run, max_epochs=2,
              resume=True)


def test_non_finite_losses_are_skipped_counted_and_abort_when_persistent(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = trainer.FeatureDataset.collate
    calls = {"n": 0}

    def poisoned(self, indices):  # type: ignore[no-untyped-def]
        batch: Batch = original(self, indices)
        calls["n"] += 1
        if calls["n"] == 2:  # one training batch full of NaN
            return Batch(batch.ids, torch.full_like(batch.feats, float("nan")),
                         batch.feat_lengths, batch.targets, batch.target_lengths)
        return batch

    monkeypatch.setattr(trainer.FeatureDataset, "collate", poisoned)
    summary = train(_recipe(tmp_path, "ctc"), prepared, tmp_path / "nan", max_epochs=1)
    assert summary.epochs[0].skipped == 1
    assert all(torch.isfinite(v).all() for v in
               torch.load(tmp_path / "nan" / "last.pt", weights_only=True)["model"].values())

    def always_nan(self, indices):  # type: ignore[no-untyped-def]
        batch: Batch = original(self, indices)
        return Batch(batch.ids, torch.full_like(batch.feats, float("nan")), batch.feat_lengths,
                     batch.targets, batch.target_lengths)

    monkeypatch.setattr(trainer.FeatureDataset, "collate", always_nan)
    with pytest.raises(TrainingError, match="2 non-finite losses or gradients in a row.*train.lr"):
        train(_recipe(tmp_path, "ctc", "train.max_bad_steps=2"), prepared, tmp_path / "nan2")


def test_existing_run_dir_is_refused_without_resume_or_force(
    prepared: Path, tmp_path: Path
) -> None:
    run = tmp_path / "taken"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--resume.*--force"):
        train(_recipe(tmp_path, "ctc"), prepared, run)


def test_cli_trains_and_reports_errors_with_exit_2(prepared: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "ctc.toml"
    recipe.write_text(TINY.format(kind="ctc"))
    runner = CliRunner()
    ok = runner.invoke(app, ["train", str(recipe), "--data", str(prepared), "--out",
                             str(tmp_path / "cli"), "--max-epochs", "1", "--seed", "4"])
    assert ok.exit_code == 0, ok.output
    assert "dev PER" in ok.output and (tmp_path / "cli" / "best.pt").exists()
    assert load_recipe(tmp_path / "cli" / "config.toml").train.seed == 4
    again = runner.invoke(app, ["train", str(recipe), "--data", str(prepared), "--out",
                                str(tmp_path / "cli")])
    assert again.exit_code == 2 and "exists" in again.output
    typo = runner.invoke(app, ["train", str(recipe), "--data", str(prepared), "--out",
                               str(tmp_path / "x"), "--set", "train.lrate=1"])
    assert typo.exit_code == 2 and "did you mean train.lr" in typo.output


def test_plateau_schedule_waits_for_the_first_improvement_then_reduces_the_lr() -> None:
    from seqkit.training.schedule import PlateauSchedule

    schedule = PlateauSchedule(base_lr=1e-3, warmup_steps=0, factor=0.5, patience=2, min_lr=1e-6)
    for score in (97.4, 97.4, 97.4, 97.4):  # blank-only epochs: not a plateau to react to
        schedule.update(score)
    assert schedule.lr(1000) == 1e-3
    schedule.update(60.0)  # the model starts emitting phones
    schedule.update(61.0)
    schedule.update(60.5)  # two epochs without improvement: halve
    assert schedule.lr(1000) == 5e-4
    restored = PlateauSchedule(base_lr=1e-3, warmup_steps=0, factor=0.5, patience=2, min_lr=1e-6)
    restored.load_state_dict(schedule.state_dict())
    assert restored == schedule


def test_budget_anneal_lowers_the_lr_as_the_time_budget_runs_out(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trainer's clock advances a fixed 0.25 s per reading, so how many steps fit in the
    # budget does not depend on how busy the machine is.
    ticks = iter(range(10**9))
    monkeypatch.setattr(trainer.time, "monotonic", lambda: 0.25 * next(ticks))
    recipe = _recipe(tmp_path, "ctc", "train.budget_anneal=true", "train.log_every=1")
    train(recipe, prepared, tmp_path / "run", max_epochs=50, max_minutes=0.15)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    rates = [r["lr"] for r in records if r["kind"] == "step"]
    assert len(rates) >= 3
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:], strict=False))
    assert rates[-1] < 0.8 * rates[0] and rates[-1] >= 0.05 * 3e-3 * 0.999


def test_pretrained_transducer_starts_from_the_ctc_encoder_and_the_phone_lm(
    prepared: Path, tmp_path: Path
) -> None:
    recipes = PretrainedTransducerRecipes(
        ctc=_recipe(tmp_path, "ctc", "train.max_epochs=2"),
        lm=_recipe(tmp_path, "lm", "train.max_epochs=2", "train.max_frames=400"),
        # a vanishing LR: after one epoch the transducer still holds the pretrained weights
        transducer=_recipe(tmp_path, "transducer", "train.max_epochs=1", "train.lr=1e-12",
                           "train.min_lr=0"),
    )
    run = tmp_path / "pretrans"
    summary = train_pretrained_transducer(recipes, prepared, run, max_minutes=5)
    assert summary.stopped == "max_epochs" and summary.run_dir == run
    stages = json.loads((run / "pretrain" / "stages.json").read_text())
    assert list(stages) == ["ctc", "lm", "transducer"]
    model = torch.load(run / "best.pt", weights_only=True)["model"]
    for part, source in (("encoder.", "ctc"), ("predictor.", "lm")):
        pretrained = torch.load(run / "pretrain" / source / "best.pt", weights_only=True)["model"]
        names = [k for k in pretrained if k.startswith(part)]
        assert names
        for name in names:
            torch.testing.assert_close(model[name], pretrained[name], rtol=0, atol=1e-6)
    # on resume the pretraining stages are reused and the transducer continues (here: its
    # max_epochs are done, so it stops at once with the same weights)
    stamp = (run / "pretrain" / "ctc" / "best.pt").stat().st_mtime_ns
    again = train_pretrained_transducer(recipes, prepared, run, max_minutes=5, resume=True)
    assert again.stopped == "max_epochs" and len(again.epochs) == 1
    assert (run / "pretrain" / "ctc" / "best.pt").stat().st_mtime_ns == stamp
    with pytest.raises(OutputExistsError, match="not empty"):
        train_pretrained_transducer(recipes, prepared, run, max_minutes=5)


def test_a_frozen_pretrained_encoder_waits_its_epochs_while_the_joint_learns(
    prepared: Path, tmp_path: Path
) -> None:
    train(_recipe(tmp_path, "ctc"), prepared, tmp_path / "ctc", max_epochs=1)
    ctc = torch.load(tmp_path / "ctc" / "best.pt", weights_only=True)["model"]
    recipe = _recipe(tmp_path, "transducer", f"train.init_encoder={tmp_path / 'ctc'}",
                     "train.freeze_encoder_epochs=1")
    run = tmp_path / "rnnt"
    train(recipe, prepared, run, max_epochs=1)
    first = torch.load(run / "last.pt", weights_only=True)["model"]
    encoder = [k for k in ctc if k.startswith("encoder.")]
    assert encoder
    for name in encoder:  # bit for bit: no update, not even Adam's first one
        torch.testing.assert_close(first[name], ctc[name], rtol=0, atol=0)
    loaded = load_model(run / "last.pt")
    torch.manual_seed(recipe.train.seed)  # the trainer's initial weights
    dims = {"input_dim": loaded.input_dim, "vocab_size": len(loaded.vocab)}
    start = build_model(recipe.model, **dims).state_dict()
    assert not torch.equal(first["joint_out.weight"], start["joint_out.weight"])  # it learned
    # resumed into epoch 2 the encoder trains again
    second = train(recipe, prepared, run, max_epochs=2, resume=True)
    assert second.stopped == "max_epochs"
    trained = torch.load(run / "last.pt", weights_only=True)["model"]
    assert any(not torch.equal(trained[name], ctc[name]) for name in encoder)
    # without a pretrained encoder there is nothing to wait for: the option is ignored
    scratch = _recipe(tmp_path, "transducer", "train.freeze_encoder_epochs=1")
    train(scratch, prepared, tmp_path / "scratch", max_epochs=1)
    moved = torch.load(tmp_path / "scratch" / "last.pt", weights_only=True)["model"]
    assert any(not torch.equal(moved[name], start[name]) for name in encoder)


def test_pretrained_transducer_recipes_must_share_encoder_predictor_and_phones(
    tmp_path: Path,
) -> None:
    ctc, lm = _recipe(tmp_path, "ctc"), _recipe(tmp_path, "lm")
    transducer = _recipe(tmp_path, "transducer")
    with pytest.raises(ConfigError, match="encoder"):
        PretrainedTransducerRecipes(_recipe(tmp_path, "ctc", "model.encoder.hidden=48"), lm,
                                    transducer)
    with pytest.raises(ConfigError, match="prediction network"):
        PretrainedTransducerRecipes(ctc, _recipe(tmp_path, "lm", "model.predictor.hidden=48"),
                                    transducer)
    with pytest.raises(ConfigError, match="phone sets"):
        PretrainedTransducerRecipes(ctc, _recipe(tmp_path, "lm", "data.phone_set=61"),
                                    transducer)
    with pytest.raises(ConfigError, match="in that order"):
        PretrainedTransducerRecipes(lm, ctc, transducer)
    with pytest.raises(ConfigError, match="ctc_share"):
        PretrainedTransducerRecipes(ctc, lm, transducer, ctc_share=1.0)
    # the joint is the transducer's own: a CTC encoder pretrains a joint_stride = 2 transducer
    PretrainedTransducerRecipes(ctc, lm, _recipe(tmp_path, "transducer", "model.joint_stride=2"))


def test_bf16_falls_back_to_the_same_float32_run_on_a_cpu_without_native_bfloat16(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fp32 = _short_run(prepared, tmp_path, "off", "off")
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    fallback = _short_run(prepared, tmp_path, "fallback", "bf16")
    assert fallback.epochs[0].train_loss == fp32.epochs[0].train_loss  # the same float32 run


@pytest.mark.skipif(not trainer.cpu_has_native_bf16(),
                    reason="this CPU has no bfloat16 hardware (AVX512-BF16/AMX): oneDNN has no "
                           "bf16 LSTM there; the fallback test covers it")
def test_bf16_trains_in_bfloat16_on_a_cpu_with_native_bfloat16(
    prepared: Path, tmp_path: Path
) -> None:
    fp32 = _short_run(prepared, tmp_path, "off", "off")
    bf16 = _short_run(prepared, tmp_path, "bf16", "bf16")
    loss, reference = bf16.epochs[0].train_loss, fp32.epochs[0].train_loss
    assert loss != reference and abs(loss - reference) < 0.05 * reference  # bf16, and close


def _short_run(prepared: Path, tmp_path: Path, name: str, amp: str):
    """Four CTC steps with ``train.amp`` set: enough to tell a bf16 run from a float32 one."""
    recipe = _recipe(tmp_path, "ctc", f"train.amp={amp}", "train.max_steps=4")
    return train(recipe, prepared, tmp_path / name, max_epochs=1)
