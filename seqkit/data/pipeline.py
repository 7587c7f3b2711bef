"""What a training run reads: its corpora loaded, and every step's batch ready to train on.

:func:`load_training_data` loads the train split of each corpus (its own feature store, in its
own ``cache/``), the dev set, and the normalization statistics (the union's, from the folders'
``stats.json``; or given, e.g. an ``--init`` model's). :class:`TrainingPipeline` then hands the
trainer each step's batch: the corpora mixed by their weights (:mod:`seqkit.data.corpus_set`),
length-bucketed under the frame budget, this worker's share of the global batch, with speed,
VTLP and channel perturbation (:mod:`seqkit.audio.perturb`) and SpecAugment
(:mod:`seqkit.audio.augment`) applied. Every random draw is seeded by the run's seed and the
epoch (which utterances, in which batches) or the optimizer step and the worker's rank (which
speaker, channel and masks), so a resumed run reads the very batches an uninterrupted one
reads, and the trainer only steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import torch

from seqkit.audio.augment import SpecAugment
from seqkit.audio.features import (
    FeatureConfig,
    FeatureStats,
    add_deltas,
    compute_stats,
    read_stats,
    utterance_mean_normalized,
)
from seqkit.audio.perturb import Perturbation, mel_band_centers, perturb_static
from seqkit.data.batching import (
    Batch,
    BucketBatchSampler,
    ChainedRows,
    FeatureDataset,
    concat_datasets,
    load_split,
)
from seqkit.data.checksums import verify_prepared
from seqkit.data.corpus_set import Corpus, CorpusRecord, merge_stats
from seqkit.data.feature_store import FeatureStore, NoticeFn
from seqkit.errors import ConfigError
from seqkit.progress import ProgressFn
from seqkit.seeds import stream_seed

# the seed streams of a run's batches (seqkit.seeds): one (multiplier, salt) pair each
_PERTURB = {"multiplier": 1_000_033, "salt": 137}  # per step and rank
_MASKS = {"salt": 131}  # per step and rank
_DRAWS = {"salt": 149}  # per epoch: which utterances of a weighted corpus


@dataclass(frozen=True)
class Augmentation:
    """What is done to training features on the fly (nothing by default).

    Attributes:
        perturbation: a new speaker and channel per utterance and epoch, on the raw static
            features before deltas and normalization.
        spec_augment: frequency and time masks on the normalized features (None = off).
    """

    perturbation: Perturbation = field(default_factory=Perturbation)
    spec_augment: SpecAugment | None = None


@dataclass(frozen=True)
class TrainingData:
    """A run's corpora, loaded.

    Attributes:
        train: the train split of each corpus that has one, normalized with ``stats``, in
            ``--data`` order (a dev-only corpus has none).
        dev: the dev set (the first corpus's dev split, or several pooled; ids ``"K/ID"``
            then).
        stats: the normalization statistics (None for a phone LM's text-only data).
        stats_source: where they come from, in words (for the run's notice).
    """

    train: list[FeatureDataset]
    dev: FeatureDataset
    stats: FeatureStats | None
    stats_source: str = ""


def load_training_data(
    corpora: Sequence[Corpus],
    records: Sequence[CorpusRecord],
    *,
    phone_set: int,
    features: FeatureConfig | None,
    stats: FeatureStats | None = None,
    cache: bool = True,
    jobs: int = 1,
    progress: ProgressFn | None = None,
    notice: NoticeFn | None = None,
) -> TrainingData:
    """Load the train splits, the dev set and the statistics of a run's corpora.

    Args:
        corpora: the run's corpora (:func:`seqkit.data.corpus_set.resolve_corpora`).
        records: their records (:func:`seqkit.data.corpus_set.record_corpora`): which have
            train utterances, which dev splits to pool.
        phone_set: training phone set (61, 48, 39).
        features: the front end; None = text only (a phone LM: no features, no statistics).
        stats: normalize with these (an ``--init`` model's) instead of the corpora's.
        cache: keep each corpus's feature stores in its ``cache/``.
        jobs: processes computing features when a store is built.
        progress: called as ``progress("features <split>", done, total)``.
        notice: called with one line when a damaged cached store is rebuilt.

    Without ``stats``, the statistics are the union's: the corpora's ``stats.json`` merged by
    frame count (:func:`~seqkit.data.corpus_set.merge_stats`; one corpus: its own) when they
    were computed with ``features``, else computed over every train utterance of every corpus
    (one at a time).

    Raises:
        CorpusError, AudioError, ConfigError: as :func:`~seqkit.data.batching.load_split` and
            :func:`~seqkit.audio.features.read_stats`.
    """
    kw = {"phone_set": phone_set, "features": features, "cache": cache, "jobs": jobs,
          "progress": progress, "notice": notice}
    source = ""
    trained = [c for c, r in zip(corpora, records, strict=True) if r.utterances]
    if features is not None and stats is None:
        prepared = []
        for c in trained:
            verify_prepared(c.path, ["stats.json"])  # the manifests: in load_split
            prepared.append(read_stats(c.path / "stats.json"))
        if all(front == features for front, _ in prepared):
            stats = merge_stats([s for _, s in prepared])
            source = (f"{stats.frames} train frames of {len(trained)} corpora (stats.json "
                      "merged)" if len(trained) > 1 else "")
    train = [load_split(c.path, "train", stats=None, **kw) for c in trained]
    if features is not None:
        if stats is None:  # another front end than the corpora were prepared with
            stats = compute_stats(row for d in train for row in d.feats)  # one at a time
            source = f"{stats.frames} train frames, computed for data.features"
        train = [replace(d, feats=_store(d.feats).normalized(stats)) for d in train]
    dev = concat_datasets([load_split(c.path, "dev", stats=stats, **kw)
                           for c, r in zip(corpora, records, strict=True) if r.dev])
    return TrainingData(train, dev, stats, source)


def _store(rows: object) -> FeatureStore:
    """A split's memory-mapped feature store (what load_split gives every acoustic split)."""
    if not isinstance(rows, FeatureStore):
        raise ConfigError("expected a split loaded by load_split (a feature store), found "
                          f"features of type {type(rows).__name__}")
    return rows


class TrainingPipeline:
    """Every step's batch of a run: mixed, bucketed, sharded, perturbed and masked.

    Utterances are indexed over the corpora in order (corpus 0's first). An epoch draws each
    corpus's share (:meth:`epoch_items`), :class:`~seqkit.data.batching.BucketBatchSampler`
    cuts those into global batches, and :meth:`batch` builds this worker's share of one.

    Args:
        train: each corpus's train split, normalized (:attr:`TrainingData.train`).
        weights: each corpus's weight (1 = each utterance once per epoch).
        stats: the statistics ``train`` is normalized with (None: text only or raw).
        features: the front end (None: text only; nothing is perturbed or masked).
        augmentation: what to do to the features.
        max_frames: padded frame budget of one global batch.
        bucket_width: bucket size in frames (0 = sort strictly by length).
        seed: the run's seed.
        rank: this worker's rank.
        world_size: number of workers.
    """

    def __init__(
        self,
        train: Sequence[FeatureDataset],
        *,
        weights: Sequence[float] | None = None,
        stats: FeatureStats | None,
        features: FeatureConfig | None,
        augmentation: Augmentation | None = None,
        max_frames: int,
        bucket_width: int = 20,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        weights = list(weights) if weights is not None else [1.0] * len(train)
        if len(weights) != len(train) or not train:
            raise ConfigError(f"expected one weight per corpus ({len(train)}), found "
                              f"{len(weights)}")
        self.train_set = concat_datasets(train)
        self.sizes = [len(d) for d in train]
        self.weights = weights
        self.stats = stats
        self.features = features if self.train_set.feats else None
        self.augmentation = augmentation or Augmentation()
        self.seed = seed
        self.rank = rank
        self.sampler = BucketBatchSampler(self.train_set.lengths, max_frames, seed=seed,
                                          bucket_width=bucket_width, rank=rank,
                                          world_size=world_size)
        self._raw: Sequence[torch.Tensor] | None = None  # the stores' raw frames, once needed

    @property
    def vocab(self) -> tuple[str, ...]:
        """Output symbols; index 0 is the blank."""
        return self.train_set.vocab

    @property
    def phone_set(self) -> int:
        """61, 48 or 39."""
        return self.train_set.phone_set

    def epoch_items(self, epoch: int) -> list[int] | None:
        """The utterances of ``epoch`` (repeats drawn several times); None when every weight is
        1, i.e. each utterance once (the sampler's own order, as for one corpus)."""
        if all(w == 1.0 for w in self.weights):
            return None
        gen = torch.Generator().manual_seed(stream_seed(self.seed, epoch, **_DRAWS))
        items: list[int] = []
        start = 0
        for n, weight in zip(self.sizes, self.weights, strict=True):
            repeats, rest = divmod(max(1, round(weight * n)), n)
            items += list(range(start, start + n)) * repeats
            if rest:
                items += [start + j for j in torch.randperm(n, generator=gen)[:rest].tolist()]
            start += n
        return items

    def global_batches(self, epoch: int) -> list[list[int]]:
        """Every worker's batches of ``epoch``, as lists of utterance indices."""
        return self.sampler.global_batches(epoch, self.epoch_items(epoch))

    def local_share(self, global_batch: Sequence[int]) -> list[int]:
        """This worker's utterances of a global batch."""
        return self.sampler.local_share(global_batch)

    def frames(self, indices: Iterable[int]) -> int:
        """Input frames of the utterances ``indices`` (labels + 1 each when text only)."""
        lengths = self.train_set.lengths
        return sum(lengths[i] for i in indices)

    def batch(self, indices: Sequence[int], step: int) -> Batch:
        """The utterances ``indices`` as a padded batch on the CPU, perturbed and masked as
        :attr:`augmentation` says, seeded by ``step`` and the rank."""
        a = self.augmentation
        if self.features is not None and a.perturbation.active:
            gen = torch.Generator().manual_seed(
                stream_seed(self.seed, step, rank=self.rank, **_PERTURB))
            batch = self._perturbed(indices, gen)
        else:
            batch = self.train_set.collate(indices)
        if self.features is not None and a.spec_augment is not None:
            gen = torch.Generator().manual_seed(
                stream_seed(self.seed, step, rank=self.rank, **_MASKS))
            feats = batch.feats.clone()
            for b, n in enumerate(batch.feat_lengths.tolist()):
                feats[b, :n] = a.spec_augment.apply(batch.feats[b, :n], gen)
            batch = Batch(batch.ids, feats, batch.feat_lengths, batch.targets,
                          batch.target_lengths)
        return batch

    def _perturbed(self, indices: Sequence[int], generator: torch.Generator) -> Batch:
        """Each utterance's raw frames with a new speaker and channel, deltas recomputed,
        normalized: then padded."""
        features, stats, dataset = self.features, self.stats, self.train_set
        assert features is not None and features.n_mels is not None  # checked by the caller
        if self._raw is None:
            self._raw = self._raw_rows()
        raw = self._raw
        energy = features.kind == "fbank123"
        n_static = features.n_mels + int(energy)
        high = features.high_freq if features.high_freq > 0 else (
            features.sample_rate / 2 + features.high_freq)
        centers = mel_band_centers(features.n_mels, features.low_freq, high)
        feats = []
        for i in indices:
            static = perturb_static(raw[i][:, :n_static], self.augmentation.perturbation,
                                    centers, energy=energy, generator=generator)
            full = add_deltas(utterance_mean_normalized(static, features), features)
            feats.append(stats.normalize(full) if stats is not None else full)
        part = FeatureDataset([dataset.ids[i] for i in indices], feats,
                              [dataset.targets[i] for i in indices], dataset.vocab,
                              dataset.phone_set)
        return part.collate(range(len(indices)))

    def _raw_rows(self) -> Sequence[torch.Tensor]:
        """Every utterance's frames as computed (not normalized), from the stores."""
        feats = self.train_set.feats
        if isinstance(feats, ChainedRows):
            return ChainedRows([_store(p).normalized(None) for p in feats.parts])
        return _store(feats).normalized(None)

