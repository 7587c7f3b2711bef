"""CTC loss on every backend (CPU, Triton): brute force, gradcheck, torch, peers' vectors, edges.

Each property is one test body run for each backend of ``loss_backends.BACKENDS`` (the Triton
kernels through the interpreter when there is no GPU: shapes stay small, T <= 40, B <= 7).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from loss_backends import BACKENDS, CUDA

from seqkit.errors import BackendUnavailableError, LossInputError
from seqkit.losses.ctc import ctc_loss
from seqkit.losses.reference import ctc_brute_force

# The interpreter evaluates log(0) = -inf for unreachable states through numpy, which warns.
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")

def _random_batch(
    frames: int,
    batch: int,
    classes: int,
    labels: int,
    dtype: torch.dtype,
    seed: int,
    blank: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random logits (T, B, C), padded targets without blank (B, S), mixed lengths (B,)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(frames, batch, classes, generator=generator, dtype=dtype) * 2
    non_blank = torch.tensor([c for c in range(classes) if c != blank])
    targets = non_blank[torch.randint(0, len(non_blank), (batch, labels), generator=generator)]
    input_lengths = torch.randint(frames // 2, frames + 1, (batch,), generator=generator)
    target_lengths = torch.randint(0, labels + 1, (batch,), generator=generator)
    input_lengths[0], target_lengths[0] = frames, labels
    return logits, targets, input_lengths, target_lengths


def _loss_and_logit_grad(
    loss_fn, logits: torch.Tensor, *args, weights: torch.Tensor, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence losses and d(sum_b w_b loss_b)/d logits through log_softmax."""
    leaf = logits.clone().requires_grad_()
    losses = loss_fn(leaf.log_softmax(-1), *args, reduction="none", **kwargs)
    (losses * weights).sum().backward()
    return losses.detach(), leaf.grad


# Tiny sequences for brute force: (log-probs seed, T, C, target, blank).
TINY_CASES = {
    "distinct_labels": (0, 5, 4, [1, 2], 0),
    "repeated_labels_need_a_blank": (1, 5, 3, [1, 1], 0),
    "run_of_three": (2, 6, 3, [2, 2, 2], 0),
    "blank_not_zero": (3, 5, 4, [0, 1, 0], 2),
    "blank_is_last_class": (4, 4, 3, [0, 1], 2),
    "single_frame": (5, 1, 4, [3], 0),
    "single_frame_empty_target": (6, 1, 3, [], 0),
    "empty_target": (7, 5, 3, [], 0),
    "input_just_long_enough": (8, 3, 3, [1, 1], 0),
    "input_too_short": (9, 3, 4, [1, 1, 1], 0),
}


@pytest.mark.parametrize("case", TINY_CASES.values(), ids=TINY_CASES.keys())
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctc_loss_matches_brute_force_on_tiny_inputs(backend, case):
    seed, frames, classes, target, blank = case
    generator = torch.Generator().manual_seed(seed)
    log_probs = torch.randn(frames, classes, generator=generator, dtype=torch.float64)
    log_probs = log_probs.log_softmax(-1).requires_grad_()
    target_t = torch.tensor(target, dtype=torch.long)
    expected = ctc_brute_force(log_probs, target_t, blank)
    (expected_grad,) = torch.autograd.grad(expected, log_probs)

    # Embedded in a batch at position 1, with two extra padding frames and padded targets.
    batch_lp = torch.randn(frames + 2, 3, classes, dtype=torch.float64).log_softmax(-1)
    batch_lp[:frames, 1] = log_probs.detach()
    batch_lp.requires_grad_()
    targets = torch.full((3, 4), 1 if blank != 1 else 0, dtype=torch.long)
    targets[1, : len(target)] = target_t
    loss = backend.ctc_loss(
        batch_lp,
        targets,
        torch.tensor([frames + 2, frames, frames + 1]),
        torch.tensor([2, len(target), 1]),
        blank=blank,
        reduction="none",
    )
    loss[1].backward()
    if torch.isinf(expected):
        assert torch.isinf(loss[1]) and loss[1] > 0
        assert torch.equal(batch_lp.grad, torch.zeros_like(batch_lp.grad))
        return
    torch.testing.assert_close(loss[1], expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(batch_lp.grad[:frames, 1], expected_grad, rtol=1e-9, atol=1e-12)
    assert torch.count_nonzero(batch_lp.grad[frames:]) == 0
    assert torch.count_nonzero(batch_lp.grad[:, [0, 2]]) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctc_loss_passes_gradcheck_on_log_probs_in_float64(backend):
    logits, targets, input_lengths, target_lengths = _random_batch(7, 3, 4, 3, torch.float64, 11)
    log_probs = logits.log_softmax(-1).requires_grad_()

    def loss(lp: torch.Tensor) -> torch.Tensor:
        return backend.ctc_loss(lp, targets, input_lengths, target_lengths)

    # fast_mode for Triton: one random directional derivative, a handful of kernel runs
    assert torch.autograd.gradcheck(
        loss, (log_probs,), eps=1e-6, atol=1e-8, fast_mode=backend.name == "triton"
    )


@pytest.mark.parametrize(
    ("dtype", "rtol"), [(torch.float32, 1e-4), (torch.float64, 1e-9)], ids=["float32", "float64"]
)
@pytest.mark.parametrize(
    ("backend", "seed"),
    # three random batches on the CPU, one through the (slow) Triton interpreter
    [pytest.param(p.values[0], seed, id=f"{p.id}-{seed}") for p in BACKENDS for seed in range(3)
     if seed == 0 or not p.values[0].interpreted],
)
def test_ctc_loss_matches_torch_on_random_mixed_length_batches(backend, dtype, rtol, seed):
    logits, targets, input_lengths, target_lengths = _random_batch(40, 6, 9, 12, dtype, seed)
    weights = torch.rand(6, dtype=dtype) + 0.5
    args = (targets, input_lengths, target_lengths)
    ours, ours_grad = _loss_and_logit_grad(
        backend.ctc_loss, logits, *args, weights=weights
    )
    theirs, theirs_grad = _loss_and_logit_grad(F.ctc_loss, logits, *args, weights=weights)
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=0)
    scale = theirs_grad.abs().max()
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctc_loss_reductions_equal_torch_including_empty_targets(backend, reduction):
    logits, targets, input_lengths, target_lengths = _random_batch(20, 5, 6, 5, torch.float64, 3)
    target_lengths[2] = 0  # mean divides by max(target_length, 1)
    log_probs = logits.log_softmax(-1)
    args = (targets, input_lengths, target_lengths)
    ours = backend.ctc_loss(log_probs, *args, reduction=reduction)
    theirs = F.ctc_loss(log_probs, *args, reduction=reduction)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_ctc_equals_per_utterance(backend):
    logits, targets, input_lengths, target_lengths = _random_batch(25, 4, 7, 8, torch.float64, 5)
    log_probs = logits.log_softmax(-1)
    batched = backend.ctc_loss(
        log_probs, targets, input_lengths, target_lengths, reduction="none"
    )
    for b in range(4):
        frames, labels = int(input_lengths[b]), int(target_lengths[b])
        single = backend.ctc_loss(
            log_probs[:frames, b : b + 1],
            targets[b : b + 1, :labels],
            [frames],
            [labels],
            reduction="none",
        )
        torch.testing.assert_close(batched[b : b + 1], single, rtol=1e-12, atol=0)


def test_cpu_ctc_gives_identical_losses_and_gradients_on_any_thread_count():
    """The CPU path splits the batch over torch's threads; each sequence is computed alone."""
    logits, targets, input_lengths, target_lengths = _random_batch(40, 7, 9, 10, torch.float32, 11)
    weights = torch.rand(7, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            results.append(
                _loss_and_logit_grad(
                    ctc_loss, logits, targets, input_lengths, target_lengths,
                    weights=weights, backend="cpu",
                )
            )
    finally:
        torch.set_num_threads(threads)
    (loss_one, grad_one), (loss_three, grad_three) = results
    assert torch.equal(loss_one, loss_three)
    assert torch.equal(grad_one, grad_three)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctc_loss_matches_warp_ctc_published_basic_case(backend):
    """warp-ctc's own test (tensorflow_binding/tests/test_warpctc_op.py, _test_basic): T=2,
    one alignment; cost and softmax-minus-occupancy gradient given to 6 decimals."""
    logits = torch.tensor([[[0.1, 0.6, 0.1, 0.1, 0.1]], [[0.1, 0.1, 0.6, 0.1, 0.1]]])
    leaf = logits.clone().requires_grad_()
    cost = backend.ctc_loss(leaf.log_softmax(-1), torch.tensor([[1, 2]]), [2], [2], reduction="sum")
    cost.backward()
    other, label = 0.177031, -0.708125
    expected_grad = torch.full((2, 1, 5), other)
    expected_grad[0, 0, 1] = expected_grad[1, 0, 2] = label
    torch.testing.assert_close(cost, torch.tensor(2.46286), rtol=0, atol=1e-5)
    torch.testing.assert_close(leaf.grad, expected_grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_concatenated_targets_give_the_same_loss_and_gradient_as_padded(backend):
    logits, targets, input_lengths, target_lengths = _random_batch(15, 4, 5, 6, torch.float64, 7)
    concatenated = torch.cat([targets[b, : target_lengths[b]] for b in range(4)])
    weights = torch.ones(4, dtype=torch.float64)
    padded = _loss_and_logit_grad(
        backend.ctc_loss, logits, targets, input_lengths, target_lengths, weights=weights
    )
    flat = _loss_and_logit_grad(
        backend.ctc_loss,
        logits,
        concatenated,
        input_lengths.tolist(),
        target_lengths.tolist(),
        weights=weights,
    )
    torch.testing.assert_close(padded[0], flat[0], rtol=0, atol=0)
    torch.testing.assert_close(padded[1], flat[1], rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_frames_and_padding_labels_get_exactly_zero_gradient(backend):
    logits, targets, input_lengths, target_lengths = _random_batch(12, 3, 5, 4, torch.float32, 9)
    input_lengths[:] = torch.tensor([12, 7, 3])
    target_lengths[:] = torch.tensor([4, 2, 1])
    targets[1, 2:] = 99  # garbage beyond the target length is never read
    log_probs = logits.log_softmax(-1).requires_grad_()
    backend.ctc_loss(log_probs, targets, input_lengths, target_lengths).backward()
    assert torch.count_nonzero(log_probs.grad[7:, 1]) == 0
    assert torch.count_nonzero(log_probs.grad[3:, 2]) == 0
    assert torch.count_nonzero(log_probs.grad[:7, 1]) > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_too_short_input_gives_inf_or_zero_with_zero_infinity_and_zero_gradient(backend):
    logits, targets, input_lengths, target_lengths = _random_batch(6, 3, 5, 4, torch.float64, 13)
    targets[1] = torch.tensor([2, 2, 2, 2])  # needs 7 frames
    input_lengths[1], target_lengths[1] = 6, 4
    log_probs = logits.log_softmax(-1)
    args = (targets, input_lengths, target_lengths)
    per_seq = backend.ctc_loss(log_probs, *args, reduction="none")
    assert torch.isinf(per_seq[1]) and per_seq[1] > 0
    assert torch.isfinite(per_seq[[0, 2]]).all()
    leaf = log_probs.clone().requires_grad_()
    zeroed = backend.ctc_loss(leaf, *args, reduction="sum", zero_infinity=True)
    torch.testing.assert_close(
        zeroed, F.ctc_loss(log_probs, *args, reduction="sum", zero_infinity=True), rtol=1e-9, atol=0
    )
    zeroed.backward()
    assert torch.count_nonzero(leaf.grad[:, 1]) == 0
    assert torch.isfinite(leaf.grad).all()
    # Without zero_infinity torch's gradient is NaN; ours stays exactly 0 for that sequence.
    leaf.grad = None
    backend.ctc_loss(leaf, *args, reduction="none")[1].backward()
    assert torch.count_nonzero(leaf.grad) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_neg_inf_log_probs_give_zero_cost_and_finite_gradient(backend):
    """flashlight/flashlight:flashlight/pkg/speech/test/criterion/CriterionTest.cpp, CTCCost case 1.

    Blank is the last class (1); target (0, 0) in 3 frames has one alignment 0, blank, 0 with
    probability 1 because every other entry is -inf. torch 2.14 returns cost 0 here but a NaN
    gradient through log_softmax; ours must stay finite.
    """
    inf = float("inf")
    logits = torch.tensor([[[0.0, -inf]], [[-inf, 0.0]], [[0.0, -inf]]]).requires_grad_()
    loss = backend.ctc_loss(logits.log_softmax(-1), torch.tensor([[0, 0]]), [3], [2], blank=1,
                    reduction="sum")
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_masking_sentinel_log_probs_make_the_alignment_impossible(backend):
    """After baidu-research/warp-ctc:tests/test_cpu.cpp inf_test (our own smaller inputs).

    The first target label has logit -1e30 in every frame, i.e. probability 0. torch keeps the
    log-prob finite (about -1e30) and returns a finite cost of about 1e30; ours returns inf.
    """
    generator = torch.Generator().manual_seed(0)
    logits = torch.rand(8, 1, 5, generator=generator)
    logits[:, :, 2] = -1e30
    log_probs = logits.log_softmax(-1).requires_grad_()
    loss = backend.ctc_loss(log_probs, torch.tensor([[2, 3, 3]]), [8], [3], reduction="sum")
    assert torch.isinf(loss)
    loss.backward()
    assert torch.count_nonzero(log_probs.grad) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_logits_stay_finite(backend):
    """SeanNaren/warp-ctc:pytorch_binding/tests/test_cpu.py test_medium, multiplier 200.

    Logits up to 120 overflow a naive float32 exp. Sequence 0 has one alignment (1, 2) whose
    second frame is 100 below that frame's maximum, so its cost is about 100.
    """
    probs = torch.tensor(
        [[[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1]],
         [[0.6, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.5, 0.2, 0.1]]]
    )  # (T=2, B=2, C=5)
    logits = (probs * 200).requires_grad_()
    loss = backend.ctc_loss(logits.log_softmax(-1), torch.tensor([[1, 2], [1, 2]]), [2, 2], [2, 2],
                    reduction="none")
    torch.testing.assert_close(loss, torch.tensor([100.0, 100.0]), rtol=1e-6, atol=0)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_input_lengths_give_zero_for_empty_and_inf_for_nonempty_targets(backend):
    log_probs = torch.randn(4, 2, 3).log_softmax(-1)
    loss = backend.ctc_loss(log_probs, torch.tensor([[1], [1]]), [0, 0], [0, 1], reduction="none")
    assert loss[0].item() == 0.0 and torch.isinf(loss[1])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {**a, "log_probs": a["log_probs"][0]}, "expected log_probs (T, B, C)"),
        (lambda a: {**a, "input_lengths": [9, 5]}, "expected input_lengths <= T=6"),
        (lambda a: {**a, "input_lengths": [6]}, "expected input_lengths of shape (2,)"),
        (lambda a: {**a, "target_lengths": [-1, 2]}, "expected target_lengths >= 0"),
        (lambda a: {**a, "targets": torch.tensor([[1, 0], [2, 3]])}, "without the blank index 0"),
        (lambda a: {**a, "targets": torch.tensor([[1, 7], [2, 3]])}, "in [0, 5)"),
        (lambda a: {**a, "targets": a["targets"].float()}, "expected integer targets"),
        (lambda a: {**a, "targets": torch.tensor([1, 2, 3])}, "sum(target_lengths)=4"),
        (lambda a: {**a, "targets": torch.tensor([[1], [2]])}, "at least 2 columns"),
        (lambda a: {**a, "reduction": "avg"}, "expected reduction one of"),
        (lambda a: {**a, "backend": "cuda"}, "expected backend one of"),
        (lambda a: {**a, "blank": 5}, "expected blank in [0, 5)"),
        (lambda a: {**a, "log_probs": a["log_probs"].half()}, "half precision is accepted on CUDA"),
    ],
)
def test_ctc_loss_rejects_bad_inputs_with_expected_and_found(change, message):
    good = {
        "log_probs": torch.randn(6, 2, 5).log_softmax(-1),
        "targets": torch.tensor([[1, 2], [3, 4]]),
        "input_lengths": [6, 5],
        "target_lengths": [2, 2],
    }
    args = change(good)
    kwargs = {k: args.pop(k) for k in ("reduction", "backend", "blank") if k in args}
    with pytest.raises(LossInputError, match="expected") as error:
        ctc_loss(args["log_probs"], args["targets"], args["input_lengths"], args["target_lengths"],
                 **kwargs)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_triton_backend_on_cpu_without_interpreter_raises_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    log_probs = torch.randn(4, 1, 3).log_softmax(-1)
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        ctc_loss(log_probs, torch.tensor([[1]]), [4], [1], backend="triton")


def test_compiled_cpu_code_runs_uncached_where_numba_cannot_cache_it():
    """numba refuses cache=True when no cache directory works (e.g. source without a file, or a
    read-only install with no writable user cache); the CPU path must still compile and run."""
    from seqkit.losses.cpu_ctc import _compiled

    namespace: dict = {}
    exec("def add_one(x):\n    return x + 1\n", namespace)
    assert _compiled(namespace["add_one"])(1) == 2


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_triton_ctc_on_cuda_accepts_half_log_probs_and_matches_the_cpu_backend(dtype):
    frames, batch, classes, labels = 150, 8, 62, 40
    logits = torch.randn(frames, batch, classes, generator=torch.Generator().manual_seed(4))
    log_probs = (logits * 2).log_softmax(-1)
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
