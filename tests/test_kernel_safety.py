"""The loss kernels at the edges a real device meets first (issue #30): strided and expanded
length tensors, offsets past 2**31 elements, reproducible gradients, compile-cache churn, padding
that is never read, impossible lattices, warps for wide programs, and tensors on another device.

Each test runs on every backend of ``loss_backends.BACKENDS`` where it can (the Triton kernels
through the interpreter when there is no GPU, so shapes stay tiny); the ones only a GPU can
check are marked ``cuda``.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from loss_backends import BACKENDS, CUDA, TRITON, LossBackend

from seqkit.losses.reference import transducer_brute_force

# The interpreter runs masked lanes (log(0) of unreachable states) through numpy, which warns.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

LINUX = sys.platform.startswith("linux")


def _ctc_batch(seed: int, frames: int = 9, batch: int = 3, classes: int = 5, labels: int = 3):
    generator = torch.Generator().manual_seed(seed)
    log_probs = torch.randn(frames, batch, classes, generator=generator).log_softmax(-1)
    targets = torch.randint(1, classes, (batch, labels), generator=generator)
    return log_probs, targets


def _transducer_batch(seed: int, batch: int = 3, frames: int = 5, labels: int = 3, vocab: int = 6):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, labels + 1, vocab, generator=generator)
    targets = torch.randint(1, vocab, (batch, labels), generator=generator)
    return logits, targets


def _loss_and_grad(backend: LossBackend, loss: str, data: torch.Tensor, targets: torch.Tensor,
                   lengths: tuple[torch.Tensor, torch.Tensor], **options):
    """Per-sequence costs and the gradient of their sum with respect to ``data``."""
    leaf = data.detach().clone().requires_grad_()
    run = backend.ctc_loss if loss == "ctc" else backend.transducer_loss
    costs = run(leaf, targets, *lengths, reduction="none", **options)
    (grad,) = torch.autograd.grad(costs.sum(), leaf)
    return costs.detach(), grad


def _strided(values: list[int]) -> torch.Tensor:
    """``values`` as column 0 of a (B, 2) tensor: stride 2, garbage (99) in between."""
    table = torch.tensor([[v, 99] for v in values])
    return table[:, 0]


@pytest.mark.parametrize("layout", ["strided", "expanded"])
@pytest.mark.parametrize("loss", ["ctc", "transducer"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_and_expanded_lengths_give_the_same_loss_as_contiguous(backend, loss, layout):
    """Finding 1: the kernels read lengths as ``ptr + b``; a (B, 2)[:, 0] view read 99 (a
    segfault under the interpreter) and an expanded (stride-0) tensor read past its one element."""
    if loss == "ctc":
        data, targets = _ctc_batch(0)
        frames, labels = [9, 7, 8], [3, 2, 3]
    else:
        data, targets = _transducer_batch(0)
        frames, labels = [5, 4, 5], [3, 1, 2]
    if layout == "expanded":  # one length for the whole batch, as torch.full(...).expand makes
        frames, labels = [frames[0]] * 3, [labels[0]] * 3
        views = (torch.tensor([frames[0]]).expand(3), torch.tensor([labels[0]]).expand(3))
    else:
        views = (_strided(frames), _strided(labels))
    assert all(not v.is_contiguous() for v in views)
    expected = _loss_and_grad(backend, loss, data, targets,
                              (torch.tensor(frames), torch.tensor(labels)))
    found = _loss_and_grad(backend, loss, data, targets, views)
    assert torch.isfinite(expected[0]).all()
    torch.testing.assert_close(found[0], expected[0], rtol=0, atol=0)
    torch.testing.assert_close(found[1], expected[1], rtol=0, atol=0)


@contextlib.contextmanager
def _frames_far_apart(log_probs: torch.Tensor, stride_t: int, device: str,
                      folder: Path) -> Iterator[torch.Tensor]:
    """``log_probs`` (T, B, C) as a view whose frames are ``stride_t`` elements apart.

    On the CPU the storage is a sparse file mapped into memory: only the pages holding the T
    frames are ever written, so the 8 GiB span costs a few pages of memory and disk.
    """
    frames, batch, classes = log_probs.shape
    numel = (frames - 1) * stride_t + batch * classes
    if device == "cpu":
        path = folder / "frames.bin"
        with open(path, "wb") as file:
            file.truncate(numel * log_probs.element_size())  # a hole: no block is allocated
        storage = torch.from_file(str(path), shared=True, size=numel, dtype=log_probs.dtype)
    else:
        storage = torch.empty(numel, dtype=log_probs.dtype, device=device)
    view = storage.as_strided((frames, batch, classes), (stride_t, classes, 1))
    view.copy_(log_probs)
    try:
        yield view
    finally:
        del view, storage


@pytest.mark.skipif(not LINUX and not CUDA, reason="needs sparse files (Linux) or a CUDA device")
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctc_reads_frames_more_than_2_31_elements_apart(backend, tmp_path):
    """Finding 2: ``t * stride_lp_t`` in int32 wrapped to a negative offset once it reached 2**31
    (T=1500, B=64, C=32k does). Frames 2**30 elements apart put frame 2 at 2**31."""
    log_probs, targets = _ctc_batch(1, frames=3, batch=2, classes=4, labels=2)
    lengths = (torch.tensor([3, 3]), torch.tensor([2, 1]))
    expected = _loss_and_grad(backend, "ctc", log_probs, targets, lengths)
    with _frames_far_apart(log_probs, 2**30, backend.device, tmp_path) as far:
        far.requires_grad_()
        costs = backend.ctc_loss(far, targets, *lengths, reduction="none")
        (grad,) = torch.autograd.grad(costs.sum(), far)
    assert torch.isfinite(expected[0]).all()
    assert torch.equal(costs.detach(), expected[0])
    assert torch.equal(grad.cpu(), expected[1])


@pytest.mark.parametrize(("frames", "input_lengths", "target_lengths"), [
    pytest.param(24, [24, 20], [11, 9], id="one-warp"),  # 2S+1 = 23: 32 lanes
    pytest.param(200, [200, 180], [90, 70], id="two-warps",  # 2S+1 = 181: 256 lanes
                 marks=() if CUDA else pytest.mark.slow),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctc_gradient_is_bitwise_reproducible_and_runs_in_deterministic_mode(
    backend, frames, input_lengths, target_lengths
):
    """Finding 4: atomic adds summed the positions that share a class (every blank, repeated
    labels) in warp arrival order. Labels from 3 classes: many repeats."""
    generator = torch.Generator().manual_seed(2)
    batch, classes = 2, 4
    log_probs = torch.randn(frames, batch, classes, generator=generator).log_softmax(-1)
    targets = torch.randint(1, classes, (batch, max(target_lengths)), generator=generator)
    lengths = (torch.tensor(input_lengths), torch.tensor(target_lengths))
    runs = [_loss_and_grad(backend, "ctc", log_probs, targets, lengths) for _ in range(2)]
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs.append(_loss_and_grad(backend, "ctc", log_probs, targets, lengths))
    finally:
        torch.use_deterministic_algorithms(was)
    (costs, grad), *others = runs
    assert torch.isfinite(costs).all() and grad.abs().max() > 0
    for other_costs, other_grad in others:
        assert torch.equal(other_costs, costs)
        assert torch.equal(other_grad, grad)
    expected = F.ctc_loss(log_probs.double(), targets, *lengths, reduction="none")
    torch.testing.assert_close(costs.double(), expected, rtol=1e-5, atol=0)


def _unspecialized(kernel) -> set[str]:
    """The parameters ``kernel`` was declared not to specialize (jit or interpreter)."""
    if hasattr(kernel, "params"):  # triton.runtime.JITFunction
        return {p.name for p in kernel.params if p.do_not_specialize}
    return set(kernel.kwargs.get("do_not_specialize") or ())  # InterpretedFunction


# The integer arguments whose values follow the batch (its size, T, S or U+1, and the strides
# that depend on them).
BATCH_SHAPED = {
    "_ctc_alpha_kernel": {"stride_lp_t", "stride_lp_b", "stride_tg_b", "batch", "num_states"},
    "_ctc_beta_grad_kernel": {"stride_lp_t", "stride_lp_b", "stride_tg_b", "stride_g_t", "batch",
                              "num_states", "max_labels"},
    "_lattice_kernel": {"num_rows", "T", "U1"},
    "_alpha_beta_kernel": {"T", "U1"},
    "_gradient_kernel": {"num_rows", "T", "U1"},
}


@pytest.mark.parametrize("name", BATCH_SHAPED)
def test_kernels_do_not_specialize_on_batch_shaped_integers(name):
    """Finding 5: Triton specializes an int argument on == 1 and % 16 == 0, so every batch size,
    T and U+1 of a training run compiled its own variants."""
    from seqkit.losses.kernels import ctc, transducer

    kernel = getattr(ctc, name, None) or getattr(transducer, name)
    assert BATCH_SHAPED[name] <= _unspecialized(kernel)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (the interpreter compiles nothing)")
def test_one_compiled_variant_serves_every_batch_size():
    from seqkit.losses.kernels import ctc, transducer

    device = torch.cuda.current_device()
    counts = []
    for batch in (1, 3, 16, 17):
        generator = torch.Generator().manual_seed(batch)
        log_probs = torch.randn(20 + batch, batch, 6, generator=generator).log_softmax(-1)
        targets = torch.randint(1, 6, (batch, 5), generator=generator)
        lengths = (torch.full((batch,), 20 + batch), torch.full((batch,), 5))
        _loss_and_grad(TRITON, "ctc", log_probs, targets, lengths)
        logits = torch.randn(batch, 8 + batch, 5, 16, generator=generator)  # U+1 = 5 always
        lengths = (torch.full((batch,), 8 + batch), torch.full((batch,), 4))
        _loss_and_grad(TRITON, "transducer", logits, targets[:, :4], lengths)
        counts.append([len(k.device_caches[device][0]) for k in (
            ctc._ctc_alpha_kernel, ctc._ctc_beta_grad_kernel, transducer._lattice_kernel,
            transducer._alpha_beta_kernel, transducer._gradient_kernel)])
    assert counts[-1] == counts[0], counts


@contextlib.contextmanager
def _unreadable_rows(logits: torch.Tensor, rows: list[int]) -> Iterator[torch.Tensor]:
    """A copy of ``logits`` (B, T, U+1, V), one memory page a row, with ``rows`` unreadable:
    any read of them is a segmentation fault."""
    page = mmap.PAGESIZE
    assert logits.shape[-1] * logits.element_size() == page
    buffer = mmap.mmap(-1, logits.numel() * logits.element_size())
    copy = torch.frombuffer(buffer, dtype=logits.dtype).view(logits.shape)
    copy.copy_(logits)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    base = copy.data_ptr()
    for row in rows:
        assert libc.mprotect(base + row * page, page, 0) == 0  # PROT_NONE
    try:
        yield copy
    finally:
        for row in rows:
            libc.mprotect(base + row * page, page, mmap.PROT_READ | mmap.PROT_WRITE)


@pytest.mark.skipif(not LINUX or CUDA or not TRITON.interpreted,
                    reason="reads host memory through the interpreter (Linux mprotect)")
@pytest.mark.parametrize("fused_log_softmax", [True, False])
def test_transducer_kernels_never_read_padding_rows(fused_log_softmax):
    """Finding 6: the first kernel log-softmaxed every row, padding included (t >= T_b or
    u > U_b). Here each padding row is an unreadable page, so a read would crash."""
    batch, frames, labels, vocab = 2, 4, 2, mmap.PAGESIZE // 4
    logits, targets = _transducer_batch(3, batch, frames, labels, vocab)
    logit_lengths, target_lengths = torch.tensor([4, 2]), torch.tensor([1, 2])
    padding = [(b * frames + t) * (labels + 1) + u
               for b in range(batch) for t in range(frames) for u in range(labels + 1)
               if t >= logit_lengths[b] or u > target_lengths[b]]
    args = (targets, logit_lengths, target_lengths)
    options = {"reduction": "none", "fused_log_softmax": fused_log_softmax}
    leaf = logits.clone().requires_grad_()
    expected = TRITON.transducer_loss(leaf, *args, **options)
    (expected_grad,) = torch.autograd.grad(expected.sum(), leaf)
    with _unreadable_rows(logits, padding) as guarded:
        guarded.requires_grad_()
        costs = TRITON.transducer_loss(guarded, *args, **options)
        (grad,) = torch.autograd.grad(costs.sum(), guarded)
    assert torch.equal(costs.detach(), expected.detach())
    assert torch.equal(grad, expected_grad)


@pytest.mark.parametrize("mask", [float("-inf"), -1e30], ids=["-inf", "sentinel"])
@pytest.mark.parametrize("fused_log_softmax", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_impossible_transducer_lattice_costs_inf_with_zero_gradient(backend, fused_log_softmax,
                                                                    mask):
    """Finding 7: with a label that has probability 0 in every frame, no path exists. The
    brute-force cost is +inf; Triton gave inf and a NaN gradient, the CPU a finite cost (its
    -1e4 floor) and a finite gradient. Both now give +inf and gradient 0 for that sequence, and
    the other sequences keep their exact costs."""
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 3, 5, generator=generator, dtype=torch.float64)
    if not fused_log_softmax:
        logits = logits.log_softmax(-1)
    targets = torch.tensor([[2, 3], [1, 3]])
    logits[0, :, :, 2] = mask  # sequence 0's first label: impossible everywhere
    logits[1, :, :, 2] = mask  # sequence 1 never needs class 2
    lengths = (torch.tensor([3, 3]), torch.tensor([2, 2]))
    costs, grad = _loss_and_grad(backend, "transducer", logits, targets, lengths,
                                 fused_log_softmax=fused_log_softmax)
    assert torch.isinf(costs[0]) and costs[0] > 0
    assert torch.count_nonzero(grad[0]) == 0
    assert torch.isfinite(grad).all()
    one = logits[1].clone().requires_grad_()
    expected = transducer_brute_force(one, targets[1], 0, fused_log_softmax=fused_log_softmax)
    (expected_grad,) = torch.autograd.grad(expected, one)
    torch.testing.assert_close(costs[1], expected.detach(), rtol=1e-9, atol=0)
    finite = torch.isfinite(one.detach())
    torch.testing.assert_close(grad[1][finite], expected_grad[finite], rtol=1e-9, atol=1e-12)


def test_warps_grow_with_the_program_width_at_four_lanes_a_thread():
    """Finding 8: CTC capped at 4 warps (8 lanes a thread at 2S+1 = 1024, more beyond) and the
    transducer's alpha/beta launch took Triton's default whatever its width."""
    from seqkit.losses.kernels.launch import num_warps_for

    assert [num_warps_for(w) for w in (2, 64, 128, 256, 512, 1024, 2048, 4096, 8192)] == [
        1, 1, 1, 2, 4, 8, 16, 16, 16]


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (spills are a property of the binary)")
def test_long_targets_compile_without_register_spills():
    from seqkit.losses.kernels import ctc, transducer

    generator = torch.Generator().manual_seed(5)
    frames, labels = 700, 300  # 2S+1 = 601: 1024 lanes
    log_probs = torch.randn(frames, 2, 40, generator=generator).log_softmax(-1)
    targets = torch.randint(1, 40, (2, labels), generator=generator)
    lengths = (torch.tensor([frames, frames]), torch.tensor([labels, labels]))
    _loss_and_grad(TRITON, "ctc", log_probs, targets, lengths)
    logits = torch.randn(1, 40, labels + 1, 8, generator=generator)  # U+1 = 301: 512 lanes
    _loss_and_grad(TRITON, "transducer", logits, targets[:1] % 7 + 1,
                   (torch.tensor([40]), torch.tensor([labels])))
    device = torch.cuda.current_device()
    for kernel in (ctc._ctc_alpha_kernel, ctc._ctc_beta_grad_kernel,
                   transducer._alpha_beta_kernel):
        for compiled in kernel.device_caches[device][0].values():
            assert compiled.n_spills == 0, (kernel.fn.__name__, compiled.metadata.num_warps)


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
@pytest.mark.parametrize("loss", ["ctc", "transducer"])
def test_kernels_run_on_the_tensors_device_not_the_current_one(loss):
    """Finding 3: Triton launches on the current device; cuda:1 tensors with device 0 current
    must still be computed on cuda:1."""
    if loss == "ctc":
        data, targets = _ctc_batch(6)
        lengths = (torch.tensor([9, 7, 8]), torch.tensor([3, 2, 3]))
    else:
        data, targets = _transducer_batch(6)
        lengths = (torch.tensor([5, 4, 5]), torch.tensor([3, 1, 2]))
    expected = _loss_and_grad(LossBackend("cpu", "cpu"), loss, data, targets, lengths)
    with torch.cuda.device(0):
        found = _loss_and_grad(LossBackend("triton", "cuda:1"), loss, data, targets, lengths)
    torch.testing.assert_close(found[0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(found[1], expected[1], rtol=1e-5, atol=1e-6)


def _spill_report(cache: str) -> dict[str, int]:
    """Compile each loss kernel for sm_90 at the widths the launches use; spilled bytes by config.

    Needs no GPU: Triton compiles to PTX in-process and its wheel ships ptxas, whose ``-v``
    report gives the spills. Run without ``TRITON_INTERPRET`` (see the test below).
    """
    import os
    import re
    import subprocess
    import tempfile

    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource

    from seqkit.losses.kernels import ctc, transducer
    from seqkit.losses.kernels.launch import num_warps_for

    os.environ["TRITON_CACHE_DIR"] = cache
    index_args = {"targets_ptr", "input_lengths_ptr", "target_lengths_ptr", "logit_lengths_ptr",
                  "order_ptr", "sorted_ptr"}

    def spills(kernel, constexprs: dict, num_warps: int) -> int:
        signature = {
            name: "constexpr" if name in constexprs else
            ("*i64" if name in index_args else "*fp32") if name.endswith("_ptr") else
            "fp32" if name == "log_zero" else "i32"
            for name in kernel.arg_names
        }
        compiled = triton.compile(ASTSource(kernel, signature, constexprs),
                                  target=GPUTarget("cuda", 90, 32),
                                  options={"num_warps": num_warps})
        with tempfile.TemporaryDirectory() as folder:
            ptx = os.path.join(folder, "kernel.ptx")
            with open(ptx, "w") as file:
                file.write(compiled.asm["ptx"])
            report = subprocess.run(
                [get_ptxas(90).path, "-arch=sm_90a", "-v", ptx, "-o", ptx + ".cubin"],
                capture_output=True, text=True, check=True)
        found = re.findall(r"(\d+) bytes spill stores", report.stdout + report.stderr)
        assert found, report.stdout + report.stderr
        return sum(int(n) for n in found)

    acc = {"ACC": tl.float32}
    report = {}
    for block in (16, 512, 2048, 4096):
        warps = num_warps_for(block)
        report[f"ctc alpha {block}"] = spills(ctc._ctc_alpha_kernel, {"BLOCK": block, **acc},
                                              warps)
        report[f"ctc beta {block}"] = spills(
            ctc._ctc_beta_grad_kernel, {"BLOCK": block, "LABEL_BLOCK": block // 2, **acc}, warps)
    for block in (8, 512, 2048):
        report[f"transducer alpha/beta {block}"] = spills(
            transducer._alpha_beta_kernel, {"BLOCK_U": block, **acc}, num_warps_for(block))
    rows = {"BLOCK_R": 4, "BLOCK_V": 1024, **acc}
    for fused in (True, False):
        report[f"transducer lattice fused={fused}"] = spills(
            transducer._lattice_kernel, {"FUSED": fused, **rows}, transducer._ROW_WARPS)
        report[f"transducer gradient fused={fused}"] = spills(
            transducer._gradient_kernel,
            {"FUSED": fused, "CLAMP": True, "CLAMP_VALUE": 1.0, **rows}, transducer._ROW_WARPS)
    return report


@pytest.mark.slow
def test_kernels_compile_for_a_gpu_without_register_spills(tmp_path):
    """Findings 5 and 8 and the compiled path as a whole, without a GPU: every kernel compiles
    for sm_90 (the interpreter checks no types: a kernel can pass every interpreted test and
    still fail to compile), and the warps chosen for its width keep spills under 256 bytes.
    CTC at 2S+1 = 4096 lanes with the old cap of 4 warps spilled 1.6 KB a thread."""
    import json
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import json, sys; from test_kernel_safety import _spill_report; "
            "print(json.dumps(_spill_report(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=Path(__file__).parent,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report) == 15
    assert max(report.values()) < 256, report
