"""Training data: normalized features, phone targets, length-bucketed batches.

A prepared split (``PREPARED/train.jsonl``) becomes a :class:`FeatureDataset`: features are
computed once per utterance into a disk store (:mod:`seqkit.data.feature_store`, cached in
``PREPARED/cache/`` keyed by the feature config and the manifest) that is memory-mapped and
normalized with the global statistics as each batch is built, so memory does not grow with the
corpus; the 61-phone labels are folded to the training phone set (``q`` dropped).
:class:`BucketBatchSampler` then groups utterances of similar length into padded batches under a
frame budget, in a seeded order that is the same on every worker, so that each of N distributed
workers takes its share of every global batch and a run can resume at any batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from seqkit.audio.features import FeatureConfig, FeatureStats
from seqkit.data.checksums import verify_prepared
from seqkit.data.feature_store import FeatureStore, NoticeFn, build_store
from seqkit.data.manifest import Utterance, iter_manifest
from seqkit.data.phones import fold_phones, vocabulary
from seqkit.data.ragged import RaggedRows
from seqkit.data.splits import split_manifest
from seqkit.errors import ConfigError, CorpusError
from seqkit.progress import ProgressFn
from seqkit.seeds import stream_seed

_CACHE_VERSION = 2  # 2: memory-mapped stores (.npy + .json); 1 was one .pt per split


@dataclass(frozen=True)
class Batch:
    """A padded batch.

    Attributes:
        ids: utterance ids, length B.
        feats: (B, T, F) float32 normalized features, zero-padded (empty (B, 0, 0) for
            text-only datasets).
        feat_lengths: (B,) int64 valid frames per utterance.
        targets: (B, U) int64 label indices (blank = 0 never appears), zero-padded.
        target_lengths: (B,) int64 valid labels per utterance.
    """

    ids: list[str]
    feats: torch.Tensor
    feat_lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device``."""
        return Batch(
            self.ids,
            self.feats.to(device, non_blocking=True),
            self.feat_lengths.to(device),
            self.targets.to(device, non_blocking=True),
            self.target_lengths.to(device),
        )


class PackedTargets(RaggedRows):
    """Every utterance's label indices in one flat int16 array; ``targets[i]`` is (U,) int64.

    One small tensor per utterance costs several times its labels in object overhead (about
    0.4 GB for 960 h of LibriSpeech); packed, the labels take 2 bytes each.

    Args:
        labels: per utterance, its label indices (values < 2**15).
    """

    def __init__(self, labels: Sequence[np.ndarray]) -> None:
        super().__init__([int(a.shape[0]) for a in labels])
        self.flat = np.concatenate([np.asarray(a, dtype=np.int16) for a in labels]
                                   or [np.zeros(0, np.int16)])

    def row(self, start: int, end: int) -> torch.Tensor:
        """(U,) int64 label indices ``[start, end)``."""
        return torch.from_numpy(self.flat[start:end].astype(np.int64))


@dataclass(frozen=True)
class FeatureDataset:
    """Utterances ready for training.

    Attributes:
        ids: utterance ids.
        feats: per utterance (T, F) float32 normalized features (empty when text-only): a
            :class:`~seqkit.data.feature_store.FeatureStore` that reads each from a memory map
            when indexed (from :func:`load_split`), or any sequence of tensors.
        targets: per utterance (U,) int64 label indices into :attr:`vocab` (a
            :class:`PackedTargets` from :func:`load_split`, or any sequence of tensors).
        vocab: output symbols; index 0 is the blank.
        phone_set: 61, 48 or 39.
    """

    ids: list[str]
    feats: Sequence[torch.Tensor]
    targets: Sequence[torch.Tensor]
    vocab: tuple[str, ...]
    phone_set: int

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def lengths(self) -> list[int]:
        """Batching length per utterance: frames, or labels + 1 for text-only datasets.

        Computed once: the training loop reads it for every utterance of every batch, and
        rebuilding the list each time made an epoch quadratic in the dataset size (on the demo
        corpus, as much CPU time per phone-LM epoch as the forward and backward passes).
        """
        if isinstance(self.feats, FeatureStore | ChainedRows):
            return list(self.feats.lengths)  # from the index: no frame is read
        if self.feats:
            return [int(f.shape[0]) for f in self.feats]
        if isinstance(self.targets, PackedTargets | ChainedRows):
            return [n + 1 for n in self.targets.lengths]
        return [int(t.numel()) + 1 for t in self.targets]

    def collate(self, indices: Sequence[int]) -> Batch:
        """Pad the utterances ``indices`` into one :class:`Batch`."""
        targets = [self.targets[i] for i in indices]
        target_lengths = torch.tensor([t.numel() for t in targets], dtype=torch.long)
        longest = max((t.numel() for t in targets), default=0)
        padded_targets = torch.zeros(len(indices), longest, dtype=torch.long)  # (B, U)
        for b, t in enumerate(targets):
            padded_targets[b, : t.numel()] = t
        if self.feats:
            feats = [self.feats[i] for i in indices]
            feat_lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
            padded = torch.zeros(len(indices), int(feat_lengths.max()), feats[0].shape[1])
            for b, f in enumerate(feats):
                padded[b, : f.shape[0]] = f  # (B, T, F)
        else:
            padded = torch.zeros(len(indices), 0, 0)
            feat_lengths = torch.zeros(len(indices), dtype=torch.long)
        return Batch([self.ids[i] for i in indices], padded, feat_lengths, padded_targets,
                     target_lengths)


class ChainedRows(Sequence[torch.Tensor]):
    """Several corpora's rows (feature stores, packed labels) as one sequence, in order.

    Args:
        parts: the sequences; each must have ``lengths`` (items per row, as
            :class:`~seqkit.data.ragged.RaggedRows` has), so no row is read to learn its length.
    """

    def __init__(self, parts: Sequence[RaggedRows]) -> None:
        self.parts = list(parts)
        self.lengths = [n for part in self.parts for n in part.lengths]
        self.starts = np.cumsum([0] + [len(part) for part in self.parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        part = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.parts[part][index - int(self.starts[part])]


def concat_datasets(datasets: Sequence[FeatureDataset]) -> FeatureDataset:
    """Several corpora's splits as one dataset, in order; one dataset is returned as it is.

    Utterance ids become ``"K/ID"`` (K: the corpus's position), since two corpora may use the
    same ids (the dev PER matches hypotheses to references by id).

    Raises:
        ConfigError: the datasets have other phone sets, or text-only and acoustic ones mixed.
    """
    if len(datasets) == 1:
        return datasets[0]
    first = datasets[0]
    if any(d.vocab != first.vocab or bool(d.feats) != bool(first.feats) for d in datasets):
        raise ConfigError("cannot train on corpora of other phone sets or front ends together")
    ids = [f"{k}/{i}" for k, d in enumerate(datasets) for i in d.ids]
    feats: Sequence[torch.Tensor] = (ChainedRows([_rows(d.feats) for d in datasets])
                                     if first.feats else [])
    targets = ChainedRows([_rows(d.targets) for d in datasets])
    return FeatureDataset(ids, feats, targets, first.vocab, first.phone_set)


def _rows(rows: Sequence[torch.Tensor]) -> RaggedRows:
    if not isinstance(rows, RaggedRows):
        raise ConfigError("concat_datasets joins datasets from load_split (stores and packed "
                          f"labels), found {type(rows).__name__}")
    return rows


def phone_targets(utterance: Utterance, phone_set: int, vocab: Sequence[str]) -> torch.Tensor:
    """Label indices of an utterance's phones in a training phone set.

    Args:
        utterance: a manifest entry with 61-phone TIMIT labels.
        phone_set: 61, 48 or 39; labels are folded to it and ``q`` is dropped.
        vocab: the output symbols (``seqkit.data.phones.vocabulary(phone_set)``).

    Returns:
        (U,) int64 indices into ``vocab`` (never 0, the blank).

    Raises:
        CorpusError: a label is not a TIMIT phone.
    """
    index = {p: i for i, p in enumerate(vocab)}
    labels = [p for p in utterance.phone_labels if p != "q"]
    try:
        folded = fold_phones(labels, to=phone_set)
    except ConfigError as err:
        raise CorpusError(f"utterance {utterance.id}: {err}") from None
    return torch.tensor([index[p] for p in folded], dtype=torch.long)


def _cache_path(data_dir: Path, split: str, features: FeatureConfig) -> Path:
    """The feature store of ``split`` (a name without suffix: the store adds .npy and .json)."""
    key = hashlib.sha1()
    key.update(json.dumps(features.to_dict(), sort_keys=True).encode())
    key.update(split_manifest(data_dir, split).read_bytes())
    key.update(str(_CACHE_VERSION).encode())
    return data_dir / "cache" / f"{split}-{features.kind}-{key.hexdigest()[:16]}"


def load_split(
    data_dir: str | os.PathLike[str],
    split: str,
    *,
    phone_set: int,
    features: FeatureConfig | None,
    stats: FeatureStats | None,
    cache: bool = True,
    jobs: int = 1,
    progress: ProgressFn | None = None,
    notice: NoticeFn | None = None,
) -> FeatureDataset:
    """Load one split of a prepared directory as a :class:`FeatureDataset`.

    Args:
        data_dir: a directory made by ``seqkit data prepare`` (``{split}.jsonl``).
        split: ``"train"``, ``"dev"`` or ``"test"``.
        phone_set: training phone set (61, 48, 39).
        features: the front end, or None for a text-only dataset (phone language model).
        stats: normalization statistics for ``features``; None = raw features.
        cache: keep the feature store under ``data_dir/cache/`` for later runs (False, or a
            read-only ``data_dir``: a store in the temp directory, deleted once mapped).
        jobs: processes computing features when the store is built (1 = this process).
        progress: called as ``progress("features <split>", done, total)``.
        notice: called with one line when a damaged cached store is rebuilt.

    Returns:
        The dataset, in manifest order.

    Raises:
        CorpusError: the manifest is missing, malformed, empty or has unknown labels, or it
            changed since prepare wrote it (:func:`seqkit.data.checksums.verify_prepared`).
        AudioError: an audio file cannot be read.
    """
    data_dir = Path(data_dir)
    manifest = split_manifest(data_dir, split)
    if not manifest.exists():
        raise CorpusError(
            f"manifest {manifest} not found: expected a directory made by `seqkit data prepare`"
        )
    verify_prepared(data_dir, [manifest.name])  # as prepare wrote it, or refused
    vocab = vocabulary(phone_set)
    ids: list[str] = []
    audio: list[str] = []
    labels: list[np.ndarray] = []
    for utterance in iter_manifest(manifest):  # keeping only ids, paths and packed labels
        ids.append(utterance.id)
        audio.append(utterance.audio)
        labels.append(phone_targets(utterance, phone_set, vocab).numpy().astype(np.int16))
    if not ids:
        raise CorpusError(f"manifest {manifest} has no utterances: prepare the corpus again")
    feats: Sequence[torch.Tensor] = []
    if features is not None:
        store = build_store(ids, audio, features,
                            _cache_path(data_dir, split, features) if cache else None,
                            jobs=jobs, progress=progress, description=f"features {split}",
                            notice=notice)
        feats = store.normalized(stats)
    return FeatureDataset(ids, feats, PackedTargets(labels), vocab, phone_set)


class BucketBatchSampler:
    """Length-bucketed batches under a padded-frame budget; seeded, resumable, distributed.

    Every epoch, utterances are shuffled with a generator seeded by ``(seed, epoch)``, grouped
    into buckets of ``bucket_width`` frames, sorted by bucket, and cut into batches whose padded
    size ``B * max(T)`` stays within ``max_frames`` (an utterance longer than the budget gets a
    batch of its own); the batch order is shuffled too. All workers compute the same global
    batches; worker ``rank`` of ``world_size`` takes items ``rank, rank + world_size, ...`` of
    each, so every global batch holds at least ``world_size`` utterances.

    The sampler keeps no state: an epoch's batches depend on ``(seed, epoch)`` only, so a resumed
    run takes ``global_batches(epoch)[position:]`` with the training loop's own ``(epoch,
    position)``.

    Args:
        lengths: batching length of every utterance (frames).
        max_frames: padded frame budget of one global batch.
        seed: base seed of the shuffles.
        bucket_width: bucket size in frames (0 = sort strictly by length).
        shuffle: shuffle within buckets and the batch order (False: sorted, for evaluation).
        rank: this worker's rank.
        world_size: number of workers.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        *,
        seed: int = 0,
        bucket_width: int = 20,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1, found {max_frames}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"expected 0 <= rank < world_size, found {rank} and {world_size}")
        if len(lengths) < world_size:
            raise ConfigError(
                f"{len(lengths)} utterances cannot be shared by {world_size} workers: "
                "use fewer workers or more data"
            )
        self.lengths = [int(n) for n in lengths]
        self.max_frames = max_frames
        self.seed = seed
        self.bucket_width = bucket_width
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size

    def global_batches(self, epoch: int, items: Sequence[int] | None = None
                       ) -> list[list[int]]:
        """Every worker's batches of ``epoch``, as lists of utterance indices.

        Args:
            epoch: seeds the shuffles.
            items: the utterances to batch (an index may repeat: it is then drawn that many
                times); None = each utterance once.
        """
        n = len(self.lengths) if items is None else len(items)
        if n < self.world_size:
            raise ConfigError(f"{n} utterances cannot be shared by {self.world_size} workers: "
                              "use fewer workers or more data")
        if self.shuffle:
            gen = torch.Generator().manual_seed(stream_seed(self.seed, epoch))
            order = torch.randperm(n, generator=gen).tolist()
        else:
            gen = None
            order = list(range(n))
        if items is not None:
            order = [int(items[j]) for j in order]
        width = max(self.bucket_width, 1)
        order.sort(key=lambda i: self.lengths[i] // width)  # stable: random within a bucket
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in order:
            longest_if_added = max(longest, self.lengths[i])
            fits = longest_if_added * (len(current) + 1) <= self.max_frames
            if current and not fits and len(current) >= self.world_size:
                batches.append(current)
                current, longest_if_added = [], self.lengths[i]
            current.append(i)
            longest = longest_if_added
        if current:
            if len(current) < self.world_size and batches:
                batches[-1].extend(current)  # too few to share: join the previous batch
            else:
                batches.append(current)
        if gen is not None:
            perm = torch.randperm(len(batches), generator=gen).tolist()
            batches = [batches[p] for p in perm]
        return batches

    def local_share(self, batch: Sequence[int]) -> list[int]:
        """This worker's utterances of a global batch."""
        return list(batch[self.rank :: self.world_size])

