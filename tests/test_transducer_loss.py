"""Transducer loss on every backend (CPU, Triton): brute force, gradcheck, torchaudio, peers'
vectors, padding; then the input checks and the dispatch.

Each property is one test body run for each backend of ``loss_backends.BACKENDS`` (the Triton
kernels through the interpreter when there is no GPU: shapes stay tiny, T <= 9, U <= 6, V <= 7).
"""

from __future__ import annotations

import pytest
import torch
import torchaudio.functional as taF
from loss_backends import BACKENDS, CUDA, LossBackend

from seqkit.errors import BackendUnavailableError, LossInputError
from seqkit.losses.reference import transducer_brute_force
from seqkit.losses.transducer import transducer_loss

# The interpreter runs the kernels' masked lanes (padding, NaN/inf test inputs) through numpy too,
# which warns about their invalid values; masked lanes never reach a result.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:triton")


def _random_targets(generator: torch.Generator, B: int, U: int, V: int, blank: int) -> torch.Tensor:
    """(B, U) labels drawn from the non-blank classes."""
    labels = torch.randint(0, V - 1, (B, U), generator=generator)
    return labels + (labels >= blank).long()  # skip over the blank index


def _loss_and_grad(backend: LossBackend, logits: torch.Tensor, *args: torch.Tensor,
                   **kwargs: object):
    leaf = logits.detach().clone().requires_grad_()
    loss = backend.transducer_loss(leaf, *args, **kwargs)
    (grad,) = torch.autograd.grad(loss.sum(), leaf)
    return loss.detach(), grad


@pytest.mark.parametrize("fused_log_softmax", [True, False])
@pytest.mark.parametrize(
    ("T", "U", "V", "blank"),
    [(3, 2, 4, 0), (4, 3, 5, 2), (1, 3, 4, 1), (5, 0, 3, 0), (2, 1, 3, 2), (4, 2, 6, 5)],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_transducer_loss_matches_brute_force_on_tiny_inputs(
    backend, T, U, V, blank, fused_log_softmax
):
    generator = torch.Generator().manual_seed(T * 100 + U * 10 + V)
    logits = torch.randn(T, U + 1, V, generator=generator, dtype=torch.float64)
    if not fused_log_softmax:
        logits = torch.log_softmax(logits, dim=-1)
    target = _random_targets(generator, 1, U, V, blank)[0]
    leaf = logits.clone().requires_grad_()
    expected = transducer_brute_force(leaf, target, blank, fused_log_softmax=fused_log_softmax)
    (expected_grad,) = torch.autograd.grad(expected, leaf)

    loss, grad = _loss_and_grad(
        backend, logits[None],
        target[None],
        torch.tensor([T]),
        torch.tensor([U]),
        blank=blank,
        reduction="sum",
        fused_log_softmax=fused_log_softmax,
    )
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=0)
    torch.testing.assert_close(grad[0], expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fused_log_softmax", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_transducer_loss_passes_gradcheck_in_float64(backend, fused_log_softmax):
    generator = torch.Generator().manual_seed(7)
    B, T, U, V = 2, 4, 3, 5
    logits = torch.randn(B, T, U + 1, V, generator=generator, dtype=torch.float64)
    if not fused_log_softmax:
        logits = torch.log_softmax(logits, dim=-1)
    targets = _random_targets(generator, B, U, V, 0)
    logit_lengths, target_lengths = torch.tensor([4, 3]), torch.tensor([3, 1])

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        return backend.transducer_loss(
            x,
            targets,
            logit_lengths,
            target_lengths,
            reduction="none",
            fused_log_softmax=fused_log_softmax,
        )

    # fast_mode for Triton: one random directional derivative, a handful of kernel runs
    assert torch.autograd.gradcheck(loss_of, (logits.requires_grad_(),), eps=1e-6, atol=1e-8,
                                    fast_mode=backend.name == "triton")


def _torchaudio_cases() -> list:
    """Every option on the CPU; through the (slow) Triton interpreter each option once."""
    cases = []
    for p in BACKENDS:
        backend = p.values[0]
        for reduction in ("none", "sum", "mean"):
            for fused in (True, False):
                for clamp in (None, 0.05):
                    light = reduction == "mean" or (fused and clamp is None)
                    if light or not backend.interpreted:
                        cases.append(pytest.param(backend, reduction, fused, clamp,
                                                  id=f"{p.id}-{reduction}-{fused}-{clamp}"))
    return cases


@pytest.mark.parametrize(
    ("backend", "reduction", "fused_log_softmax", "clamp"), _torchaudio_cases()
)
def test_transducer_loss_matches_torchaudio_on_mixed_length_batch(
    backend, reduction, fused_log_softmax, clamp
):
    generator = torch.Generator().manual_seed(11)
    B, T, U, V, blank = 5, 9, 6, 7, 3
    logits = 2 * torch.randn(B, T, U + 1, V, generator=generator)
    if not fused_log_softmax:
        logits = torch.log_softmax(logits, dim=-1)
    targets = _random_targets(generator, B, U, V, blank)
    logit_lengths = torch.tensor([9, 4, 1, 7, 9])
    target_lengths = torch.tensor([6, 2, 3, 0, 5])
    upstream = torch.rand(B, generator=generator) + 0.5 if reduction == "none" else None

    leaf = logits.clone().requires_grad_()
    expected = taF.rnnt_loss(
        leaf,
        targets.int(),
        logit_lengths.int(),
        target_lengths.int(),
        blank=blank,
        clamp=-1 if clamp is None else clamp,
        reduction=reduction,
        fused_log_softmax=fused_log_softmax,
    )
    weight = upstream if upstream is not None else torch.ones(())
    (expected_grad,) = torch.autograd.grad((expected * weight).sum(), leaf)

    leaf = logits.clone().requires_grad_()
    loss = backend.transducer_loss(
        leaf,
        targets,
        logit_lengths,
        target_lengths,
        blank=blank,
        reduction=reduction,
        fused_log_softmax=fused_log_softmax,
        clamp=clamp,
    )
    (grad,) = torch.autograd.grad((loss * weight).sum(), leaf)
    assert loss.shape == expected.shape
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_transducer_loss_gives_padding_exactly_zero_gradient(backend):
    generator = torch.Generator().manual_seed(3)
    B, T, U, V = 3, 6, 4, 5
    logits = torch.randn(B, T, U + 1, V, generator=generator, dtype=torch.float64)
    logits[0, 4:] = float("nan")  # padded frames may hold anything
    logits[1, :, 2:] = float("inf")  # padded label positions too
    targets = _random_targets(generator, B, U, V, 0)
    targets[1, 1:] = -1  # padded labels are never read
    logit_lengths, target_lengths = torch.tensor([4, 6, 6]), torch.tensor([4, 1, 4])
    loss, grad = _loss_and_grad(
        backend, logits, targets, logit_lengths, target_lengths, reduction="none"
    )
    assert torch.isfinite(loss).all()
    assert torch.isfinite(grad).all()
    assert (grad[0, 4:] == 0).all()
    assert (grad[1, :, 2:] == 0).all()
    assert (grad[0, :4] != 0).any() and (grad[1, :, :2] != 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_transducer_loss_equals_per_sequence_losses(backend):
    generator = torch.Generator().manual_seed(5)
    B, T, U, V = 3, 7, 4, 6
    logits = torch.randn(B, T, U + 1, V, generator=generator, dtype=torch.float64)
    targets = _random_targets(generator, B, U, V, 0)
    logit_lengths, target_lengths = torch.tensor([7, 5, 2]), torch.tensor([4, 1, 3])
    batch_loss, batch_grad = _loss_and_grad(
        backend, logits, targets, logit_lengths, target_lengths, reduction="none"
    )
    for b in range(B):
        t_b, u_b = int(logit_lengths[b]), int(target_lengths[b])
        loss, grad = _loss_and_grad(
            backend, logits[b : b + 1, :t_b, : u_b + 1],
            targets[b : b + 1, :u_b],
            logit_lengths[b : b + 1],
            target_lengths[b : b + 1],
            reduction="none",
        )
        torch.testing.assert_close(batch_loss[b], loss[0], rtol=1e-12, atol=0)
        torch.testing.assert_close(batch_grad[b, :t_b, : u_b + 1], grad[0], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_transducer_loss_mean_is_batch_mean_not_divided_by_target_length(backend):
    generator = torch.Generator().manual_seed(9)
    logits = torch.randn(2, 3, 4, 5, generator=generator)
    targets = torch.tensor([[1, 2, 3], [4, 1, 0]])
    args = (logits, targets, torch.tensor([3, 2]), torch.tensor([3, 2]))
    per_sequence = backend.transducer_loss(*args, reduction="none")
    torch.testing.assert_close(backend.transducer_loss(*args), per_sequence.mean())
    torch.testing.assert_close(backend.transducer_loss(*args, reduction="sum"), per_sequence.sum())


@pytest.mark.parametrize("backend", BACKENDS)
def test_transducer_loss_clamp_bounds_every_gradient_entry(backend):
    generator = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(2, 5, 4, 6, generator=generator)
    targets = _random_targets(generator, 2, 3, 6, 0)
    _, grad = _loss_and_grad(
        backend, logits, targets, torch.tensor([5, 5]), torch.tensor([3, 3]), clamp=0.01,
        reduction="sum",
    )
    assert grad.abs().max() <= 0.01 + 1e-7
    assert (grad.abs() == 0.01).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_transducer_loss_matches_warp_transducer_small_test_vector(backend):
    # HawkAaron/warp-transducer pytorch_binding/test/test.py small_test (blank 0, B=1, T=2, U=2,
    # V=5): cost 4.495666 and the gradient below, re-encoded here as literals.
    logits = torch.tensor(
        [
            [
                [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1], [0.1, 0.1, 0.2, 0.8, 0.1]],
                [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.1, 0.1], [0.7, 0.1, 0.2, 0.1, 0.1]],
            ]
        ]
    )
    expected_grad_first_frame = torch.tensor(
        [
            [-0.13116688, -0.3999269, 0.17703125, 0.17703125, 0.17703125],
            [-0.18572757, 0.12247056, -0.18168412, 0.12247056, 0.12247056],
            [-0.32091254, 0.06269141, 0.06928472, 0.12624499, 0.06269141],
        ]
    )
    loss, grad = _loss_and_grad(
        backend, logits, torch.tensor([[1, 2]]), torch.tensor([2]), torch.tensor([2]),
        reduction="sum",
    )
    torch.testing.assert_close(loss, torch.tensor(4.495666), rtol=1e-6, atol=0)
    torch.testing.assert_close(grad[0, 0], expected_grad_first_frame, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("shape", "message"),
    [((8, 20, 41), "CTC log-probs passed to the transducer loss?"), ((2, 3, 4, 5, 6), "found")],
)
def test_transducer_loss_rejects_wrong_rank_with_hint(shape, message):
    with pytest.raises(LossInputError, match="expected logits \\(B, T, U\\+1, V\\)") as error:
        transducer_loss(torch.zeros(shape), torch.zeros(2, 3), torch.ones(2), torch.ones(2))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"targets": torch.zeros(2, 4, dtype=torch.long)}, "expected targets \\(B, U\\)"),
        ({"targets": torch.zeros(2, 3)}, "integer dtype"),
        ({"logit_lengths": torch.tensor([5, 0])}, "logit_lengths in \\[1, T\\]"),
        ({"logit_lengths": torch.tensor([6, 5])}, "logit_lengths in \\[1, T\\]"),
        ({"target_lengths": torch.tensor([4, 1])}, "target_lengths in \\[0, U\\]"),
        ({"target_lengths": torch.tensor([3])}, "target_lengths of shape"),
        ({"targets": torch.tensor([[1, 0, 2], [1, 1, 1]])}, "other than blank=0"),
        ({"targets": torch.tensor([[1, 9, 2], [1, 1, 1]])}, "found 9 at targets\\[0, 1\\]"),
        ({"blank": 6}, "blank in \\[0, V\\)"),
        ({"reduction": "avg"}, "reduction one of none, sum, mean"),
        ({"clamp": 0.0}, "clamp > 0 or None"),
        ({"backend": "cuda"}, "backend one of auto, cpu, triton"),
        ({"logits": torch.zeros(2, 5, 4, 6, dtype=torch.float16)}, "float32, float64 on cpu"),
    ],
)
def test_transducer_loss_rejects_bad_inputs_with_expected_and_found(change, message):
    args = {
        "logits": torch.zeros(2, 5, 4, 6),
        "targets": torch.ones(2, 3, dtype=torch.long),
        "logit_lengths": torch.tensor([5, 3]),
        "target_lengths": torch.tensor([3, 1]),
    }
    options = {k: change.pop(k) for k in ("blank", "reduction", "clamp", "backend") if k in change}
    args.update(change)
    with pytest.raises(LossInputError, match=message):
        transducer_loss(*args.values(), **options)


def test_transducer_loss_triton_backend_needs_cuda_or_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    args = (
        torch.zeros(1, 2, 2, 3),
        torch.ones(1, 1, dtype=torch.long),
        torch.tensor([2]),
        torch.tensor([1]),
    )
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        transducer_loss(*args, backend="triton")


@pytest.mark.parametrize("backend", BACKENDS)
def test_transducer_loss_matches_warp_rnnt_one_to_many_vector(backend):
    # 1ytic/warp-rnnt pytorch_binding/warp_rnnt/test.py test_one_to_many: one frame emits both
    # labels then blank, so there is exactly one path; cost 4.274244594423859.
    logits = torch.tensor(
        [[[[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1], [0.1, 0.1, 0.2, 0.8, 0.1]]]],
        dtype=torch.float64,
    )
    loss, grad = _loss_and_grad(
        backend, logits, torch.tensor([[1, 2]]), torch.tensor([1]), torch.tensor([2]),
        reduction="sum",
    )
    torch.testing.assert_close(loss, torch.tensor(4.274244594423859, dtype=torch.float64))
    softmax = torch.softmax(logits, dim=-1)
    one_hot = torch.zeros_like(logits)
    one_hot[0, 0, 0, 1] = one_hot[0, 0, 1, 2] = one_hot[0, 0, 2, 0] = 1.0
    torch.testing.assert_close(grad, softmax - one_hot)  # occupancy 1 on the only path


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_transducer_accepts_half_logits_with_float32_accumulation(dtype):
    generator = torch.Generator().manual_seed(8)
    B, T, U, V = 2, 40, 12, 30
    logits = torch.randn(B, T, U + 1, V, generator=generator).to(dtype)
    targets = _random_targets(generator, B, U, V, 0)
    lengths = (torch.tensor([40, 31]), torch.tensor([12, 7]))
    leaf = logits.cuda().requires_grad_()
    loss = transducer_loss(leaf, targets.cuda(), *(n.cuda() for n in lengths), reduction="none",
                           backend="triton")
    (grad,) = torch.autograd.grad(loss.sum(), leaf)
    expected_leaf = logits.float().requires_grad_()
    expected = transducer_loss(expected_leaf, targets, *lengths, reduction="none", backend="cpu")
    (expected_grad,) = torch.autograd.grad(expected.sum(), expected_leaf)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss.detach().cpu(), expected.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad.float().cpu(), expected_grad, rtol=0, atol=1e-2)
