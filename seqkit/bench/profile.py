"""Where a training step's time goes, phase by phase, for the synth CTC and transducer recipes.

Issue #19: a transducer step costs ~1.9x a CTC step, yet our transducer loss is 7-8x faster
than torchaudio's, so the cost must sit in the joint network, its log-softmax and their
backward pass. To see it, one step of each recipe is cut into phases at tensor boundaries: each
phase's input is a detached leaf, so its forward and its backward can be timed on their own
(``torch.autograd.backward`` from the next phase's input gradient), and the phases together do
exactly the work of one ordinary step. The transducer loss is run through its CPU path's own
three stages (:mod:`seqkit.losses.cpu_transducer`): the chunked log-softmax that gathers the
blank and next-label log-probs, the alpha recursion, and the closed-form gradient (beta,
occupancies, ``softmax * occupancy - move occupancy`` written into a logits-sized tensor).

Each row is the median over the timed steps (realistic batches from a prepared corpus, as the
trainer draws them, augmentation off, float32, after one warm-up step); ``whole step`` times the
same batches through the model's ordinary forward, loss and backward as a check on the sum.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from seqkit.bench.train import check_prepared, training_batches
from seqkit.data.batching import Batch
from seqkit.errors import ConfigError
from seqkit.losses import cpu_transducer
from seqkit.losses.ctc import ctc_loss
from seqkit.losses.fused_joint import fused_transducer_loss
from seqkit.losses.pruned import (
    band_width,
    lattice_nll,
    lattice_nll_and_bands,
    pruned_lattice,
    simple_lattice,
)
from seqkit.models.transducer import start_with_blank
from seqkit.progress import ProgressFn
from seqkit.training import load_recipe

RECIPES = ("synth/ctc_blstm", "synth/transducer")
CTC_PHASES = ("encoder fwd", "output layer fwd", "log-softmax fwd", "loss fwd", "loss bwd",
              "log-softmax bwd", "output layer bwd", "encoder bwd", "optimizer")
TRANSDUCER_PHASES = ("encoder fwd", "prediction fwd", "joint fwd", "log-softmax fwd",
                     "loss fwd", "loss bwd", "joint bwd", "prediction bwd", "encoder bwd",
                     "optimizer")
# A transducer with ``model.prune_range`` (seqkit.losses.pruned): the additive joint and its
# loss choose the bands, the joint runs on them, then the lattice recursion on the bands' moves.
PRUNED_PHASES = ("encoder fwd", "prediction fwd", "simple joint+loss fwd", "pruned joint fwd",
                 "pruned loss fwd", "pruned loss bwd", "pruned joint bwd",
                 "simple joint+loss bwd", "prediction bwd", "encoder bwd", "optimizer")
# Timed beside the transducer step, not part of it: the same joint, log-softmax and loss through
# seqkit.losses.fused_joint, on the same batch and weights (compare with joint fwd + log-softmax
# fwd + loss fwd and loss bwd + joint bwd).
FUSED_PHASES = ("fused joint+loss fwd", "fused joint+loss bwd")
# A transducer with ``model.ctc_loss_scale``: the auxiliary CTC loss on the encoder's outputs.
AUX_CTC_PHASE = "auxiliary CTC fwd+bwd"


def phases(model: Any) -> tuple[str, ...]:
    """The phases of one training step of a model config (``recipe.model``)."""
    if model.kind == "ctc":
        return CTC_PHASES
    split = PRUNED_PHASES if model.prune_range else TRANSDUCER_PHASES
    if not model.ctc_loss_scale:
        return split
    return (*split[:-2], AUX_CTC_PHASE, *split[-2:])  # before the encoder's backward


class _Clock:
    """Milliseconds per phase name, accumulated over one step."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.ms[phase] = self.ms.get(phase, 0.0) + (time.perf_counter() - start) * 1000.0


def _leaf(x: torch.Tensor) -> torch.Tensor:
    """A phase boundary: the next phase starts from a detached copy that collects its gradient."""
    return x.detach().requires_grad_()


def _optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, clip: float) -> None:
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def ctc_step(model: Any, batch: Batch, optimizer: torch.optim.Optimizer, clip: float,
             clock: _Clock) -> dict[str, Any]:
    """One CTC training step cut into :data:`CTC_PHASES`; returns the batch's shape."""
    with clock("encoder fwd"):
        h, out_lengths = model.encoder(batch.feats, batch.feat_lengths)  # (B, T', H)
    h_in = _leaf(h)
    with clock("output layer fwd"):
        logits = model.output(h_in).float()  # (B, T', V)
    logits_in = _leaf(logits)
    with clock("log-softmax fwd"):
        log_probs = logits_in.log_softmax(dim=-1)
    log_probs_in = _leaf(log_probs)
    labels = int(batch.target_lengths.sum())
    with clock("loss fwd"):
        nll = ctc_loss(log_probs_in.transpose(0, 1), batch.targets, out_lengths,
                       batch.target_lengths, blank=model.blank, reduction="none")  # (B,)
        loss = nll.sum() / labels
    with clock("loss bwd"):
        loss.backward()
    with clock("log-softmax bwd"):
        log_probs.backward(log_probs_in.grad)
    with clock("output layer bwd"):
        logits.backward(logits_in.grad)
    with clock("encoder bwd"):
        h.backward(h_in.grad)
    with clock("optimizer"):
        _optimizer_step(model, optimizer, clip)
    B, T, V = logits.shape
    return {"B": B, "T'": T, "U": int(batch.target_lengths.max()), "V": V}


class _Encoded:
    """The encoder phase's outputs: its output h (B, T_enc, H) and frame lengths, and f, the
    joint's input (h stacked by ``joint_stride``, trimmed), each with its detached leaf."""

    def __init__(self, model: Any, batch: Batch, clock: _Clock) -> None:
        with clock("encoder fwd"):
            self.h, self.h_lengths = model.encoder(batch.feats, batch.feat_lengths)
            self.h_in = _leaf(self.h)
            # model.encode's second half, from the leaf: the joint's gradient reaches h_in
            f, self.lengths = model.joint_frames(self.h_in, self.h_lengths)
            self.f = f[:, : int(self.lengths.max())]
        self.f_in = _leaf(self.f)

    def backward(self, model: Any, targets: torch.Tensor, target_lengths: torch.Tensor,
                 labels: int, clock: _Clock) -> None:
        """:data:`AUX_CTC_PHASE` (with ``model.ctc_loss_scale``), then the encoder's backward
        from both gradients."""
        scale = model.config.ctc_loss_scale
        if scale:
            with clock(AUX_CTC_PHASE):
                nll = model.auxiliary_ctc_nll(self.h_in, self.h_lengths, targets, target_lengths)
                (scale * nll.sum() / labels).backward()
        with clock("encoder bwd"):
            self.f.backward(self.f_in.grad)
            self.h.backward(self.h_in.grad)


def _encode_and_predict(model: Any, batch: Batch, clock: _Clock) -> tuple[Any, ...]:
    """A transducer step's first two phases: the encoder's outputs (:class:`_Encoded`) and the
    prediction network's output with its detached leaf (so each phase's backward is timed
    alone), the targets (B, U) with padding as the blank, and the (frame, label) lengths."""
    enc = _Encoded(model, batch, clock)
    target_lengths = batch.target_lengths
    with clock("prediction fwd"):
        labels_in = start_with_blank(batch.targets[:, : int(target_lengths.max())],
                                     target_lengths, model.blank)  # (B, U+1)
        g, _ = model.predict(labels_in)  # (B, U+1, H_g)
    g_in = _leaf(g)
    targets = labels_in[:, 1:]  # (B, U), padding is the blank
    return enc, g, g_in, targets, (enc.lengths, target_lengths)


def transducer_step(model: Any, batch: Batch, optimizer: torch.optim.Optimizer, clip: float,
                    clock: _Clock) -> dict[str, Any]:
    """One transducer training step cut into :data:`TRANSDUCER_PHASES`; returns the shapes."""
    enc, g, g_in, targets, lengths = _encode_and_predict(model, batch, clock)
    f_in = enc.f_in
    with clock("joint fwd"):
        logits = model.joint(f_in.unsqueeze(2), g_in.unsqueeze(1)).float()  # (B, T', U+1, V)
    values = logits.detach()
    with clock("log-softmax fwd"):
        log_norm, blank_lp, emit_lp = cpu_transducer.lattice_log_probs(
            values, targets, *lengths, blank=model.blank, fused_log_softmax=True)
    with clock("loss fwd"):
        alpha, log_likelihood = cpu_transducer.forward_variables(blank_lp, emit_lp, *lengths)
    lattice = cpu_transducer.TransducerLattice(log_norm, blank_lp, emit_lp, alpha,
                                               log_likelihood)
    labels = int(batch.target_lengths.sum())  # loss = sum / labels
    scale = torch.full((values.shape[0],), 1.0 / labels)
    with clock("loss bwd"):
        grad_logits = cpu_transducer.transducer_gradient(
            values, targets, *lengths, lattice, scale, blank=model.blank,
            fused_log_softmax=True, clamp=None)
    with clock("joint bwd"):
        logits.backward(grad_logits)
    with clock("prediction bwd"):
        g.backward(g_in.grad)
    enc.backward(model, targets, lengths[1], labels, clock)
    _fused_joint_loss(model, f_in, g_in, targets, lengths, clock)
    with clock("optimizer"):
        _optimizer_step(model, optimizer, clip)
    B, T, U1, V = logits.shape
    return {"B": B, "T'": T, "U": U1 - 1, "V": V, "J": model.config.joint_dim}


def pruned_transducer_step(model: Any, batch: Batch, optimizer: torch.optim.Optimizer,
                           clip: float, clock: _Clock) -> dict[str, Any]:
    """One step of a transducer with ``model.prune_range`` cut into :data:`PRUNED_PHASES`
    (the loss of :meth:`TransducerModel._pruned_loss`); returns the shapes."""
    enc, g, g_in, targets, lengths = _encode_and_predict(model, batch, clock)
    f, f_in = enc.f, enc.f_in
    labels = int(batch.target_lengths.sum())  # loss = sum / labels, as the trainer's
    with clock("simple joint+loss fwd"):
        simple_moves = simple_lattice(model.simple_f(f_in), model.simple_g(g_in), targets,
                                      blank=model.blank)
        width = band_width(model.config.prune_range, *lengths, g.shape[1])
        simple, starts = lattice_nll_and_bands(*simple_moves, *lengths, width)
    with clock("pruned joint fwd"):
        moves = pruned_lattice(lambda z: model.joint_out(torch.tanh(z)), model.joint_f(f_in),
                               model.joint_g(g_in), targets, starts, width, blank=model.blank)
    moves_in = [_leaf(m) for m in moves]
    with clock("pruned loss fwd"):
        loss = lattice_nll(*moves_in, *lengths).sum() / labels
    with clock("pruned loss bwd"):
        loss.backward()
    with clock("pruned joint bwd"):
        torch.autograd.backward(moves, [m.grad for m in moves_in])
    with clock("simple joint+loss bwd"):
        (model.config.simple_loss_scale * simple.sum() / labels).backward()
    with clock("prediction bwd"):
        g.backward(g_in.grad)
    enc.backward(model, targets, lengths[1], labels, clock)
    with clock("optimizer"):
        _optimizer_step(model, optimizer, clip)
    B, T, U1 = g.shape[0], f.shape[1], g.shape[1]
    return {"B": B, "T'": T, "U": U1 - 1, "S": width, "V": model.vocab_size,
            "J": model.config.joint_dim}


def _fused_joint_loss(model: Any, f: torch.Tensor, g: torch.Tensor, targets: torch.Tensor,
                      lengths: tuple[torch.Tensor, torch.Tensor], clock: _Clock) -> None:
    """:data:`FUSED_PHASES`: the joint's layers and the loss through the fused op, on copies of
    the weights (the model's gradients stay those of the ordinary path)."""
    leaves = [x.detach().requires_grad_() for x in (
        f, g, model.joint_f.weight, model.joint_f.bias, model.joint_g.weight,
        model.joint_out.weight, model.joint_out.bias)]
    f_in, g_in, w_f, b_f, w_g, w_o, b_o = leaves
    with clock("fused joint+loss fwd"):
        costs = fused_transducer_loss(
            torch.nn.functional.linear(f_in, w_f, b_f), torch.nn.functional.linear(g_in, w_g),
            w_o, b_o, targets, *lengths, blank=model.blank)  # (B,)
        loss = costs.sum() / int(lengths[1].sum())
    with clock("fused joint+loss bwd"):
        loss.backward()


def whole_step(model: Any, batch: Batch, optimizer: torch.optim.Optimizer, clip: float) -> float:
    """Milliseconds of one ordinary step (model forward, loss, backward, clip, Adam)."""
    start = time.perf_counter()
    nll = model(batch.feats, batch.feat_lengths, batch.targets, batch.target_lengths)
    (nll.sum() / batch.target_lengths.sum()).backward()
    _optimizer_step(model, optimizer, clip)
    return (time.perf_counter() - start) * 1000.0


def run(
    data_dir: str | Path,
    *,
    recipes: tuple[str, ...] = RECIPES,
    steps: int = 5,
    overrides: tuple[str, ...] = (),
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Profile ``steps`` training steps of each recipe, phase by phase.

    Args:
        data_dir: a prepared corpus (``seqkit data prepare``).
        recipes: CTC or transducer recipes (files or built-in names).
        steps: timed steps (one more is run first to warm up).
        overrides: ``--set`` overrides for every recipe.
        progress: called as ``progress("bench profile", done, total)``.

    Returns:
        Per recipe, one row per phase: ``recipe``, ``phase``, ``ms`` (median over the steps),
        ``share %`` (of the sum of the phase medians); for the transducer the
        :data:`FUSED_PHASES` in parentheses (beside the step, not in it); then ``sum of
        phases`` and ``whole step``
        (the ordinary step on the same batches), with ``batch`` (median sizes and, for the
        transducer, the MiB of its (B, T', U+1, V) logits and (B, T', U+1, J) joint hidden
        layer), ``threads`` and the 1-minute ``load`` average at the start.

    Raises:
        CorpusError: ``data_dir`` holds no prepared corpus.
    """
    data_dir = check_prepared(data_dir)
    rows: list[dict[str, Any]] = []
    for n, path in enumerate(recipes):
        rows += _profile_recipe(path, data_dir, steps, overrides)
        if progress is not None:
            progress("bench profile", n + 1, len(recipes))
    return rows


def _profile_recipe(path: str, data_dir: Path, steps: int, overrides: tuple[str, ...]
                    ) -> list[dict[str, Any]]:
    load = round(os.getloadavg()[0], 1)
    recipe = load_recipe(path, list(overrides))
    kind = recipe.model.kind
    if kind not in ("ctc", "transducer"):
        raise ConfigError(f"bench profile times CTC and transducer recipes, found {path} "
                          f"(kind {kind})")
    if kind == "ctc":
        step = ctc_step
    elif recipe.model.prune_range:
        step = pruned_transducer_step
    else:
        step = transducer_step
    split_phases = phases(recipe.model)
    data, batches, model = training_batches(recipe, data_dir, steps + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.train.lr)
    clip = recipe.train.grad_clip
    split: list[dict[str, float]] = []
    whole: list[float] = []
    shapes: list[dict[str, Any]] = []
    for n, indices in enumerate(batches):
        batch = data.collate(indices)
        clock = _Clock()
        shape = step(model, batch, optimizer, clip, clock)
        whole_ms = whole_step(model, batch, optimizer, clip)
        if n > 0:  # the first step warms up allocators and caches
            split.append(clock.ms)
            whole.append(whole_ms)
            shapes.append(shape)
    medians = {p: statistics.median(ms[p] for ms in split) for p in split_phases}
    total = sum(medians.values())
    rows = [{"recipe": path, "phase": p, "ms": medians[p], "share %": 100 * medians[p] / total}
            for p in split_phases]
    rows += [{"recipe": path, "phase": f"({p})", "ms": statistics.median(ms[p] for ms in split)}
             for p in FUSED_PHASES if p in split[0]]
    context = {"batch": _batch_text(shapes), "threads": torch.get_num_threads(), "load": load}
    step_ms = statistics.median(sum(ms[p] for p in split_phases) for ms in split)
    rows.append({"recipe": path, "phase": "sum of phases", "ms": step_ms, "share %": 100.0,
                 **context})
    rows.append({"recipe": path, "phase": "whole step", "ms": statistics.median(whole)})
    return rows


def _batch_text(shapes: list[dict[str, Any]]) -> str:
    """Median batch sizes, and the transducer's big activations in MiB (float32)."""
    size = {k: int(statistics.median(s[k] for s in shapes)) for k in shapes[0]}
    text = " ".join(f"{k}={v}" for k, v in size.items())
    if "J" in size:  # the joint runs on S label positions per frame when pruned, else U+1
        nodes = size["B"] * size["T'"] * size.get("S", size["U"] + 1)
        text += (f"; logits {nodes * size['V'] * 4 / 2**20:.0f} MiB, "
                 f"joint hidden {nodes * size['J'] * 4 / 2**20:.0f} MiB")
    return text
