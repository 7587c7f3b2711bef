"""Recipes: TOML onto dataclasses, typed --set overrides, clear errors, round trips."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqkit.cli.main import app
from seqkit.errors import ConfigError
from seqkit.models.config import Cell, ModelConfig, ModelKind
from seqkit.training.config import (
    Amp,
    Optimizer,
    RecipeConfig,
    TrainConfig,
    load_recipe,
    recipe_to_toml,
)

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*/*.toml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_every_shipped_recipe_loads() -> None:
    assert len(RECIPES) >= 6
    kinds = {load_recipe(p).model.kind for p in RECIPES}
    assert kinds == {"ctc", "transducer", "lm"}


def test_overrides_reach_nested_fields_with_their_types(tmp_path: Path) -> None:
    path = _write(tmp_path, "[model.encoder]\nhidden = 64\n[train]\nlr = 0.01\n")
    recipe = load_recipe(path, ["model.encoder.hidden=32", "train.lr=1", "train.optimizer=sgd",
                                "data.features.kind=fbank80", "train.spec_augment=true"])
    assert recipe.model.encoder.hidden == 32
    assert recipe.train.lr == 1.0 and isinstance(recipe.train.lr, float)
    assert recipe.train.optimizer == "sgd" and recipe.train.spec_augment is True
    assert recipe.data.features.dim == 80


def test_unknown_key_lists_valid_keys_and_suggests_the_closest(tmp_path: Path) -> None:
    path = _write(tmp_path, "[model.encoder]\nhiden = 64\n")
    with pytest.raises(ConfigError, match=r"recipe.toml: unknown key model\.encoder\.hiden "
                                          r"\(did you mean model\.encoder\.hidden\?\)") as err:
        load_recipe(path)
    assert "model.encoder.layers" in str(err.value)


def test_unknown_override_key_names_the_override(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    with pytest.raises(ConfigError, match=r"--set train\.lrr=3: unknown key train\.lrr "
                                          r"\(did you mean train\.lr\?\)"):
        load_recipe(path, ["train.lrr=3"])


def test_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[train]\nmax_epochs = "ten"\n')
    with pytest.raises(ConfigError, match=r"recipe.toml: train\.max_epochs must be a integer"):
        load_recipe(path)
    with pytest.raises(ConfigError, match=r"--set train\.grad_clip=yes: train\.grad_clip must be"):
        load_recipe(_write(tmp_path, ""), ["train.grad_clip=yes"])


def test_invalid_values_and_conflicts_fail_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.optimizer must be one of adam, sgd"):
        load_recipe(_write(tmp_path, '[train]\noptimizer = "rmsprop"\n'))
    with pytest.raises(ConfigError, match="data.phone_set must be one of 61, 48, 39"):
        load_recipe(_write(tmp_path, "[data]\nphone_set = 40\n"))
    with pytest.raises(ConfigError, match="model.kind is 'ctc'"):
        load_recipe(_write(tmp_path, '[train]\ninit_encoder = "runs/ctc"\n'))
    with pytest.raises(ConfigError, match="train.freeze_encoder_epochs must be >= 0"):
        load_recipe(_write(tmp_path, "[train]\nfreeze_encoder_epochs = -1\n"))
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        load_recipe(_write(tmp_path, ""), ["train.lr"])


def test_missing_and_malformed_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(_write(tmp_path, "[train\n"))


def test_resolved_toml_round_trips(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPES[0], ["train.seed=7", "model.encoder.hidden=99"])
    text = recipe_to_toml(recipe)
    tomllib.loads(text)  # valid TOML
    again = load_recipe(_write(tmp_path, text))
    assert again == recipe
    assert RecipeConfig.from_dict(recipe.to_dict()) == recipe


def test_defaults_are_adam_with_clipping() -> None:
    t = TrainConfig()
    assert (t.optimizer, t.amp, t.grad_clip > 0, t.weight_noise) == ("adam", "off", True, 0.0)


CHOICES = [
    ("train.optimizer", "rmsprop", "adam, sgd"),
    ("train.amp", "fp32", "off, bf16, fp16"),
    ("model.kind", "hmm", "ctc, transducer, lm"),
    ("model.encoder.cell", "gru", "lstm, peephole"),
]


@pytest.mark.parametrize(("key", "bad", "allowed"), CHOICES, ids=[c[0] for c in CHOICES])
def test_a_bad_choice_names_the_allowed_values_from_toml_and_set(
    tmp_path: Path, key: str, bad: str, allowed: str
) -> None:
    table, _, name = key.rpartition(".")
    message = rf"{key} must be one of {allowed}, found '{bad}'"
    with pytest.raises(ConfigError, match=rf"^recipe recipe.toml: {message}$"):
        load_recipe(_write(tmp_path, f'[{table}]\n{name} = "{bad}"\n'))
    with pytest.raises(ConfigError, match=rf"^--set {key}={bad}: {message}$"):
        load_recipe(_write(tmp_path, ""), [f"{key}={bad}"])


def test_a_non_string_choice_is_a_type_error_listing_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.amp must be a string \(off, bf16, fp16\), "
                                          r"found 16 \(int\)"):
        load_recipe(_write(tmp_path, "[train]\namp = 16\n"))


def test_choices_load_as_enums_and_store_as_plain_strings(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, '[model]\nkind = "transducer"\n'),
                         ["train.amp=bf16", "train.optimizer=sgd", "model.encoder.cell=peephole"])
    assert recipe.model.kind is ModelKind.TRANSDUCER and recipe.train.amp is Amp.BF16
    assert recipe.train.optimizer is Optimizer.SGD and recipe.model.encoder.cell is Cell.PEEPHOLE
    plain = recipe.to_dict()  # what checkpoints and config.toml hold: torch.load(weights_only)
    values = [plain["model"]["kind"], plain["train"]["amp"], plain["train"]["optimizer"],
              plain["model"]["encoder"]["cell"]]
    assert values == ["transducer", "bf16", "sgd", "peephole"]
    assert all(type(v) is str for v in values)
    # a config dict stored before the Enums (plain strings) builds the same config
    assert ModelConfig.from_dict(plain["model"]) == recipe.model
    assert TrainConfig(optimizer="sgd", amp="bf16") == TrainConfig(optimizer=Optimizer.SGD,
                                                                   amp=Amp.BF16)
    with pytest.raises(ConfigError, match="train.amp must be one of off, bf16, fp16"):
        TrainConfig(amp="fp32")  # built directly, not from a recipe


def test_cli_refuses_a_bad_choice_with_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "synth/ctc_blstm", "--data", str(tmp_path / "d"),
                                      "--out", str(tmp_path / "run"), "--set", "train.amp=fp32"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "train.amp must be one of off, bf16, fp16, found 'fp32'" in lines[0]
    assert not (tmp_path / "run").exists()
