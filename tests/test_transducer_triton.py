"""Transducer Triton kernels: the same checks as the CPU path, on tiny shapes.

Without CUDA, ``tests/conftest.py`` sets TRITON_INTERPRET=1, so these run the very kernels a GPU
would run, through Triton's (slow) interpreter on CPU tensors: T <= 6, U <= 4, V <= 5, B <= 2.
"""

from __future__ import annotations

import pytest
import torch

from seqkit.losses.reference import transducer_brute_force
from seqkit.losses.transducer import transducer_loss

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _targets(generator: torch.Generator, B: int, U: int, V: int, blank: int) -> torch.Tensor:
    labels = torch.randint(0, V - 1, (B, U), generator=generator)
    return labels + (labels >= blank).long()  # (B, U), never the blank


def _loss_and_grad(logits, targets, logit_lengths, target_lengths, weight=None, **options):
    leaf = logits.detach().clone().to(DEVICE).requires_grad_()
    loss = transducer_loss(
        leaf,
        targets.to(DEVICE),
        logit_lengths.to(DEVICE),
        target_lengths.to(DEVICE),
        backend="triton",
        **options,
    )
    total = loss.sum() if weight is None else (loss * weight.to(DEVICE)).sum()
    (grad,) = torch.autograd.grad(total, leaf)
    return loss.detach().cpu(), grad.cpu()


@pytest.mark.parametrize(
    ("T", "U", "V", "blank", "fused_log_softmax"),
    [(3, 2, 4, 0, True), (1, 3, 4, 1, True), (4, 0, 3, 0, True), (2, 2, 5, 4, False)],
)
def test_triton_transducer_matches_brute_force_on_tiny_inputs(T, U, V, blank, fused_log_softmax):
    generator = torch.Generator().manual_seed(T * 100 + U * 10 + V)
    logits = torch.randn(T, U + 1, V, generator=generator, dtype=torch.float64)
    if not fused_log_softmax:
        logits = torch.log_softmax(logits, dim=-1)
    target = _targets(generator, 1, U, V, blank)[0]
    leaf = logits.clone().requires_grad_()
    expected = transducer_brute_force(leaf, target, blank, fused_log_softmax=fused_log_softmax)
    (expected_grad,) = torch.autograd.grad(expected, leaf)
    loss, grad = _loss_and_grad(
        logits[None],
        target[None],
        torch.tensor([T]),
        torch.tensor([U]),
        blank=blank,
        reduction="sum",
        fused_log_softmax=fused_log_softmax,
    )
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-9, atol=0)
    torch.testing.assert_close(grad[0], expected_grad, rtol=1e-9, atol=1e-12)


def test_triton_transducer_passes_gradcheck_in_float64():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 3, 3, generator=generator, dtype=torch.float64, device=DEVICE)
    targets = _targets(generator, 2, 2, 3, 0).to(DEVICE)
    logit_lengths = torch.tensor([3, 2], device=DEVICE)
    target_lengths = torch.tensor([2, 1], device=DEVICE)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        return transducer_loss(
            x, targets, logit_lengths, target_lengths, reduction="none", backend="triton"
        )

    assert torch.autograd.gradcheck(
        loss_of, (logits.requires_grad_(),), eps=1e-6, atol=1e-8, fast_mode=True
    )


@pytest.mark.parametrize(
    ("reduction", "fused_log_softmax", "clamp", "dtype"),
    [
        ("none", True, None, torch.float64),
        ("mean", False, None, torch.float64),
        ("sum", True, 0.05, torch.float64),
        ("mean", True, None, torch.float32),
    ],
)
def test_triton_and_cpu_backends_agree_on_mixed_length_batch(
    reduction, fused_log_softmax, clamp, dtype
):
    generator = torch.Generator().manual_seed(4)
    B, T, U, V, blank = 2, 6, 4, 5, 2
    logits = 2 * torch.randn(B, T, U + 1, V, generator=generator, dtype=dtype)
    if not fused_log_softmax:
        logits = torch.log_softmax(logits, dim=-1)
    targets = _targets(generator, B, U, V, blank)
    lengths = (torch.tensor([6, 3]), torch.tensor([2, 4]))
    weight = torch.rand(B, generator=generator, dtype=dtype) + 0.5 if reduction == "none" else None
    options = {
        "blank": blank,
        "reduction": reduction,
        "fused_log_softmax": fused_log_softmax,
        "clamp": clamp,
    }
    loss, grad = _loss_and_grad(logits, targets, *lengths, weight, **options)

    leaf = logits.clone().requires_grad_()
    expected = transducer_loss(leaf, targets, *lengths, backend="cpu", **options)
    total = expected.sum() if weight is None else (expected * weight).sum()
    (expected_grad,) = torch.autograd.grad(total, leaf)
    exact = dtype == torch.float64
    tolerance = {"rtol": 1e-9, "atol": 1e-12} if exact else {"rtol": 1e-5, "atol": 1e-7}
    torch.testing.assert_close(loss, expected.detach(), **tolerance)
    torch.testing.assert_close(grad, expected_grad, **tolerance)
    assert (grad[1, 3:] == 0).all()  # frames past logit_lengths[1]
    assert (grad[0, :, 3:] == 0).all()  # labels past target_lengths[0]


def test_triton_transducer_gives_nan_padding_exactly_zero_gradient():
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 4, 3, 4, generator=generator, dtype=torch.float64)
    logits[0, 2:] = float("nan")
    logits[1, :, 1:] = float("inf")
    targets = torch.tensor([[1, 2], [3, -1]])
    loss, grad = _loss_and_grad(
        logits, targets, torch.tensor([2, 4]), torch.tensor([2, 0]), reduction="none"
    )
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert (grad[0, 2:] == 0).all() and (grad[1, :, 1:] == 0).all()
    assert (grad[0, :2] != 0).any()


def test_triton_transducer_matches_warp_rnnt_one_to_many_vector():
    # 1ytic/warp-rnnt pytorch_binding/warp_rnnt/test.py test_one_to_many: one frame emits both
    # labels then blank, so there is exactly one path; cost 4.274244594423859.
    logits = torch.tensor(
        [[[[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1], [0.1, 0.1, 0.2, 0.8, 0.1]]]],
        dtype=torch.float64,
    )
    loss, grad = _loss_and_grad(
        logits, torch.tensor([[1, 2]]), torch.tensor([1]), torch.tensor([2]), reduction="sum"
    )
    torch.testing.assert_close(loss, torch.tensor(4.274244594423859, dtype=torch.float64))
    softmax = torch.softmax(logits, dim=-1)
    one_hot = torch.zeros_like(logits)
    one_hot[0, 0, 0, 1] = one_hot[0, 0, 1, 2] = one_hot[0, 0, 2, 0] = 1.0
    torch.testing.assert_close(grad, softmax - one_hot)  # occupancy 1 on the only path


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_transducer_accepts_half_logits_with_float32_accumulation(dtype):
    generator = torch.Generator().manual_seed(8)
    B, T, U, V = 2, 40, 12, 30
    logits = torch.randn(B, T, U + 1, V, generator=generator).to(dtype)
    targets = _targets(generator, B, U, V, 0)
    lengths = (torch.tensor([40, 31]), torch.tensor([12, 7]))
    loss, grad = _loss_and_grad(logits, targets, *lengths, reduction="none")
    leaf = logits.float().requires_grad_()
    expected = transducer_loss(leaf, targets, *lengths, reduction="none", backend="cpu")
    (expected_grad,) = torch.autograd.grad(expected.sum(), leaf)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad.float(), expected_grad, rtol=0, atol=1e-2)
