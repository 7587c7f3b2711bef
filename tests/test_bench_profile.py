"""``seqkit bench profile`` (issue #19): a training step cut into phases does the same work;
``seqkit bench train`` times a recipe variant given by ``--set``."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from seqkit.bench import profile
from seqkit.bench.train import training_batches
from seqkit.cli.main import app
from seqkit.training import load_recipe

runner = CliRunner()
TINY_MODEL = ("model.encoder.layers=1", "model.encoder.hidden=16", "model.predictor.embed=8",
              "model.predictor.hidden=16", "model.joint_dim=16", "model.encoder.dropout=0",
              "train.max_frames=2000")


class _CaptureGradients:
    """Stands in for the optimizer: keeps the gradients the step would apply."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.params = list(model.parameters())
        self.grads: list[torch.Tensor] = []

    def step(self) -> None:
        self.grads = [p.grad.clone() for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None


AUX = (profile.AUX_CTC_PHASE,)
WITH_AUX = ("model.ctc_loss_scale=0.3",)  # an auxiliary CTC loss on the encoder


@pytest.mark.parametrize(("recipe", "step", "extra", "phases"), [
    ("synth/ctc_blstm", profile.ctc_step, (), profile.CTC_PHASES),
    ("synth/transducer", profile.pruned_transducer_step, (), profile.PRUNED_PHASES),
    ("synth/transducer", profile.pruned_transducer_step, ("model.joint_stride=2",),
     profile.PRUNED_PHASES),
    ("synth/transducer", profile.pruned_transducer_step, ("model.joint_stride=2", *WITH_AUX),
     profile.PRUNED_PHASES + AUX),
    ("synth/transducer", profile.transducer_step, ("model.prune_range=0",),
     profile.TRANSDUCER_PHASES + profile.FUSED_PHASES),
    ("synth/transducer", profile.transducer_step, ("model.prune_range=0",
                                                   "model.joint_stride=2", *WITH_AUX),
     profile.TRANSDUCER_PHASES + profile.FUSED_PHASES + AUX),
])
def test_phase_split_step_gives_the_ordinary_steps_gradients(prepared, recipe, step, extra,
                                                             phases):
    config = load_recipe(recipe, [*TINY_MODEL, *extra])
    data, batches, model = training_batches(config, prepared, 1)
    batch = data.collate(batches[0])
    capture = _CaptureGradients(model)
    clock = profile._Clock()
    step(model, batch, capture, 1e9, clock)  # no clipping at 1e9
    assert set(clock.ms) == set(phases) == set(profile.phases(config.model)) | (
        set(profile.FUSED_PHASES) if step is profile.transducer_step else set())
    split = capture.grads
    nll = model(batch.feats, batch.feat_lengths, batch.targets, batch.target_lengths)
    (nll.sum() / batch.target_lengths.sum()).backward()
    for got, param in zip(split, capture.params, strict=True):
        torch.testing.assert_close(got, param.grad, rtol=1e-4, atol=1e-6)


def test_profile_rows_give_each_phase_its_share_and_the_whole_step(prepared):
    shipped = profile.run(prepared, steps=1, overrides=TINY_MODEL)  # the transducer is pruned
    full = profile.run(prepared, recipes=("synth/transducer",), steps=1,
                       overrides=(*TINY_MODEL, "model.prune_range=0", *WITH_AUX))
    for rows, recipe, phases, beside in (
            (shipped, "synth/ctc_blstm", profile.CTC_PHASES, ()),
            (shipped, "synth/transducer", profile.PRUNED_PHASES, ()),
            (full, "synth/transducer", profile.TRANSDUCER_PHASES[:-2] + AUX
             + profile.TRANSDUCER_PHASES[-2:], profile.FUSED_PHASES)):
        mine = [r for r in rows if r["recipe"] == recipe]
        assert [r["phase"] for r in mine] == [*phases, *(f"({p})" for p in beside),
                                              "sum of phases", "whole step"]
        assert all(r["ms"] >= 0 for r in mine)
        assert sum(r["share %"] for r in mine[: len(phases)]) == pytest.approx(100.0)
        if recipe == "synth/transducer":
            total = next(r for r in mine if r["phase"] == "sum of phases")
            assert "logits" in total["batch"] and "J=16" in total["batch"]
            assert ("S=" in total["batch"]) == (rows is shipped)


def test_bench_profile_without_a_prepared_corpus_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["bench", "profile", "--data", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not a prepared corpus" in lines[0], result.output


def test_bench_profile_refuses_a_language_model_recipe_in_one_line(prepared):
    result = runner.invoke(app, ["bench", "profile", "--data", str(prepared),
                                 "--recipe", "synth/lm"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "times CTC and transducer recipes" in lines[0], result.output


def test_bench_train_times_a_recipe_with_set_overrides(prepared):
    """``seqkit bench train --recipe R --set KEY=VALUE``: the variant a change is timed with."""
    sets = [arg for value in (*TINY_MODEL, "model.joint_stride=2") for arg in ("--set", value)]
    result = runner.invoke(app, ["bench", "train", "--data", str(prepared), "--steps", "1",
                                 "--recipe", "synth/transducer", *sets, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["recipe"] for r in rows] == ["synth/transducer"]
    assert rows[0]["ours_frames_per_s"] > 0 and rows[0]["plain_frames_per_s"] > 0
    assert rows[0]["plain_peak_mib"] >= 0  # Linux: the step's rise above its start
    bad = runner.invoke(app, ["bench", "train", "--data", str(prepared), "--recipe",
                              "synth/transducer", "--set", "model.joint_strde=2"])
    assert bad.exit_code == 2 and "did you mean model.joint_stride" in bad.output


def test_bench_train_two_corpora_times_a_step_on_two_against_one(prepared, tmp_path):
    """``seqkit bench train --two-corpora``: our step on --data and a copy of it against --data
    alone (#29); the timing itself is the lead's, on a quiet machine."""
    sets = [arg for value in (*TINY_MODEL, "train.max_frames=300") for arg in ("--set", value)]
    result = runner.invoke(app, ["bench", "train", "--data", str(prepared), "--two-corpora",
                                 "--steps", "3", "--recipe", "synth/ctc_blstm", *sets,
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["recipe"] for r in rows] == ["synth/ctc_blstm"] and rows[0]["steps"] == 3
    for side in ("one", "two"):
        assert rows[0][f"{side}_ms_per_step"] > 0 and rows[0][f"{side}_frames_per_s"] > 0
    assert rows[0]["ratio"] == pytest.approx(rows[0]["one_frames_per_s"]
                                             / rows[0]["two_frames_per_s"])
    missing = runner.invoke(app, ["bench", "train", "--data", str(prepared), "--two-corpora",
                                  "--second", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "is not a prepared corpus" in missing.output
