"""The checks of ``seqkit bench gpu``: each a function that returns rows with an ``ok`` verdict.

Each runs in a process of its own (:mod:`seqkit.bench.gpu_stage`) on CUDA; the tests run them on
the CPU in tiny form, the Triton kernels through the interpreter. The reference for every loss
and gradient is the float64 computation on the CPU (seqkit's CPU paths, themselves checked
against a brute-force enumeration of every alignment and against float64 ``gradcheck`` by the
test suite); the peer is torch's ``ctc_loss`` or torchaudio's ``rnnt_loss`` on the same device
in float32. The tolerances are :data:`REFERENCE` and :data:`PEER`: float32 against float64 at
T=1000, torch's own CTC gradient on the CPU is 2.6e-3 off at most (1.1e-3 in norm), its loss
1e-6 relative (measured here on the CPU); torchaudio's transducer gradient 8.6e-4.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqkit.audio.features import FeatureConfig
from seqkit.bench import ctc_loss as ctc_bench
from seqkit.bench import transducer_loss as transducer_bench
from seqkit.bench.gpu_stage import StageOutput, one_line
from seqkit.corpora.timit.prepare import prepare_corpus
from seqkit.data.phones import vocabulary
from seqkit.errors import BackendUnavailableError, ConfigError
from seqkit.losses.ctc import ctc_loss
from seqkit.losses.fused_joint import fused_transducer_loss
from seqkit.losses.pruned import lattice_nll, lattice_nll_and_bands, pruned_lattice, simple_lattice
from seqkit.losses.transducer import transducer_loss
from seqkit.models import build_model
from seqkit.synth.corpus import synthesize_corpus
from seqkit.training import load_recipe, read_run_log, train
from seqkit.training.trainer import cpu_has_native_bf16

# The shapes issue #30 names: CTC (B, T, S, C) and transducer (B, T, U, V), and the joint's width
# J for the pruned and fused-joint paths (the synth recipes' joint_dim).
CTC_SHAPE = (8, 1000, 200, 62)
TRANSDUCER_SHAPE = (4, 300, 80, 500)
JOINT_DIM = 128
# B, T, U, V of the transducer benchmark GPU transducer losses are usually compared on (the
# shape of the warp-transducer / k2 / NeMo loss benchmarks): timed, not checked against float64.
TRANSDUCER_BENCHMARK_SHAPE = (30, 500, 100, 500)
# Band width of the pruned path (the synth/transducer recipe's prune_range).
PRUNE_RANGE = 4


@dataclass(frozen=True)
class Tolerance:
    """How far a result may be from another and still agree.

    Attributes:
        loss_rtol: largest per-sequence loss difference, relative to the other's (at least 1).
        grad_atol: largest gradient entry difference, relative to the other's largest entry
            (at least 1: CTC and transducer gradients with respect to logits lie in [-1, 1]).
        grad_norm_rtol: ``||grad - other|| / ||other||``.
    """

    loss_rtol: float
    grad_atol: float
    grad_norm_rtol: float

    def __str__(self) -> str:
        return (f"loss {self.loss_rtol:g}, grad {self.grad_atol:g} max / "
                f"{self.grad_norm_rtol:g} norm")


# float32 on the device against float64 on the CPU, and float32 against float32 (the peer's
# own error adds to ours).
REFERENCE = Tolerance(loss_rtol=1e-5, grad_atol=1e-2, grad_norm_rtol=5e-3)
PEER = Tolerance(loss_rtol=2e-5, grad_atol=1e-2, grad_norm_rtol=1e-2)
# The same computation on strided and on contiguous inputs.
SAME = Tolerance(loss_rtol=1e-6, grad_atol=1e-6, grad_norm_rtol=1e-6)
# Repeated backwards without torch.use_deterministic_algorithms: atomics may reorder sums.
REPEAT_ATOL = 1e-5
# Relative loss difference of autocast against float32, at most, over the compared steps.
AUTOCAST_TOLERANCE = {"bf16": 0.05, "fp16": 0.02}
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# A short training run must end with a step loss this much below its first steps' (fraction).
TRAIN_LOSS_DROP = 0.25
TRAIN_WINDOW = 5  # steps averaged at each end

Result = tuple[torch.Tensor, list[torch.Tensor]]  # per-sequence losses (B,) and gradients


# ---------------------------------------------------------------------------------------------
# comparing


def compare(check: str, ours: Result, other: Result, tolerance: Tolerance) -> dict[str, Any]:
    """A row saying whether ``ours`` agrees with ``other`` within ``tolerance``.

    Both are (per-sequence losses, gradients) as from :func:`run_loss`; NaN or inf anywhere in
    ours fails the check (and a gradient of a different shape).
    """
    loss, grads = ours[0].double().cpu(), [g.double().cpu() for g in ours[1]]
    ref_loss, ref_grads = other[0].double().cpu(), [g.double().cpu() for g in other[1]]
    finite = bool(torch.isfinite(loss).all()) and all(bool(torch.isfinite(g).all())
                                                      for g in grads)
    same_shapes = [g.shape for g in grads] == [g.shape for g in ref_grads]
    loss_diff = float(((loss - ref_loss).abs() / ref_loss.abs().clamp_min(1.0)).max())
    grad_max = grad_norm = float("inf")
    if same_shapes and grads:
        grad_max = max(float((g - r).abs().max() / r.abs().max().clamp_min(1.0))
                       for g, r in zip(grads, ref_grads, strict=True))
        grad_norm = max(float((g - r).norm() / r.norm().clamp_min(1e-30))
                        for g, r in zip(grads, ref_grads, strict=True))
    ok = (finite and same_shapes and loss_diff <= tolerance.loss_rtol
          and grad_max <= tolerance.grad_atol and grad_norm <= tolerance.grad_norm_rtol)
    return {"check": check, "loss rel diff": loss_diff, "grad max diff": grad_max,
            "grad norm rel diff": grad_norm, "tolerance": str(tolerance), "ok": ok}


def run_loss(fn: Callable[..., torch.Tensor], leaves: list[torch.Tensor], *rest: Any) -> Result:
    """``fn(*leaves, *rest)`` per sequence, and the gradients of its sum with respect to leaves.

    The leaves are used as given (their strides kept) after ``requires_grad_``.
    """
    leaves = [leaf.detach().requires_grad_() for leaf in leaves]
    losses = fn(*leaves, *rest)
    grads = torch.autograd.grad(losses.sum(), leaves)
    return losses.detach(), [g.detach() for g in grads]


def _error_row(check: str, error: Exception) -> dict[str, Any]:
    return {"check": check, "error": one_line(error, 200), "ok": False}


def _rows(cases: list[tuple[str, Callable[[], dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Each case's row; a case that raises is a failed row with its error, the others still run."""
    rows = []
    for check, case in cases:
        try:
            rows.append(case())
        except Exception as error:  # noqa: BLE001 - one failing case must not hide the others
            rows.append(_error_row(check, error))
    return rows


def _shape_text(axes: str, shape: tuple[int, ...]) -> str:
    return " ".join(f"{a}={n}" for a, n in zip(axes.split(), shape, strict=True))


def _backend(device: str, backend: str | None) -> str:
    return backend or ("triton" if torch.device(device).type == "cuda" else "cpu")


# ---------------------------------------------------------------------------------------------
# CTC


def ctc_inputs(shape: tuple[int, int, int, int], seed: int = 0) -> tuple[torch.Tensor, ...]:
    """log_probs (T, B, C) float32, targets (B, S), input and target lengths (B,), on the CPU:
    mixed lengths, as ``seqkit bench losses``."""
    return ctc_bench._make_inputs(*shape, torch.device("cpu"), seed)


def _ctc(backend: str, *, logits: bool = False) -> Callable[..., torch.Tensor]:
    """Our CTC loss per sequence; with ``logits`` its input goes through log-softmax first."""
    def loss(log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: torch.Tensor,
             target_lengths: torch.Tensor) -> torch.Tensor:
        if logits:
            log_probs = log_probs.log_softmax(-1)
        return ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none",
                        backend=backend)
    return loss


def _torch_ctc(logits: torch.Tensor, targets: torch.Tensor, input_lengths: torch.Tensor,
               target_lengths: torch.Tensor) -> torch.Tensor:
    """torch's CTC loss of ``logits`` through log-softmax: torch's gradient with respect to
    log-probs assumes a log-softmax before it (ours treats them as free inputs), so the two
    agree only as gradients with respect to the logits."""
    return torch.nn.functional.ctc_loss(logits.log_softmax(-1), targets, input_lengths,
                                        target_lengths, reduction="none")


def check_ctc(*, seconds: float = 0.0, device: str = "cuda", backend: str | None = None,
              shape: tuple[int, int, int, int] = CTC_SHAPE) -> StageOutput:
    """Our CTC loss and gradient against the float64 CPU reference and against torch's.

    ``seconds`` is the stage's time limit (unused: the stage is sized to fit).
    """
    backend = _backend(device, backend)
    log_probs, targets, input_lengths, target_lengths = ctc_inputs(shape)
    on_device = [x.to(device) for x in (targets, input_lengths, target_lengths)]
    ours = run_loss(_ctc(backend, logits=True), [log_probs.to(device)], *on_device)
    reference = run_loss(_ctc("cpu", logits=True), [log_probs.double()], targets, input_lengths,
                         target_lengths)
    peer = run_loss(_torch_ctc, [log_probs.to(device)], *on_device)
    rows = [compare(f"ours ({backend}, {device}) vs float64 CPU", ours, reference, REFERENCE),
            compare(f"ours ({backend}, {device}) vs torch ({device})", ours, peer, PEER)]
    info = compare(f"torch ({device}) vs float64 CPU", peer, reference, REFERENCE)
    return StageOutput(rows, [f"CTC {_shape_text('B T S C', shape)}, float32, mixed lengths; "
                              "reference: seqkit's CPU path in float64; gradients with respect "
                              "to the logits before log-softmax",
                              f"tolerances: {REFERENCE} (reference), {PEER} (peer)",
                              _info(info)])


def _info(row: dict[str, Any]) -> str:
    """A comparison reported, not checked: the peer's own distance from the reference."""
    return (f"{row['check']}: loss {row['loss rel diff']:.2e}, grad {row['grad max diff']:.2e} "
            f"max / {row['grad norm rel diff']:.2e} norm (for scale; not a check)")


# ---------------------------------------------------------------------------------------------
# transducer: the full loss, the pruned path and the fused joint


def transducer_inputs(shape: tuple[int, int, int, int], seed: int = 0
                      ) -> tuple[torch.Tensor, ...]:
    """logits (B, T, U+1, V) float32, int32 targets (B, U) and lengths (B,), on the CPU."""
    logits, targets, logit_lengths, target_lengths = transducer_bench._make_inputs(
        *shape, torch.device("cpu"), seed)
    return logits, targets.long(), logit_lengths.long(), target_lengths.long()


def _transducer(backend: str) -> Callable[..., torch.Tensor]:
    def loss(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
             target_lengths: torch.Tensor) -> torch.Tensor:
        return transducer_loss(logits, targets, logit_lengths, target_lengths, reduction="none",
                               backend=backend)
    return loss


def _torchaudio_transducer(logits: torch.Tensor, targets: torch.Tensor,
                           logit_lengths: torch.Tensor, target_lengths: torch.Tensor
                           ) -> torch.Tensor:
    try:
        from torchaudio.functional import rnnt_loss
    except ImportError as error:
        raise BackendUnavailableError(f"torchaudio failed to import ({error})") from error
    return rnnt_loss(logits, targets.int(), logit_lengths.int(), target_lengths.int(), blank=0,
                     reduction="none")


def joint_inputs(shape: tuple[int, int, int, int], joint_dim: int = JOINT_DIM, seed: int = 1
                 ) -> dict[str, torch.Tensor]:
    """A random joint network's inputs and weights, on the CPU in float32.

    f (B, T, J), g (B, U+1, J) (the two sides after their projections), the output layer
    W (V, J) and b (V,), the pruned path's simple-joint logits am (B, T, V) and lm (B, U+1, V),
    int64 targets (B, U) and lengths (B,). Scaled so the joint's logits spread like a trained
    model's (a few nats), not a uniform distribution's.
    """
    B, T, U, V = shape
    generator = torch.Generator().manual_seed(seed)
    _, targets, logit_lengths, target_lengths = transducer_inputs((B, T, U, 2), seed)
    targets = torch.randint(1, V, (B, U), generator=generator)

    def randn(*size: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*size, generator=generator) * scale

    return {"f": randn(B, T, joint_dim, scale=0.5), "g": randn(B, U + 1, joint_dim, scale=0.5),
            "weight": randn(V, joint_dim, scale=joint_dim ** -0.5 * 2),
            "bias": randn(V, scale=0.1), "am": randn(B, T, V), "lm": randn(B, U + 1, V),
            "targets": targets, "logit_lengths": logit_lengths,
            "target_lengths": target_lengths}


def _joint_logits(f: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
                  ) -> torch.Tensor:
    """(B, T, U+1, V) logits of Graves's joint ``W tanh(f_t + g_u) + b``."""
    return torch.nn.functional.linear(torch.tanh(f[:, :, None] + g[:, None]), weight, bias)


def _pruned(starts: torch.Tensor, width: int) -> Callable[..., torch.Tensor]:
    """The pruned loss on the given bands, as a function of (f, g, weight, bias)."""
    def loss(f: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
             targets: torch.Tensor, logit_lengths: torch.Tensor, target_lengths: torch.Tensor
             ) -> torch.Tensor:
        moves = pruned_lattice(lambda z: torch.nn.functional.linear(torch.tanh(z), weight, bias),
                               f, g, targets, starts.to(f.device), width, blank=0)
        return lattice_nll(*moves, logit_lengths, target_lengths)
    return loss


def _simple(am: torch.Tensor, lm: torch.Tensor, targets: torch.Tensor,
            logit_lengths: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    moves = simple_lattice(am, lm, targets, blank=0)
    return lattice_nll(*moves, logit_lengths, target_lengths)


def _fused(f: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
           targets: torch.Tensor, logit_lengths: torch.Tensor, target_lengths: torch.Tensor
           ) -> torch.Tensor:
    return fused_transducer_loss(f, g, weight, bias, targets, logit_lengths, target_lengths)


def _joint_then_loss(backend: str) -> Callable[..., torch.Tensor]:
    """The joint's logits, then :func:`transducer_loss`: what the fused op must equal."""
    def loss(f: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
             targets: torch.Tensor, logit_lengths: torch.Tensor, target_lengths: torch.Tensor
             ) -> torch.Tensor:
        return transducer_loss(_joint_logits(f, g, weight, bias), targets, logit_lengths,
                               target_lengths, reduction="none", backend=backend)
    return loss


def check_transducer(*, seconds: float = 0.0, device: str = "cuda", backend: str | None = None,
                     shape: tuple[int, int, int, int] = TRANSDUCER_SHAPE,
                     joint_dim: int = JOINT_DIM, prune_range: int = PRUNE_RANGE) -> StageOutput:
    """The transducer loss three ways, each loss and gradient against the float64 CPU reference.

    1. ``transducer_loss`` (our kernels on CUDA) on random logits, also against torchaudio.
    2. The pruned path (simple joint, bands, the real joint on the bands): the simple loss, and
       the pruned loss on the bands the device chose (recomputed on the CPU from float64 inputs;
       this path's log-softmax is float32 by design); the share of bands that float64 chose
       alike is reported. With bands of every label position, the pruned loss must equal
       ``transducer_loss`` of the same joint.
    3. The fused joint (``fused_transducer_loss``) against the joint's logits then
       ``transducer_loss`` in float64 on the CPU: gradients of f, g, W and b.
    """
    backend = _backend(device, backend)
    logits, targets, logit_lengths, target_lengths = transducer_inputs(shape)
    lengths = (targets, logit_lengths, target_lengths)
    on_device = [x.to(device) for x in lengths]
    joint = joint_inputs(shape, joint_dim)
    sides = [joint[k] for k in ("f", "g", "weight", "bias")]
    joint_lengths = [joint[k] for k in ("targets", "logit_lengths", "target_lengths")]
    joint_on_device = [x.to(device) for x in joint_lengths]
    notes = [f"transducer {_shape_text('B T U V', shape)}, joint J={joint_dim}, float32 on "
             f"{device}; reference: seqkit's CPU path in float64", f"tolerances: {REFERENCE} "
             f"(reference), {PEER} (peer)"]

    computed: dict[str, Result] = {}

    def full() -> dict[str, Any]:
        computed["ours"] = run_loss(_transducer(backend), [logits.to(device)], *on_device)
        computed["reference"] = run_loss(_transducer("cpu"), [logits.double()], *lengths)
        return compare(f"loss ({backend}) vs float64 CPU", computed["ours"],
                       computed["reference"], REFERENCE)

    def peer() -> dict[str, Any]:
        ours, reference = computed["ours"], computed["reference"]
        theirs = run_loss(_torchaudio_transducer, [logits.to(device)], *on_device)
        notes.append(_info(compare(f"torchaudio ({device}) vs float64 CPU", theirs, reference,
                                   REFERENCE)))
        return compare(f"loss ({backend}) vs torchaudio ({device})", ours, theirs, PEER)

    def simple() -> dict[str, Any]:
        am_lm = [joint["am"], joint["lm"]]
        ours = run_loss(_simple, [x.to(device) for x in am_lm], *joint_on_device)
        reference = run_loss(_simple, [x.double() for x in am_lm], *joint_lengths)
        return compare("pruned path: simple joint loss vs float64 CPU", ours, reference,
                       REFERENCE)

    def pruned() -> dict[str, Any]:
        moves = simple_lattice(joint["am"].to(device), joint["lm"].to(device),
                               joint_on_device[0], blank=0)
        width = max(2, min(prune_range, shape[2] + 1))
        _, starts = lattice_nll_and_bands(*moves, *joint_on_device[1:], width)
        moves64 = simple_lattice(joint["am"].double(), joint["lm"].double(), joint_lengths[0],
                                 blank=0)
        _, starts64 = lattice_nll_and_bands(*moves64, *joint_lengths[1:], width)
        valid = torch.arange(shape[1])[None] < joint_lengths[1][:, None]  # (B, T)
        same = float((starts.cpu() == starts64)[valid].float().mean())
        notes.append(f"pruned path: bands of width {width}; float64 chose the same band start "
                     f"on {same:.1%} of frames (not a check)")
        ours = run_loss(_pruned(starts, width), [x.to(device) for x in sides], *joint_on_device)
        reference = run_loss(_pruned(starts.cpu(), width), [x.double() for x in sides],
                             *joint_lengths)
        return compare("pruned path: pruned loss vs float64 CPU", ours, reference, REFERENCE)

    def unpruned() -> dict[str, Any]:
        positions = shape[2] + 1
        starts = torch.zeros(shape[0], shape[1], dtype=torch.long)
        whole = run_loss(_pruned(starts, positions), [x.to(device) for x in sides],
                         *joint_on_device)
        loss = run_loss(_joint_then_loss(backend), [x.to(device) for x in sides],
                        *joint_on_device)
        return compare(f"pruned path, all {positions} positions vs loss ({backend})", whole,
                       loss, PEER)

    def fused() -> dict[str, Any]:
        ours = run_loss(_fused, [x.to(device) for x in sides], *joint_on_device)
        reference = run_loss(_joint_then_loss("cpu"), [x.double() for x in sides],
                             *joint_lengths)
        return compare("fused joint vs joint + loss in float64 CPU", ours, reference, REFERENCE)

    rows = _rows([("loss vs float64 CPU", full), ("loss vs torchaudio", peer),
                  ("pruned path: simple joint", simple), ("pruned path: pruned loss", pruned),
                  ("pruned path, all positions", unpruned), ("fused joint", fused)])
    return StageOutput(rows, notes)


# ---------------------------------------------------------------------------------------------
# determinism and strided inputs


def check_determinism(*, seconds: float = 0.0, device: str = "cuda", backend: str | None = None,
                      ctc_shape: tuple[int, int, int, int] = CTC_SHAPE,
                      transducer_shape: tuple[int, int, int, int] = TRANSDUCER_SHAPE,
                      repeats: int = 3) -> StageOutput:
    """Repeated forward + backward on the same inputs.

    With ``torch.use_deterministic_algorithms(True)`` losses and gradients must be bitwise
    identical; without it they may differ by :data:`REPEAT_ATOL` at most (atomic adds may sum
    in another order).
    """
    backend = _backend(device, backend)
    cases = {"ctc": (_ctc(backend), ctc_inputs(ctc_shape)),
             "transducer": (_transducer(backend), transducer_inputs(transducer_shape))}
    rows = []
    for name, (fn, (data, *rest)) in cases.items():
        rest = [x.to(device) for x in rest]
        for deterministic in (False, True):
            mode = "deterministic" if deterministic else "default"
            try:
                previous = torch.are_deterministic_algorithms_enabled()
                torch.use_deterministic_algorithms(deterministic)
                try:
                    runs = [run_loss(fn, [data.to(device)], *rest) for _ in range(repeats)]
                finally:
                    torch.use_deterministic_algorithms(previous)
            except Exception as error:  # noqa: BLE001 - the other cases still run
                rows.append(_error_row(f"{name} {mode}", error))
                continue
            diff = max(max(float((a - b).abs().max()) for a, b in
                           zip([r[0], *r[1]], [runs[0][0], *runs[0][1]], strict=True))
                       for r in runs[1:])
            bitwise = diff == 0.0 and all(torch.equal(r[1][0], runs[0][1][0]) for r in runs)
            rows.append({"check": f"{name} {mode}", "runs": repeats, "max diff": diff,
                         "bitwise equal": bitwise,
                         "required": "bitwise" if deterministic else f"<= {REPEAT_ATOL:g}",
                         "ok": bitwise if deterministic else diff <= REPEAT_ATOL})
    return StageOutput(rows, [f"backend {backend} on {device}; CTC "
                              f"{_shape_text('B T S C', ctc_shape)}, transducer "
                              f"{_shape_text('B T U V', transducer_shape)}"])


def _strided_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """The same lengths as column 0 of a (B, 2) tensor: stride 2."""
    return torch.stack([lengths, lengths.flip(0) * 7 + 99], dim=1)[:, 0]


def _strided_targets(targets: torch.Tensor) -> torch.Tensor:
    """The same targets as every other column of a (B, 2S) tensor."""
    return torch.stack([targets, targets.flip(0)], dim=2).reshape(targets.shape[0], -1)[:, ::2]


def check_strided(*, seconds: float = 0.0, device: str = "cuda", backend: str | None = None,
                  ctc_shape: tuple[int, int, int, int] = CTC_SHAPE,
                  transducer_shape: tuple[int, int, int, int] = TRANSDUCER_SHAPE) -> StageOutput:
    """Strided and expanded (stride 0) inputs give what their contiguous copies give.

    Each variant's loss and gradient is compared with the same call on ``.contiguous()``
    copies, within :data:`SAME`.
    """
    backend = _backend(device, backend)
    rows = []
    for name, fn, (data, targets, data_lengths, target_lengths), data_views in (
        ("ctc", _ctc(backend), ctc_inputs(ctc_shape), _ctc_views),
        ("transducer", _transducer(backend), transducer_inputs(transducer_shape),
         _transducer_views),
    ):
        batch, frames = (data.shape[1], data.shape[0]) if name == "ctc" else data.shape[:2]
        full = torch.tensor(frames).expand(batch)  # stride 0
        variants = [(f"{name} {label}", view, targets, data_lengths, target_lengths)
                    for label, view in data_views(data.to(device))]
        variants += [
            (f"{name} lengths strided (column of (B, 2))", data.to(device), targets,
             _strided_lengths(data_lengths.to(device)), _strided_lengths(
                 target_lengths.to(device))),
            (f"{name} lengths expanded (stride 0)", data.to(device), targets,
             full.to(device), target_lengths),
            (f"{name} targets strided (every other column)", data.to(device),
             _strided_targets(targets.to(device)), data_lengths, target_lengths),
        ]

        def case(values: tuple[torch.Tensor, ...], check: str,
                 fn: Callable[..., torch.Tensor] = fn) -> Callable[[], dict[str, Any]]:
            def run() -> dict[str, Any]:
                x, *rest = (v.to(device) for v in values)
                strided = run_loss(fn, [x], *rest)
                contiguous = run_loss(fn, [x.contiguous()], *(r.contiguous() for r in rest))
                return compare(check, strided, contiguous, SAME)
            return run

        rows += _rows([(check, case(tuple(values), check)) for check, *values in variants])
    return StageOutput(rows, [f"backend {backend} on {device}; each against its contiguous "
                              f"copy within {SAME}"])


def _ctc_views(log_probs: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(T, B, C) log-probs as a transposed view of (B, T, C) and as a slice of a wider C."""
    junk = torch.zeros_like(log_probs[..., :3]) - 5.0
    return [("log_probs transposed from (B, T, C)", log_probs.transpose(0, 1).contiguous()
             .transpose(0, 1)),
            ("log_probs sliced from a wider C", torch.cat([log_probs, junk], -1)
             [..., : log_probs.shape[-1]])]


def _transducer_views(logits: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(B, T, U+1, V) logits as a transposed view of (B, U+1, T, V) and a slice of a wider V."""
    junk = torch.zeros_like(logits[..., :3])
    return [("logits transposed from (B, U+1, T, V)", logits.transpose(1, 2).contiguous()
             .transpose(1, 2)),
            ("logits sliced from a wider V", torch.cat([logits, junk], -1)
             [..., : logits.shape[-1]])]


# ---------------------------------------------------------------------------------------------
# speed and memory


def time_kernels(*, seconds: float = 0.0, device: str = "cuda", repeats: int = 5,
                 ctc_shapes: tuple[tuple[int, int, int, int], ...] = (CTC_SHAPE,),
                 transducer_shapes: tuple[tuple[int, int, int, int], ...] = (
                     TRANSDUCER_SHAPE, TRANSDUCER_BENCHMARK_SHAPE),
                 backend: str | None = None) -> StageOutput:
    """Our CTC and transducer losses against torch / torchaudio: time and peak memory.

    The rows of :func:`seqkit.bench.ctc_loss.run` and :func:`seqkit.bench.transducer_loss.run`
    with ``memory=True`` (peak = the memory a forward + backward allocates beyond its inputs,
    the gradient included), one shape at a time: each shape whose timing ran is a passing check
    (its numbers are reported, not judged), a shape that fails (out of memory, a kernel error,
    no torchaudio) is a failed check with its error, and the other shapes still run.
    ``backend="triton"`` with ``device="cpu"`` runs the kernels in Triton's interpreter (how this
    is tested without a GPU).
    """
    rows: list[dict[str, Any]] = []
    for loss, run, shapes, axes in (("ctc", ctc_bench.run, ctc_shapes, "B T S C"),
                                    ("transducer", transducer_bench.run, transducer_shapes,
                                     "B T U V")):
        for shape in shapes:
            try:
                rows += [{**row, "ok": True} for row in run(
                    repeats=repeats, device=device, shapes=(shape,), backend=backend,
                    memory=True)]
            except Exception as error:  # noqa: BLE001 - the other shapes still run
                rows.append({"loss": loss, "shape": _shape_text(axes, shape),
                             "error": one_line(error, 200), "ok": False})
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return StageOutput(rows, [f"forward + backward, float32, median of {repeats} repeats; "
                              "ratio = ours / peer; peak = CUDA memory a forward + backward "
                              "allocates beyond its inputs, the gradient included"])


# ---------------------------------------------------------------------------------------------
# autocast


def compare_autocast(
    *,
    seconds: float = 0.0,
    device: str = "cuda",
    precisions: tuple[str, ...] = ("bf16", "fp16"),
    recipes: tuple[str, ...] = ("synth/ctc_blstm", "synth/transducer"),
    steps: int = 5,
    overrides: tuple[str, ...] = (),
    batch: tuple[int, int, int] = (8, 600, 60),
) -> StageOutput:
    """A few Adam steps in autocast against float32: same weights, same batch, same steps.

    Dropout is off so that only the precision differs. Each row compares one recipe's model in
    one precision with its float32 run: the largest relative difference of the step losses,
    against :data:`AUTOCAST_TOLERANCE`. fp16 scales the loss (``torch.amp.GradScaler``, as the
    trainer does); a step the scaler skips is counted.

    Args:
        seconds: the stage's time limit (unused: sized to fit).
        device: where to train ("cuda"; "cpu" runs bf16 autocast on CPU, for tests).
        precisions: autocast precisions to compare, keys of :data:`AMP_DTYPES`.
        recipes: recipes whose models (and learning rates) are trained.
        steps: optimizer steps per run.
        overrides: ``--set`` overrides for every recipe (tests shrink the models).
        batch: (B, T, U) of the random batch: frames of 123-dim features, labels per utterance.

    Raises:
        BackendUnavailableError: bf16 on a CPU whose oneDNN has no bfloat16 LSTM.
    """
    target = torch.device(device)
    if target.type == "cpu" and not cpu_has_native_bf16():
        raise BackendUnavailableError(
            "bf16 autocast on this CPU: oneDNN has no bfloat16 LSTM without AVX512-BF16 or AMX "
            "(an AVX2-only CPU); compare autocast on CUDA")
    rows: list[dict[str, Any]] = []
    for name in recipes:
        recipe = load_recipe(name, [*overrides, "model.encoder.dropout=0",
                                    "model.predictor.dropout=0"])
        inputs = _random_batch(*batch, vocab_size=len(vocabulary(recipe.data.phone_set)),
                               device=target)
        reference, _ = _train_steps(recipe, inputs, None, steps, target)
        for precision in precisions:
            losses, skipped_steps = _train_steps(recipe, inputs, AMP_DTYPES[precision], steps,
                                                 target)
            diff = max(abs(a - b) / abs(b) for a, b in zip(losses, reference, strict=True))
            rows.append({"recipe": name, "precision": precision, "steps": steps,
                         "float32 first/last loss": f"{reference[0]:.4f} / {reference[-1]:.4f}",
                         "autocast first/last loss": f"{losses[0]:.4f} / {losses[-1]:.4f}",
                         "max rel diff": diff, "tolerance": AUTOCAST_TOLERANCE[precision],
                         "scaler skipped": skipped_steps,
                         "ok": bool(diff <= AUTOCAST_TOLERANCE[precision])})
    return StageOutput(rows, [f"random batch B, T, U = {batch}, dropout off, Adam at the "
                              "recipe's lr; loss = summed NLL / labels"])


def _random_batch(batch: int, frames: int, labels: int, *, vocab_size: int,
                  device: torch.device) -> tuple[torch.Tensor, ...]:
    """Random features (B, T, 123), lengths, targets (B, U) in [1, V) and their lengths."""
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, frames, FeatureConfig().dim, generator=generator)  # (B, T, F)
    feat_lengths = frames - torch.randint(0, frames // 5 + 1, (batch,), generator=generator)
    targets = torch.randint(1, vocab_size, (batch, labels), generator=generator)  # (B, U)
    target_lengths = labels - torch.randint(0, labels // 5 + 1, (batch,), generator=generator)
    feat_lengths[0], target_lengths[0] = frames, labels
    return tuple(x.to(device) for x in (feats, feat_lengths, targets, target_lengths))


def _train_steps(recipe: Any, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype | None,
                 steps: int, device: torch.device) -> tuple[list[float], int]:
    """Step losses of ``steps`` Adam steps from seed-0 weights, and the steps fp16 skipped."""
    feats, feat_lengths, targets, target_lengths = inputs
    torch.manual_seed(0)
    model = build_model(recipe.model, input_dim=feats.shape[-1],
                        vocab_size=len(vocabulary(recipe.data.phone_set))).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.train.lr)
    # a small first scale: the default 65536 overflows on the first steps, which the scaler
    # then skips, and a skipped step is a difference from float32 that precision did not make
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**8) if dtype == torch.float16 \
        else None
    losses, skipped_steps = [], 0
    for _ in range(steps):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            nll = model(feats, feat_lengths, targets, target_lengths).float()  # (B,)
        loss = nll.sum() / target_lengths.sum()
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.train.grad_clip)
            optimizer.step()
        else:
            scale = scaler.get_scale()
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            skipped_steps += int(scaler.get_scale() < scale)
        losses.append(float(loss.detach()))
    return losses, skipped_steps


# ---------------------------------------------------------------------------------------------
# the CUDA test files under pytest


def run_tests(*, seconds: float, files: list[str], root: str, select: str | None = None
              ) -> StageOutput:
    """Run pytest on ``files`` (relative to ``root``; ``select``: pytest's ``-k``) in a
    subprocess; counts per file.

    The counts come from pytest's JUnit XML, not from its console output. Past ``seconds``
    (less 15 s for pytest to write its report) pytest is interrupted (SIGINT), which stops it
    after the running test and still writes the XML: the tests that finished are counted. Each
    file's row passes when it has passed tests and no failure or error; an interrupted run
    fails the stage.

    Raises:
        ConfigError: the test files are not there (run from a seqkit checkout).
    """
    base = Path(root)
    missing = [f for f in files if not (base / f).is_file()]
    if missing:
        raise ConfigError(f"expected the test files in a seqkit checkout at {base}, found none "
                          f"of {', '.join(missing)}: run seqkit bench gpu from the repository")
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        # -P: the tests import the installed seqkit, the one the check runs, not the checkout's
        command = [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "-m", "not slow", f"--junitxml={xml}", *(["-k", select] if select else []),
                   *files]
        timeout = max(5.0, seconds - 15.0)
        returncode, output, timed_out = _run_interruptible(command, base, timeout)
        if not xml.is_file():
            tail = " ".join(output.split()[-30:])
            return StageOutput(problem=f"pytest exited {returncode} with no results: {tail}")
        rows, failures = junit_counts(xml)
    total = {k: sum(r[k] for r in rows) for k in ("passed", "failed", "errors", "skipped")}
    rows = [{**r, "ok": r["passed"] > 0 and not (r["failed"] or r["errors"])} for r in rows]
    notes = [f"failed: {name}" for name in failures[:20]]
    selected = f" -k '{select}'" if select else ""
    notes.append(f"command: python -m pytest -q -m 'not slow'{selected} {' '.join(files)}")
    problems = []
    if timed_out:
        problems.append(f"pytest interrupted after {timeout:.0f} s: the counts are the tests "
                        "that finished")
    elif returncode not in (0, 1):  # 1 = some tests failed; 2 interrupted, 3 internal error
        problems.append(f"pytest exited {returncode}: the counts are the tests that finished")
    if total["failed"] or total["errors"]:
        problems.append(f"{total['failed']} failed and {total['errors']} errors of "
                        f"{sum(total.values())}")
    return StageOutput(rows + [{"file": "total", **total}], notes, "; ".join(problems) or None)


def _run_interruptible(command: list[str], cwd: Path, timeout_s: float
                       ) -> tuple[int, str, bool]:
    """Run ``command``; past ``timeout_s`` send SIGINT, then kill if it is still running 10 s on.

    Returns:
        The exit code, stdout and stderr together, and whether the timeout was reached.
    """
    import signal

    with subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        try:
            output, _ = process.communicate(timeout=timeout_s)
            return process.returncode, output, False
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)  # pytest finishes its report on Ctrl-C
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        return process.returncode, output, True


def junit_counts(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Passed / failed / errors / skipped per test file from a JUnit XML file, and the failures.

    Returns:
        Rows {"file", "passed", "failed", "errors", "skipped"} in file order, and the
        ``file::test`` names of the tests that failed or erred.
    """
    counts: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("classname", "").split(".")[-1] + ".py"
        row = counts.setdefault(name, {"file": name, "passed": 0, "failed": 0, "errors": 0,
                                       "skipped": 0})
        outcome = next((child.tag for child in case
                        if child.tag in ("failure", "error", "skipped")), "passed")
        key = {"failure": "failed", "error": "errors"}.get(outcome, outcome)
        row[key] += 1
        if key in ("failed", "errors"):
            failures.append(f"{name}::{case.get('name')}")
    return list(counts.values()), failures


# ---------------------------------------------------------------------------------------------
# a corpus and short training runs


def make_corpus(*, seconds: float = 0.0, work: str, speakers: int = 16, sentences: int = 6
                ) -> StageOutput:
    """Synthesize a small corpus into ``work/corpus`` and prepare it into ``work/prepared``.

    The check is that the prepared corpus has train and dev utterances.
    """
    base = Path(work)
    corpus = synthesize_corpus(base / "corpus", speakers=speakers, sentences=sentences, seed=0,
                               jobs=os.cpu_count() or 1, force=True)
    prepare_corpus(base / "corpus", base / "prepared", force=True)
    rows = [{"split": name, "speakers": s.speakers, "utterances": s.utterances,
             "hours": s.hours, "ok": s.utterances > 0 or name == "test"}
            for name, s in corpus.splits.items()]
    return StageOutput(rows, [f"synthesized {speakers} speakers x {sentences} sentences (seed "
                              f"0) with espeak-ng and prepared into {base / 'prepared'}"])


def train_and_check(*, seconds: float, recipe: str, data: str, run: str,
                    overrides: tuple[str, ...] = (), min_drop: float = TRAIN_LOSS_DROP
                    ) -> StageOutput:
    """Train ``recipe`` from scratch for most of ``seconds``; its loss must fall by ``min_drop``.

    The loss compared is the per-label training NLL of the first and the last
    :data:`TRAIN_WINDOW` steps (every step is logged). A quarter of ``seconds`` is kept for
    start-up, the last dev pass and the checkpoint.
    """
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    config = load_recipe(recipe, [*overrides, "train.log_every=1",
                                  "train.freeze_encoder_epochs=0"])
    summary = train(config, data, run, force=True, max_minutes=0.75 * max(seconds - 15, 5) / 60)
    log = read_run_log(run)
    losses = [r.loss for r in log.steps]
    rates = [r.frames_per_s for r in log.steps[1:]]
    row: dict[str, Any] = {"run": recipe, "steps": len(losses), "epochs": len(log.epochs),
                           "stopped": summary.stopped,
                           "frames/s": statistics.median(rates) if rates else None,
                           "peak MiB": torch.cuda.max_memory_allocated() / 2**20
                           if torch.cuda.is_available() else None}
    if len(losses) < 2 * TRAIN_WINDOW:
        return StageOutput([{**row, "ok": False}], problem=f"only {len(losses)} steps ran: "
                           f"{2 * TRAIN_WINDOW} are needed to compare the loss")
    first = statistics.mean(losses[:TRAIN_WINDOW])
    last = statistics.mean(losses[-TRAIN_WINDOW:])
    drop = 1 - last / first
    row.update({"first loss": first, "last loss": last, "drop": drop, "required": min_drop,
                "ok": bool(drop >= min_drop)})
    return StageOutput([row], [f"{recipe} from scratch (overrides: "
                               f"{', '.join(overrides) or 'none'}); loss = training NLL per label "
                               f"(nats), mean of the first and last {TRAIN_WINDOW} steps; it must "
                               f"fall by at least {min_drop:.0%}"])
