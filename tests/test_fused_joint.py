"""The fused joint + log-softmax + transducer loss (issue #19 item 2) against the unfused path."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchaudio.functional as taF

from seqkit.errors import LossInputError
from seqkit.losses.fused_joint import fused_transducer_loss
from seqkit.losses.reference import transducer_brute_force
from seqkit.losses.transducer import transducer_loss
from seqkit.models import build_model
from seqkit.models.config import EncoderConfig, ModelConfig, PredictorConfig


def _inputs_B3_T5_U3_J4_V6(dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    B, T, U, J, V = 3, 5, 3, 4, 6
    f = torch.randn(B, T, J, generator=generator, dtype=dtype)
    g = torch.randn(B, U + 1, J, generator=generator, dtype=dtype)
    weight = torch.randn(V, J, generator=generator, dtype=dtype)
    bias = torch.randn(V, generator=generator, dtype=dtype)
    targets = torch.randint(1, V, (B, U), generator=generator)
    logit_lengths = torch.tensor([5, 3, 1])
    target_lengths = torch.tensor([3, 1, 0])
    return (f, g, weight, bias), (targets, logit_lengths, target_lengths)


def _unfused(f, g, weight, bias, targets, logit_lengths, target_lengths, **options):
    logits = torch.tanh(f[:, :, None] + g[:, None]) @ weight.T + bias  # (B, T, U+1, V)
    return transducer_loss(logits, targets, logit_lengths, target_lengths, reduction="none",
                           backend="cpu", **options)


@pytest.mark.parametrize("chunk_frames", [1, 2, 5, None])
def test_fused_joint_equals_joint_then_transducer_loss_in_costs_and_all_gradients(chunk_frames):
    params, lengths = _inputs_B3_T5_U3_J4_V6(torch.float64)
    weight_b = torch.tensor([0.5, -1.5, 2.0], dtype=torch.float64)  # signs: no log folding
    results = []
    for loss_fn in (_unfused, fused_transducer_loss):
        leaves = [p.clone().requires_grad_() for p in params]
        options = {"chunk_frames": chunk_frames} if loss_fn is fused_transducer_loss else {}
        costs = loss_fn(*leaves, *lengths, **options)
        grads = torch.autograd.grad((costs * weight_b).sum(), leaves)
        results.append((costs.detach(), grads))
    (costs, grads), (fused_costs, fused_grads) = results
    torch.testing.assert_close(fused_costs, costs, rtol=1e-10, atol=1e-12)
    for fused_grad, grad in zip(fused_grads, grads, strict=True):
        torch.testing.assert_close(fused_grad, grad, rtol=1e-9, atol=1e-11)


def test_fused_joint_matches_brute_force_on_one_sequence():
    params, (targets, _, _) = _inputs_B3_T5_U3_J4_V6(torch.float64, seed=1)
    f, g, weight, bias = (p[:1] if p.dim() == 3 else p for p in params)
    cost = fused_transducer_loss(f, g, weight, bias, targets[:1], torch.tensor([5]),
                                 torch.tensor([3]), chunk_frames=2)
    logits = torch.tanh(f[:, :, None] + g[:, None]) @ weight.T + bias  # (1, T, U+1, V)
    expected = transducer_brute_force(logits[0], targets[0], 0, fused_log_softmax=True)
    torch.testing.assert_close(cost[0], expected, rtol=1e-10, atol=1e-12)


def test_fused_joint_passes_gradcheck_in_float64():
    params, lengths = _inputs_B3_T5_U3_J4_V6(torch.float64, seed=2)
    leaves = tuple(p.clone().requires_grad_() for p in params)

    def loss(*tensors: torch.Tensor) -> torch.Tensor:
        return fused_transducer_loss(*tensors, *lengths, chunk_frames=2)

    assert torch.autograd.gradcheck(loss, leaves, eps=1e-6, atol=1e-8)


def test_fused_joint_matches_torchaudio_in_float32_with_blank_last():
    params, (targets, logit_lengths, target_lengths) = _inputs_B3_T5_U3_J4_V6(torch.float32, 3)
    blank = 5
    targets = torch.where(targets == blank, 1, targets)
    costs = fused_transducer_loss(*params, targets, logit_lengths, target_lengths, blank=blank,
                                  chunk_frames=2)
    f, g, weight, bias = params
    logits = torch.tanh(f[:, :, None] + g[:, None]) @ weight.T + bias
    expected = taF.rnnt_loss(logits, targets.int(), logit_lengths.int(), target_lengths.int(),
                             blank=blank, reduction="none")
    torch.testing.assert_close(costs, expected, rtol=1e-5, atol=1e-5)


def test_fused_joint_computes_in_float32_under_bf16_autocast():
    params, lengths = _inputs_B3_T5_U3_J4_V6(torch.float32, seed=4)
    plain = fused_transducer_loss(*params, *lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = fused_transducer_loss(*params, *lengths)
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, plain, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {**a, "logit_lengths": torch.tensor([6, 3, 1])}, r"logit_lengths .* \[1, 5\]"),
        (lambda a: {**a, "target_lengths": torch.tensor([4, 1, 0])}, r"target_lengths .* \[0, 3\]"),
        (lambda a: {**a, "blank": a["targets"][0, 0].item()}, "other than blank"),
        (lambda a: {**a, "g": a["g"][:, :2]}, "to agree"),
    ],
    ids=["frames", "labels", "blank_label", "shapes"],
)
def test_fused_joint_rejects_inputs_it_cannot_compute_with_expected_and_found(change, message):
    (f, g, weight, bias), (targets, logit_lengths, target_lengths) = _inputs_B3_T5_U3_J4_V6(
        torch.float32)
    args = {"f": f, "g": g, "weight": weight, "bias": bias, "targets": targets,
            "logit_lengths": logit_lengths, "target_lengths": target_lengths, "blank": 0}
    with pytest.raises(LossInputError, match=message):
        fused_transducer_loss(**change(args))


@pytest.mark.parametrize("joint_stride", [1, 2])
def test_transducer_model_with_fused_joint_gives_the_ordinary_nll_and_gradients(joint_stride):
    encoder = EncoderConfig(layers=1, hidden=8, stack=2)
    config = ModelConfig(kind="transducer", encoder=encoder,
                         predictor=PredictorConfig(embed=4, hidden=8), joint_dim=6,
                         joint_stride=joint_stride)
    generator = torch.Generator().manual_seed(5)
    feats = torch.randn(3, 11, 7, generator=generator)  # (B, T, F)
    feat_lengths = torch.tensor([11, 8, 5])
    targets = torch.randint(1, 5, (3, 4), generator=generator)  # (B, U)
    target_lengths = torch.tensor([4, 2, 0])
    results = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = build_model(dataclasses.replace(config, fused_joint=fused), input_dim=7,
                            vocab_size=5)
        nll = model(feats, feat_lengths, targets, target_lengths)
        nll.sum().backward()
        results.append((nll.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (nll, grads), (fused_nll, fused_grads) = results
    torch.testing.assert_close(fused_nll, nll, rtol=1e-5, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
