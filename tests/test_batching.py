"""Length-bucketed batching: frame budget, determinism, resumption, distributed shares."""

from __future__ import annotations

import pytest
import torch

from seqkit.data.batching import (
    BucketBatchSampler,
    FeatureDataset,
    phone_targets,
)
from seqkit.data.manifest import Utterance
from seqkit.data.phones import vocabulary
from seqkit.errors import ConfigError

_GEN = torch.Generator().manual_seed(0)
LENGTHS = [int(x) for x in torch.randint(20, 400, (200,), generator=_GEN)]


def test_batches_cover_every_utterance_once_within_the_frame_budget() -> None:
    sampler = BucketBatchSampler(LENGTHS, 2000, seed=1)
    batches = sampler.global_batches(0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(LENGTHS)))
    for b in batches:
        assert len(b) * max(LENGTHS[i] for i in b) <= 2000
    # bucketing keeps padding low: less than 15% of the padded frames are padding
    padded = sum(len(b) * max(LENGTHS[i] for i in b) for b in batches)
    assert sum(LENGTHS) / padded > 0.85


def test_order_is_seeded_and_changes_with_the_epoch() -> None:
    a = BucketBatchSampler(LENGTHS, 2000, seed=1)
    b = BucketBatchSampler(LENGTHS, 2000, seed=1)
    assert a.global_batches(3) == b.global_batches(3)
    assert a.global_batches(3) != a.global_batches(4)
    assert a.global_batches(3) != BucketBatchSampler(LENGTHS, 2000, seed=2).global_batches(3)


def test_an_epochs_batches_depend_on_seed_and_epoch_only_so_a_resume_finds_them_again() -> None:
    # training resumes at (epoch, position) of global_batches(epoch): the sampler keeps no state
    first = BucketBatchSampler(LENGTHS, 1500, seed=5)
    expected = first.global_batches(2)
    first.global_batches(3)
    resumed = BucketBatchSampler(LENGTHS, 1500, seed=5)
    assert first.global_batches(2) == resumed.global_batches(2) == expected


def test_workers_share_each_global_batch_disjointly() -> None:
    ranks = [BucketBatchSampler(LENGTHS, 1500, seed=5, rank=r, world_size=3) for r in range(3)]
    batches = ranks[0].global_batches(0)
    assert batches == ranks[2].global_batches(0)  # every worker computes the same batches
    for batch in batches:
        shares = [r.local_share(batch) for r in ranks]
        assert all(shares) and sorted(sum(shares, [])) == sorted(batch)


def test_overlong_utterance_gets_its_own_batch_and_bad_settings_fail() -> None:
    batches = BucketBatchSampler([50, 5000, 60], 1000, seed=0).global_batches(0)
    assert [5000 in [[50, 5000, 60][i] for i in b] for b in batches].count(True) == 1
    assert any(b == [1] for b in batches)
    with pytest.raises(ConfigError, match="cannot be shared by 4 workers"):
        BucketBatchSampler([10, 20], 100, world_size=4, rank=0)
    with pytest.raises(ConfigError, match="max_frames"):
        BucketBatchSampler([10], 0)


def test_phone_targets_fold_and_drop_q() -> None:
    utt = Utterance("S_X", "/a.wav", 100, 16000, "S", "DR1",
                    ((0, 10, "h#"), (10, 20, "q"), (20, 30, "bcl"), (30, 40, "b"),
                     (40, 50, "ix")), (), "")
    vocab39 = vocabulary(39)
    got = [vocab39[i] for i in phone_targets(utt, 39, vocab39).tolist()]
    assert got == ["sil", "sil", "b", "ih"]
    vocab61 = vocabulary(61)
    assert [vocab61[i] for i in phone_targets(utt, 61, vocab61).tolist()] == [
        "h#", "bcl", "b", "ix"]


def test_collate_pads_and_keeps_lengths() -> None:
    feats = [torch.ones(5, 3), 2 * torch.ones(2, 3)]
    targets = [torch.tensor([1, 2]), torch.tensor([3, 4, 5])]
    ds = FeatureDataset(["a", "b"], feats, targets, vocabulary(39), 39)
    batch = ds.collate([1, 0])
    assert batch.feats.shape == (2, 5, 3) and batch.feat_lengths.tolist() == [2, 5]
    assert float(batch.feats[0, 2:].abs().sum()) == 0.0
    assert batch.targets.tolist() == [[3, 4, 5], [1, 2, 0]]
    assert batch.target_lengths.tolist() == [3, 2] and batch.ids == ["b", "a"]
