"""What the trainer measures on the dev set at every epoch end: loss and greedy PER.

Not :func:`seqkit.decoding.evaluate.evaluate`, which scores a trained model on a test set with
any search and writes reports; this is the cheap per-epoch signal that drives the LR schedule,
early stopping and ``best.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqkit.data.batching import Batch, BucketBatchSampler, FeatureDataset
from seqkit.decoding.greedy import ctc_greedy, transducer_greedy
from seqkit.metrics import phone_error_rate
from seqkit.models.config import ModelKind
from seqkit.training import distributed


@dataclass(frozen=True)
class DevScores:
    """Dev loss per label (nats) and dev PER in % after 39-phone folding (None for an ``lm``)."""

    loss: float
    per_pct: float | None

    @property
    def score(self) -> float:
        """What the schedule, early stopping and ``best.pt`` minimize: PER, or loss for an LM."""
        return self.per_pct if self.per_pct is not None else self.loss


def forward_nll(model: torch.nn.Module, kind: ModelKind, batch: Batch) -> torch.Tensor:
    """(B,) per-utterance NLL of a batch (an ``lm`` reads only the targets)."""
    if kind == ModelKind.LM:
        return model(batch.targets, batch.target_lengths)
    return model(batch.feats, batch.feat_lengths, batch.targets, batch.target_lengths)


def label_count(dataset: FeatureDataset, indices: list[int], kind: ModelKind) -> int:
    """Labels predicted in a batch: the normalizer of the loss (LMs also predict the end)."""
    extra = 1 if kind == ModelKind.LM else 0
    return sum(int(dataset.targets[i].numel()) + extra for i in indices)


@torch.no_grad()
def measure_dev(
    model: torch.nn.Module,
    kind: ModelKind,
    dataset: FeatureDataset,
    *,
    max_frames: int,
    ctx: distributed.DistributedContext | None = None,
) -> DevScores:
    """Dev loss per label and greedy dev PER, the same on every worker.

    Args:
        model: the unwrapped model (switched to eval mode and back).
        kind: the model kind (a :class:`ModelKind`; its plain string compares equal).
        dataset: the dev set.
        max_frames: padded frame budget per batch.
        ctx: with several workers each measures a share and the results are combined.
    """
    ctx = ctx or distributed.DistributedContext(0, 1, 0, 1, torch.device("cpu"))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sampler = BucketBatchSampler(dataset.lengths, max_frames, shuffle=False, bucket_width=0,
                                 rank=ctx.rank, world_size=min(ctx.world_size, len(dataset)))
    loss_sum, labels = 0.0, 0
    hyps: dict[str, list[int]] = {}
    for indices in (sampler.local_share(b) for b in sampler.global_batches(0)):
        batch = dataset.collate(indices).to(device)
        nll = forward_nll(model, kind, batch).float()
        finite = torch.isfinite(nll)
        loss_sum += float(nll[finite].sum())
        labels += label_count(dataset, [i for i, ok in zip(indices, finite.tolist(), strict=True)
                                        if ok], kind)
        if kind != ModelKind.LM:
            hyps.update(zip(batch.ids, _greedy(model, kind, batch), strict=True))
    loss_sum, labels = distributed.sum_values(ctx, loss_sum, float(labels))
    model.train(was_training)
    loss = loss_sum / max(labels, 1.0)
    if kind == ModelKind.LM:
        return DevScores(loss, None)
    for part in distributed.gather_objects(ctx, hyps)[1:]:
        hyps.update(part)
    index = {u: i for i, u in enumerate(dataset.ids)}
    refs = [[dataset.vocab[k] for k in dataset.targets[index[u]].tolist()] for u in hyps]
    hyp_phones = [[dataset.vocab[k] for k in h] for h in hyps.values()]
    # phone_error_rate returns a fraction; logs and summaries hold percents
    return DevScores(loss, 100.0 * float(phone_error_rate(refs, hyp_phones, fold=39)))


def _greedy(model: torch.nn.Module, kind: ModelKind, batch: Batch) -> list[list[int]]:
    if kind == ModelKind.CTC:
        log_probs, out_lengths = model.log_probs(batch.feats, batch.feat_lengths)
        return ctc_greedy(log_probs, out_lengths)
    f, out_lengths = model.encode(batch.feats, batch.feat_lengths)
    return transducer_greedy(model, f, out_lengths)
