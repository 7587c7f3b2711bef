"""The pruned transducer loss (seqkit.losses.pruned) against the full loss and brute force."""

from __future__ import annotations

import pytest
import torch

from seqkit.errors import ConfigError
from seqkit.losses.pruned import (
    band_width,
    lattice_nll,
    lattice_nll_and_bands,
    prune_ranges,
    pruned_lattice,
    simple_lattice,
)
from seqkit.losses.reference import transducer_brute_force
from seqkit.losses.transducer import transducer_loss
from seqkit.models import build_model
from seqkit.models.checkpoint import init_from_pretrained, model_payload, save_checkpoint
from seqkit.models.config import EncoderConfig, ModelConfig, PredictorConfig

B, T, U, V, J = 3, 6, 4, 5, 7
LOGIT_LENGTHS = torch.tensor([6, 4, 5])
TARGET_LENGTHS = torch.tensor([4, 2, 0])


def _targets(seed: int = 0) -> torch.Tensor:
    targets = torch.randint(1, V, (B, U), generator=torch.Generator().manual_seed(seed))
    for b, u_b in enumerate(TARGET_LENGTHS.tolist()):
        targets[b, u_b:] = 0  # padding: the blank, a valid class
    return targets


def _full(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return transducer_loss(logits, targets.int(), LOGIT_LENGTHS.int(), TARGET_LENGTHS.int(),
                           reduction="none", backend="cpu")


def _moves(log_probs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blank (B, T, U+1) and next-label (B, T, U) log-probs of full (B, T, U+1, V) ones."""
    next_label = torch.cat([targets, torch.zeros(B, 1, dtype=torch.long)], dim=1)
    emit = log_probs.gather(3, next_label[:, None, :, None].expand(B, T, U + 1, 1)).squeeze(3)
    return log_probs[..., 0], emit[:, :, :U]


def _joint(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    f = torch.randn(B, T, J, generator=generator, dtype=torch.float64)
    g = torch.randn(B, U + 1, J, generator=generator, dtype=torch.float64)
    weight = torch.randn(V, J, generator=generator, dtype=torch.float64)
    return f, g, weight


def _output(weight: torch.Tensor):
    return lambda z: torch.tanh(z) @ weight.T


def test_lattice_nll_is_the_transducer_loss_of_the_same_move_log_probs() -> None:
    targets = _targets()
    logits = torch.randn(B, T, U + 1, V, dtype=torch.float64, requires_grad=True)
    costs = lattice_nll(*_moves(logits.log_softmax(-1), targets), LOGIT_LENGTHS, TARGET_LENGTHS)
    reference = _full(logits, targets)
    torch.testing.assert_close(costs, reference, rtol=1e-12, atol=1e-12)
    weights = torch.tensor([0.5, -1.5, 2.0], dtype=torch.float64)
    grad, = torch.autograd.grad((costs * weights).sum(), logits)
    expected, = torch.autograd.grad((reference * weights).sum(), logits)
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("width", [0, 2])
def test_lattice_nll_gradcheck_in_float64(width: int) -> None:
    generator = torch.Generator().manual_seed(1)
    blank = torch.randn(B, T, U + 1, generator=generator, dtype=torch.float64) - 1
    emit = torch.randn(B, T, U, generator=generator, dtype=torch.float64) - 1

    def nll(b: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if width:
            return lattice_nll_and_bands(b, e, LOGIT_LENGTHS, TARGET_LENGTHS, width)[0]
        return lattice_nll(b, e, LOGIT_LENGTHS, TARGET_LENGTHS)

    assert torch.autograd.gradcheck(nll, (blank.requires_grad_(), emit.requires_grad_()))


def test_simple_lattice_is_the_transducer_loss_of_the_additive_joint() -> None:
    targets = _targets(2)
    generator = torch.Generator().manual_seed(2)
    am = torch.randn(B, T, V, generator=generator, dtype=torch.float64, requires_grad=True)
    lm = torch.randn(B, U + 1, V, generator=generator, dtype=torch.float64, requires_grad=True)
    costs = lattice_nll(*simple_lattice(am, lm, targets, blank=0), LOGIT_LENGTHS,
                        TARGET_LENGTHS)
    reference = _full(am[:, :, None] + lm[:, None], targets)
    torch.testing.assert_close(costs.double(), reference, rtol=1e-5, atol=1e-5)  # float32 inside
    grads = torch.autograd.grad(costs.sum(), (am, lm))
    expected = torch.autograd.grad(reference.sum(), (am, lm))
    for grad, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(grad.double(), want, rtol=1e-4, atol=1e-5)


def test_pruned_loss_with_every_label_position_is_the_full_loss_in_costs_and_gradients() -> None:
    targets = _targets(3)
    leaves = [p.requires_grad_() for p in _joint(3)]
    f, g, weight = leaves
    starts = torch.zeros(B, T, dtype=torch.long)
    costs = lattice_nll(*pruned_lattice(_output(weight), f, g, targets, starts, U + 1, blank=0),
                        LOGIT_LENGTHS, TARGET_LENGTHS)
    reference = _full(_output(weight)(f[:, :, None] + g[:, None]), targets)
    torch.testing.assert_close(costs.double(), reference, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(costs.sum(), leaves)
    expected = torch.autograd.grad(reference.sum(), leaves)
    for grad, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(grad.double(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("width", [2, 3])
def test_pruned_loss_is_brute_force_over_the_paths_inside_the_bands(width: int) -> None:
    targets = _targets(4)
    f, g, weight = _joint(4)
    generator = torch.Generator().manual_seed(4)
    am = torch.randn(B, T, V, generator=generator)
    lm = torch.randn(B, U + 1, V, generator=generator)
    starts = prune_ranges(*simple_lattice(am, lm, targets, blank=0), LOGIT_LENGTHS,
                          TARGET_LENGTHS, width)
    costs = lattice_nll(*pruned_lattice(_output(weight), f, g, targets, starts, width, blank=0),
                        LOGIT_LENGTHS, TARGET_LENGTHS)
    log_probs = _output(weight)(f[:, :, None] + g[:, None]).log_softmax(-1)  # (B, T, U+1, V)
    positions = torch.arange(U + 1)
    inside = (positions >= starts[..., None]) & (positions < starts[..., None] + width)
    banded = log_probs.masked_fill(~inside[..., None], float("-inf"))  # no move leaves outside
    full = _full(log_probs, targets)
    for b, (t_b, u_b) in enumerate(zip(LOGIT_LENGTHS.tolist(), TARGET_LENGTHS.tolist(),
                                       strict=True)):
        expected = transducer_brute_force(banded[b, :t_b, : u_b + 1], targets[b, :u_b],
                                          fused_log_softmax=False)
        torch.testing.assert_close(costs[b].double(), expected, rtol=1e-5, atol=1e-5)
        assert float(costs[b]) >= float(full[b]) - 1e-5  # fewer paths, less likelihood


@pytest.mark.parametrize("seed", range(6))
def test_bands_start_at_zero_climb_at_most_width_minus_one_and_reach_the_last_label(
    seed: int,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    frames, labels = torch.tensor([9, 3, 7, 12]), torch.tensor([6, 5, 0, 11])
    width = band_width(2 + seed % 3, frames, labels, 12)  # 5 labels in 3 frames: >= 3
    assert width == max(3, 2 + seed % 3)
    blank = torch.randn(4, 12, 12, generator=generator) * 3
    emit = torch.randn(4, 12, 11, generator=generator) * 3
    starts = prune_ranges(blank, emit, frames, labels, width)
    assert starts.shape == (4, 12) and starts.dtype == torch.long
    assert int(starts.min()) >= 0 and int(starts.max()) <= 12 - width
    for b, (t_b, u_b) in enumerate(zip(frames.tolist(), labels.tolist(), strict=True)):
        s = starts[b, :t_b]
        assert int(s[0]) == 0
        steps = s[1:] - s[:-1]
        assert bool((steps >= 0).all()) and bool((steps <= width - 1).all())
        assert int(s[-1]) + width - 1 >= u_b  # a path exists: the last band reaches U_b


def _model(prune_range: int, seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = ModelConfig(kind="transducer", encoder=EncoderConfig(layers=1, hidden=6),
                         predictor=PredictorConfig(embed=4, hidden=5), joint_dim=8,
                         prune_range=prune_range, **options)
    return build_model(config, input_dim=4, vocab_size=V)


def _batch():
    generator = torch.Generator().manual_seed(5)
    feats = torch.randn(B, T, 4, generator=generator)
    return feats, LOGIT_LENGTHS, _targets(5), TARGET_LENGTHS


def test_model_trains_on_pruned_plus_scaled_simple_loss_and_evaluates_the_full_loss() -> None:
    full, pruned = _model(0), _model(U + 1, simple_loss_scale=0.0)
    pruned.load_state_dict(full.state_dict(), strict=False)  # the joint: the same weights
    assert {"simple_f.weight", "simple_g.bias"} <= set(pruned.state_dict())
    assert "simple_f.weight" not in full.state_dict()
    batch = _batch()
    # dropout 0, so train and eval mode differ only in the loss: with every position kept and
    # the simple loss weighted 0, the pruned loss is the full one
    torch.testing.assert_close(pruned.train()(*batch), full.eval()(*batch), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pruned.eval()(*batch), full.eval()(*batch), rtol=0, atol=0)
    scaled = _model(2, simple_loss_scale=0.5)
    scaled.load_state_dict(pruned.state_dict())
    losses = scaled.train()(*batch)
    losses.sum().backward()  # every parameter the pruned loss uses gets a gradient
    assert scaled.simple_f.weight.grad.abs().sum() > 0 and scaled.joint_out.weight.grad.abs().sum()
    assert bool((losses > scaled.eval()(*batch) - 1e-5).all())  # a band and an extra term


@pytest.mark.parametrize(("options", "message"), [
    ({"prune_range": 1}, "at least 2"),
    ({"prune_range": -1}, "model.prune_range"),
    ({"prune_range": 4, "fused_joint": True}, "set one of them"),
    ({"prune_range": 4, "simple_loss_scale": -0.5}, "simple_loss_scale"),
    ({"prune_range": 4, "simple_loss_scale": float("nan")}, "simple_loss_scale"),
])
def test_bad_pruning_settings_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig(kind="transducer", **options)


def test_pretraining_copies_the_ctc_and_lm_output_layers_into_the_extra_layers(tmp_path) -> None:
    encoder, predictor = EncoderConfig(layers=1, hidden=6), PredictorConfig(embed=4, hidden=5)
    vocab = [f"p{i}" for i in range(V)]
    sources = {}
    for kind in ("ctc", "lm"):
        torch.manual_seed(7)
        config = ModelConfig(kind=kind, encoder=encoder, predictor=predictor)
        model = build_model(config, input_dim=4, vocab_size=V)
        sources[kind] = model
        save_checkpoint(tmp_path / f"{kind}.pt", model_payload(
            model, vocab=vocab, phone_set=None, features=None, stats=None))
    target = _model(3, ctc_loss_scale=0.2)
    copied = init_from_pretrained(target, tmp_path / "ctc.pt", "encoder", vocab=vocab)
    copied += init_from_pretrained(target, tmp_path / "lm.pt", "predictor", vocab=vocab)
    assert {"simple_f.weight", "simple_f.bias", "simple_g.weight", "simple_g.bias"} <= set(copied)
    assert {"ctc_output.weight", "ctc_output.bias"} <= set(copied)  # the auxiliary CTC layer
    torch.testing.assert_close(target.simple_f.weight, sources["ctc"].output.weight)
    torch.testing.assert_close(target.ctc_output.bias, sources["ctc"].output.bias)
    torch.testing.assert_close(target.simple_g.bias, sources["lm"].output.bias)
    # an unpruned transducer has no simple joint: the same sources copy only the networks
    assert not any(name.startswith("simple") for name in
                   init_from_pretrained(_model(0), tmp_path / "ctc.pt", "encoder", vocab=vocab))
