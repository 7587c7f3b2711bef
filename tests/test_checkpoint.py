"""Checkpoints: atomic save, exact reload, clear errors, initialization from pretrained runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from seqkit.audio.features import FeatureConfig, FeatureStats
from seqkit.data.phones import vocabulary
from seqkit.errors import CheckpointError, ConfigError
from seqkit.models import EncoderConfig, ModelConfig, PredictorConfig, build_model
from seqkit.models.checkpoint import (
    FORMAT_VERSION,
    init_from_pretrained,
    load_checkpoint,
    load_model,
    model_payload,
    save_checkpoint,
)

VOCAB = list(vocabulary(39))  # blank + 39 phones
F = 123
ENCODER = EncoderConfig(layers=2, hidden=8)
PREDICTOR = PredictorConfig(embed=6, hidden=8)
FEATURES = FeatureConfig()
STATS = FeatureStats(mean=torch.linspace(-1, 1, F), std=torch.linspace(0.5, 2, F), frames=1000)


def make(kind: str, seed: int = 0, **config) -> nn.Module:
    torch.manual_seed(seed)
    config = ModelConfig(
        kind=kind,
        encoder=config.get("encoder", ENCODER),
        predictor=config.get("predictor", PREDICTOR),
        joint_dim=10,
        joint_stride=config.get("joint_stride", 1),
    )
    return build_model(config, input_dim=F, vocab_size=len(VOCAB))


def save(model: nn.Module, path: Path, **extra) -> Path:
    payload = model_payload(model, vocab=VOCAB, phone_set=39, features=FEATURES, stats=STATS)
    payload.update(extra)
    return save_checkpoint(path, payload)


def tiny_B2_T9_F123() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, 9, F, generator=torch.Generator().manual_seed(0)), torch.tensor([9, 5])


def test_ctc_round_trip_gives_identical_outputs_and_metadata(tmp_path: Path) -> None:
    model = make("ctc").eval()
    path = save(model, tmp_path / "run" / "best.pt", epoch=4)
    loaded = load_model(tmp_path / "run")
    assert loaded.kind == "ctc" and loaded.epoch == 4 and loaded.phone_set == 39
    assert loaded.vocab == VOCAB and loaded.config == model.config and loaded.path == path
    assert loaded.features == FEATURES and loaded.input_dim == F and loaded.seqkit_version
    assert torch.equal(loaded.stats.mean, STATS.mean) and loaded.stats.frames == 1000
    assert not loaded.model.training
    feats, lengths = tiny_B2_T9_F123()
    expected, _ = model.log_probs(feats, lengths)
    got, _ = loaded.model.log_probs(feats, lengths)
    assert torch.equal(got, expected)


def test_transducer_and_lm_round_trip_give_identical_losses(tmp_path: Path) -> None:
    feats, lengths = tiny_B2_T9_F123()
    targets, target_lengths = torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2])
    transducer = make("transducer").eval()
    save(transducer, tmp_path / "t.pt")
    loaded = load_model(tmp_path / "t.pt", expect_kind="transducer").model
    assert torch.equal(
        loaded(feats, lengths, targets, target_lengths),
        transducer(feats, lengths, targets, target_lengths),
    )
    lm = make("lm").eval()
    save_checkpoint(
        tmp_path / "lm.pt",
        model_payload(lm, vocab=VOCAB, phone_set=39, features=None, stats=None),
    )
    loaded_lm = load_model(tmp_path / "lm.pt", expect_kind="lm")
    assert loaded_lm.features is None and loaded_lm.stats is None
    assert torch.equal(loaded_lm.model(targets, target_lengths), lm(targets, target_lengths))


def test_joint_stride_round_trips_and_a_checkpoint_without_it_loads_as_stride_1(
    tmp_path: Path,
) -> None:
    feats, lengths = tiny_B2_T9_F123()
    targets, target_lengths = torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2])
    strided = make("transducer", joint_stride=2).eval()
    loaded = load_model(save(strided, tmp_path / "s2.pt"))
    assert loaded.config.joint_stride == 2 and loaded.model.output_stride == 2
    assert torch.equal(loaded.model(feats, lengths, targets, target_lengths),
                       strided(feats, lengths, targets, target_lengths))
    # a checkpoint written before model.joint_stride existed records no such key
    old = make("transducer").eval()
    path = save(old, tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["model_config"]["joint_stride"]
    save_checkpoint(path, payload)
    loaded = load_model(path, expect_kind="transducer")
    assert loaded.config.joint_stride == 1 and loaded.config == old.config
    assert torch.equal(loaded.model(feats, lengths, targets, target_lengths),
                       old(feats, lengths, targets, target_lengths))


def test_run_dir_prefers_best_over_last(tmp_path: Path) -> None:
    save(make("ctc"), tmp_path / "last.pt", epoch=7)
    assert load_model(tmp_path).epoch == 7
    save(make("ctc"), tmp_path / "best.pt", epoch=5)
    assert load_model(tmp_path).epoch == 5


def test_save_is_atomic_and_overwrites_without_leftovers(tmp_path: Path) -> None:
    model = make("ctc")
    save(model, tmp_path / "last.pt", epoch=1)
    save(model, tmp_path / "last.pt", epoch=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2


def test_training_state_survives_weights_only_loading(tmp_path: Path) -> None:
    model = make("ctc")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    feats, lengths = tiny_B2_T9_F123()
    model(feats, lengths, torch.tensor([[3, 4], [5, 0]]), torch.tensor([2, 1])).sum().backward()
    optimizer.step()
    rng = torch.get_rng_state()
    save(
        model,
        tmp_path / "last.pt",
        optimizer=optimizer.state_dict(),
        step=1,
        rng=rng,
        train_config={"optimizer": {"lr": 1e-3}},
    )
    payload = load_checkpoint(tmp_path / "last.pt")
    assert payload["format"] == "seqkit-checkpoint" and payload["format_version"] == FORMAT_VERSION
    restored = torch.optim.Adam(make("ctc").parameters(), lr=1e-3)
    restored.load_state_dict(payload["optimizer"])
    assert torch.equal(payload["rng"], rng)
    assert torch.equal(
        restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
    assert payload["train_config"] == {"optimizer": {"lr": 1e-3}}


def test_save_rejects_payload_without_model(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="model_payload"):
        save_checkpoint(tmp_path / "x.pt", {"vocab": VOCAB})


def garbage_file(directory: Path) -> Path:
    (directory / "garbage.pt").write_bytes(b"not a checkpoint at all")
    return directory / "garbage.pt"


def foreign_torch_file(directory: Path) -> Path:
    torch.save({"weights": torch.zeros(3)}, directory / "other.pt")
    return directory / "other.pt"


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda d: d / "missing.pt", "not found"),
        (lambda d: d, r"no best\.pt or last\.pt"),
        (garbage_file, "not a readable checkpoint"),
        (foreign_torch_file, "not a seqkit checkpoint"),
    ],
    ids=["missing_file", "empty_run_dir", "garbage_file", "foreign_torch_file"],
)
def test_load_model_errors_say_what_to_do(tmp_path: Path, setup, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        load_model(setup(tmp_path))


def test_load_model_rejects_another_kind(tmp_path: Path) -> None:
    save(make("ctc"), tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match="holds a ctc model, expected a transducer"):
        load_model(tmp_path, expect_kind="transducer")


def test_load_model_rejects_a_newer_format(tmp_path: Path) -> None:
    save(make("ctc"), tmp_path / "best.pt", format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match="upgrade seqkit"):
        load_model(tmp_path)


def test_load_model_rejects_weights_that_do_not_fit_the_config(tmp_path: Path) -> None:
    payload = model_payload(make("ctc"), vocab=VOCAB, phone_set=39, features=FEATURES, stats=STATS)
    payload["model_config"]["encoder"]["hidden"] = 9
    save_checkpoint(tmp_path / "best.pt", payload)
    with pytest.raises(CheckpointError, match="does not rebuild"):
        load_model(tmp_path)


def test_init_encoder_from_ctc_run_copies_its_weights(tmp_path: Path) -> None:
    ctc = make("ctc", seed=1)
    save(ctc, tmp_path / "ctc" / "best.pt")
    transducer = make("transducer", seed=2)
    predictor_before = {k: v.clone() for k, v in transducer.predictor.state_dict().items()}
    copied = init_from_pretrained(transducer, tmp_path / "ctc", part="encoder", vocab=VOCAB)
    assert copied and all(name.startswith("encoder.") for name in copied)
    for name, value in ctc.encoder.state_dict().items():
        assert torch.equal(transducer.encoder.state_dict()[name], value), name
    for name, value in transducer.predictor.state_dict().items():
        assert torch.equal(value, predictor_before[name]), name  # untouched
    feats, lengths = tiny_B2_T9_F123()
    assert torch.equal(
        transducer.eval().encode(feats, lengths)[0], ctc.eval().encoder(feats, lengths)[0]
    )


def test_init_encoder_from_ctc_run_leaves_a_joint_stride_2_joint_fresh(tmp_path: Path) -> None:
    """PreTrans with ``model.joint_stride = 2``: the CTC encoder fits as it is; the joint's W_f,
    twice as wide as the encoder's output, keeps its own initialization."""
    ctc = make("ctc", seed=1)
    save(ctc, tmp_path / "ctc" / "best.pt")
    transducer = make("transducer", seed=2, joint_stride=2)
    joint_before = transducer.joint_f.weight.detach().clone()
    assert joint_before.shape == (10, 2 * ctc.encoder.output_dim)
    copied = init_from_pretrained(transducer, tmp_path / "ctc", part="encoder", vocab=VOCAB)
    assert copied and all(name.startswith("encoder.") for name in copied)
    assert torch.equal(transducer.joint_f.weight, joint_before)
    feats, lengths = tiny_B2_T9_F123()
    h, _ = ctc.eval().encoder(feats, lengths)  # (B, 9, H)
    f, f_lengths = transducer.eval().encode(feats, lengths)  # (B, 5, 2H): pairs of h
    assert f_lengths.tolist() == [5, 3]
    assert torch.equal(f[:, :4], h[:, :8].reshape(2, 4, -1))


def test_init_predictor_from_lm_run_copies_its_weights(tmp_path: Path) -> None:
    lm = make("lm", seed=3)
    save_checkpoint(
        tmp_path / "lm.pt", model_payload(lm, vocab=VOCAB, phone_set=39, features=None, stats=None)
    )
    transducer = make("transducer", seed=4)
    copied = init_from_pretrained(transducer, tmp_path / "lm.pt", part="predictor")
    assert sorted(copied) == sorted("predictor." + k for k in lm.predictor.state_dict())
    labels = torch.tensor([[0, 5, 9]])
    assert torch.equal(transducer.predict(labels)[0], lm.predictor(labels)[0])


def test_init_from_pretrained_names_the_mismatched_parameter(tmp_path: Path) -> None:
    save(make("ctc", encoder=EncoderConfig(layers=2, hidden=12)), tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match=r"parameter encoder\.layers\.0\.\S+ has shape"):
        init_from_pretrained(make("transducer"), tmp_path / "wide.pt", part="encoder")
    save(make("ctc", encoder=EncoderConfig(layers=3, hidden=8)), tmp_path / "deep.pt")
    with pytest.raises(CheckpointError, match=r"parameter encoder\.layers\.2\."):
        init_from_pretrained(make("transducer"), tmp_path / "deep.pt", part="encoder")
    save(make("ctc", encoder=EncoderConfig(layers=2, hidden=8, cell="peephole")), tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match=r"no parameter encoder\.layers\.0\."):
        init_from_pretrained(make("transducer"), tmp_path / "p.pt", part="encoder")


def test_init_from_pretrained_rejects_wrong_kinds_parts_and_vocabularies(tmp_path: Path) -> None:
    save(make("ctc"), tmp_path / "ctc.pt")
    with pytest.raises(CheckpointError, match="ctc model, which has no predictor"):
        init_from_pretrained(make("transducer"), tmp_path / "ctc.pt", part="predictor")
    with pytest.raises(ConfigError, match="part must be one of encoder, predictor"):
        init_from_pretrained(make("transducer"), tmp_path / "ctc.pt", part="joint")
    with pytest.raises(ConfigError, match="ctc model has no predictor"):
        init_from_pretrained(make("ctc"), tmp_path / "ctc.pt", part="predictor")
    with pytest.raises(CheckpointError, match="another vocabulary"):
        init_from_pretrained(make("transducer"), tmp_path / "ctc.pt", vocab=VOCAB[:-1])
    with pytest.raises(CheckpointError, match="not found"):
        init_from_pretrained(make("transducer"), tmp_path / "none.pt")
