"""CTC Triton kernels: the same checks as the CPU backend, on tiny shapes.

Without a GPU, conftest.py sets TRITON_INTERPRET=1, so these run the exact kernel code through
Triton's (slow) interpreter on CPU tensors; shapes stay tiny (T <= 12, B <= 4). With a GPU the
same checks run on CUDA tensors (``DEVICE``): there is no interpreter then, and the Triton
backend refuses CPU tensors (issue #19: ``seqkit bench gpu`` runs this file on a GPU).
"""

from __future__ import annotations

import pytest
import torch

from seqkit.losses.ctc import ctc_loss
from seqkit.losses.reference import ctc_brute_force

# The interpreter evaluates log(0) = -inf for unreachable states through numpy, which warns.
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _random_log_probs(frames: int, batch: int, classes: int, dtype: torch.dtype, seed: int):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(frames, batch, classes, generator=generator, dtype=dtype) * 2
    return logits.log_softmax(-1)


@pytest.mark.parametrize(
    ("blank", "targets", "target_lengths", "input_lengths"),
    [
        # repeated labels needing a blank, empty target, too short (inf), single frame
        (0, [[1, 1, 0], [0, 0, 0], [2, 2, 2], [3, 0, 0]], [2, 0, 3, 1], [5, 4, 4, 1]),
        # blank is the last class; label 0 is a real label
        (3, [[0, 1, 0], [2, 2, 0], [1, 0, 0], [0, 0, 0]], [3, 2, 1, 0], [5, 3, 2, 1]),
    ],
    ids=["blank_0", "blank_last"],
)
def test_triton_ctc_matches_brute_force_on_tiny_inputs(
    blank, targets, target_lengths, input_lengths
):
    log_probs = _random_log_probs(5, 4, 4, torch.float64, seed=blank).to(DEVICE).requires_grad_()
    targets_t = torch.tensor(targets, device=DEVICE)
    losses = ctc_loss(log_probs, targets_t, input_lengths, target_lengths, blank=blank,
                      reduction="none", backend="triton")
    losses[torch.isfinite(losses)].sum().backward()
    for b, (frames, labels) in enumerate(zip(input_lengths, target_lengths, strict=True)):
        single = log_probs.detach()[:frames, b].clone().requires_grad_()
        expected = ctc_brute_force(single, targets_t[b, :labels], blank)
        if torch.isinf(expected):
            assert torch.isinf(losses[b]) and losses[b] > 0
            assert torch.count_nonzero(log_probs.grad[:, b]) == 0
            continue
        (expected_grad,) = torch.autograd.grad(expected, single)
        torch.testing.assert_close(losses[b], expected, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(log_probs.grad[:frames, b], expected_grad, rtol=1e-9, atol=1e-12)
        assert torch.count_nonzero(log_probs.grad[frames:, b]) == 0


def test_triton_ctc_agrees_with_cpu_backend_on_a_random_float32_batch():
    log_probs = _random_log_probs(12, 3, 6, torch.float32, seed=1)
    generator = torch.Generator().manual_seed(2)
    targets = torch.randint(1, 6, (3, 4), generator=generator)
    targets[0, 1] = targets[0, 0]  # a repeat
    input_lengths, target_lengths = torch.tensor([12, 9, 5]), torch.tensor([4, 3, 0])
    results = []
    for backend, device in (("triton", DEVICE), ("cpu", "cpu")):
        leaf = log_probs.to(device).requires_grad_()
        loss = ctc_loss(leaf, targets.to(device), input_lengths.to(device),
                        target_lengths.to(device), backend=backend)
        loss.backward()
        results.append((loss.detach().cpu(), leaf.grad.cpu()))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


def test_triton_ctc_passes_gradcheck_in_float64():
    log_probs = _random_log_probs(4, 2, 3, torch.float64, seed=3).to(DEVICE).requires_grad_()
    targets = torch.tensor([[1, 2], [2, 0]], device=DEVICE)
    input_lengths, target_lengths = [4, 3], [2, 1]

    def loss(lp: torch.Tensor) -> torch.Tensor:
        return ctc_loss(lp, targets, input_lengths, target_lengths, backend="triton")

    # fast_mode: one random directional derivative, so the interpreter runs a handful of times.
    assert torch.autograd.gradcheck(loss, (log_probs,), eps=1e-6, atol=1e-8, fast_mode=True)


def test_triton_ctc_zero_infinity_and_peer_edge_cases():
    """Impossible alignments and -inf / masking-sentinel inputs (peer regressions).

    Sequence 0: flashlight/flashlight CriterionTest.cpp CTCCost case 1 (blank last, -inf logits,
    cost 0; torch's gradient is NaN). Sequence 1: after baidu-research/warp-ctc test_cpu.cpp
    inf_test, the first label has logit -1e30 in every frame (torch: cost ~1e30; ours: inf).
    """
    inf = float("inf")
    logits = torch.zeros(3, 2, 2)
    logits[:, 0] = torch.tensor([[0.0, -inf], [-inf, 0.0], [0.0, -inf]])
    logits[:, 1] = torch.tensor([[-1e30, 0.3], [-1e30, 0.1], [-1e30, 0.7]])
    logits = logits.to(DEVICE).requires_grad_()
    args = (logits.log_softmax(-1), torch.tensor([[0, 0], [0, 0]], device=DEVICE), [3, 3], [2, 1])
    losses = ctc_loss(*args, blank=1, reduction="none", backend="triton")
    assert losses[0].item() == 0.0 and torch.isinf(losses[1])
    total = ctc_loss(*args, blank=1, reduction="sum", zero_infinity=True, backend="triton")
    assert total.item() == 0.0
    total.backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.count_nonzero(logits.grad[:, 1]) == 0


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_triton_ctc_on_cuda_matches_cpu_backend(dtype):
    frames, batch, classes, labels = 150, 8, 62, 40
    log_probs = _random_log_probs(frames, batch, classes, torch.float32, seed=4)
    generator = torch.Generator().manual_seed(5)
    targets = torch.randint(1, classes, (batch, labels), generator=generator)
    input_lengths = torch.randint(100, frames + 1, (batch,), generator=generator)
    target_lengths = torch.randint(0, labels + 1, (batch,), generator=generator)
    results = []
    for device, backend in (("cuda", "triton"), ("cpu", "cpu")):
        leaf = log_probs.to(device=device, dtype=dtype if device == "cuda" else torch.float32)
        leaf = leaf.clone().requires_grad_()
        loss = ctc_loss(leaf, targets.to(device), input_lengths.to(device),
                        target_lengths.to(device), reduction="none", backend=backend)
        loss.sum().backward()
        results.append((loss.detach().cpu().float(), leaf.grad.cpu().float()))
    rtol = 1e-2 if dtype == torch.float16 else 1e-4
    torch.testing.assert_close(results[0][0], results[1][0], rtol=rtol, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=rtol, atol=10 * rtol)
