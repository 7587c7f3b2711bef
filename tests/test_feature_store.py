"""The memory-mapped feature store: exact round trip, damaged stores recomputed, atomic writes,
parallel builds, and a loaded split that holds no per-utterance tensors."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from seqkit.audio import FeatureConfig, compute_features, load_audio
from seqkit.audio.features import read_stats
from seqkit.data import feature_store
from seqkit.data.batching import PackedTargets, load_split, phone_targets
from seqkit.data.feature_store import (
    FeatureStore,
    build_store,
    open_store,
    store_files,
    write_store,
)
from seqkit.data.manifest import Utterance, read_manifest
from seqkit.data.phones import vocabulary
from seqkit.data.splits import split_manifest


@pytest.fixture
def utterances(prepared: Path) -> list[Utterance]:
    return read_manifest(split_manifest(prepared, "dev"))


def _build(utterances: list[Utterance], config: FeatureConfig, base: Path | None,
           **options) -> FeatureStore:
    return build_store([u.id for u in utterances], [u.audio for u in utterances], config, base,
                       **options)


def _direct(utterances: list[Utterance], config: FeatureConfig) -> list[torch.Tensor]:
    return [compute_features(load_audio(u.audio, sample_rate=config.sample_rate), config)
            for u in utterances]


def test_store_round_trips_ids_shapes_and_values_exactly(tmp_path, utterances) -> None:
    config = FeatureConfig()
    base = tmp_path / "cache" / "dev"
    store = _build(utterances, config, base)
    direct = _direct(utterances, config)
    assert len(store) == len(direct) > 1
    assert store.lengths == [f.shape[0] for f in direct]
    for got, want in zip(store, direct, strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, want)
    index = json.loads(store_files(base)[1].read_text())
    assert index["ids"] == [u.id for u in utterances]
    assert np.load(store_files(base)[0]).shape == (sum(store.lengths), config.dim)
    assert torch.equal(store[-1], direct[-1])
    with pytest.raises(IndexError):
        store[len(store)]


def test_a_store_built_by_two_processes_equals_one_built_here(tmp_path, utterances,
                                                              monkeypatch) -> None:
    monkeypatch.setattr(feature_store, "_CHUNK", 2)  # several chunks from a tiny split
    assert len(utterances) > 2
    seen: list[int] = []
    parallel = _build(utterances, FeatureConfig(), tmp_path / "two", jobs=2,
                           progress=lambda _d, done, _t: seen.append(done))
    serial = _build(utterances, FeatureConfig(), tmp_path / "one", jobs=1)
    assert seen == list(range(1, len(utterances) + 1))
    two, one = store_files(tmp_path / "two")[0], store_files(tmp_path / "one")[0]
    assert two.read_bytes() == one.read_bytes()
    assert parallel.lengths == serial.lengths


def test_a_valid_store_is_reused_and_one_for_other_ids_is_not(tmp_path, utterances) -> None:
    base = tmp_path / "dev"
    _build(utterances, FeatureConfig(), base)
    assert open_store(base, [u.id for u in utterances]) is not None
    assert open_store(base, [u.id for u in utterances[1:]]) is None
    assert open_store(base, [u.id for u in reversed(utterances)]) is None


@pytest.mark.parametrize("damage", ["truncated array", "header only", "garbage index",
                                    "index of fewer frames", "no index"])
def test_a_damaged_store_is_recomputed_not_trusted(tmp_path, utterances, damage) -> None:
    config = FeatureConfig()
    base = tmp_path / "dev"
    _build(utterances, config, base)
    array, index = store_files(base)
    if damage == "truncated array":
        array.write_bytes(array.read_bytes()[:-4 * config.dim])
    elif damage == "header only":
        array.write_bytes(array.read_bytes()[:128])
    elif damage == "garbage index":
        index.write_text("{not json")
    elif damage == "index of fewer frames":
        data = json.loads(index.read_text())
        data["lengths"][0] -= 1
        index.write_text(json.dumps(data))
    else:
        index.unlink()
    assert open_store(base, [u.id for u in utterances]) is None
    rebuilt = _build(utterances, config, base)
    for got, want in zip(rebuilt, _direct(utterances, config), strict=True):
        assert torch.equal(got, want)
    assert open_store(base, [u.id for u in utterances]) is not None  # repaired on disk


def test_a_failed_store_write_leaves_no_file(tmp_path, utterances) -> None:
    feats = _direct(utterances[:1], FeatureConfig())

    def full_disk():  # one utterance written, then the disk fills
        yield feats[0]
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space"):
        write_store(tmp_path / "cache" / "dev", ["a", "b"], full_disk())
    assert list((tmp_path / "cache").iterdir()) == []  # neither a store nor a temp file


def test_an_unwritable_cache_falls_back_to_a_deleted_temp_store(tmp_path, utterances,
                                                                 monkeypatch) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    store = _build(utterances, FeatureConfig(), tmp_path / "cache" / "dev")
    for got, want in zip(store, _direct(utterances, FeatureConfig()), strict=True):
        assert torch.equal(got, want)  # still readable through the map
    assert list(scratch.iterdir()) == []  # the temp store's files are already gone


def test_a_loaded_split_holds_no_per_utterance_tensors(tmp_path, prepared) -> None:
    data = tmp_path / "prepared"
    data.mkdir()
    for name in ("train.jsonl", "dev.jsonl", "stats.json", "checksums.json"):
        shutil.copy(prepared / name, data / name)
    features, stats = read_stats(data / "stats.json")
    dataset = load_split(data, "train", phone_set=39, features=features, stats=stats)
    feats = dataset.feats
    assert isinstance(feats, FeatureStore) and feats.stats is stats
    assert isinstance(feats.frames, np.memmap) and feats.frames.mode == "r"
    assert Path(feats.frames.filename).parent == data / "cache"
    for value in vars(feats).values():  # nothing per utterance but the index
        assert not isinstance(value, torch.Tensor)
        assert not (isinstance(value, list) and any(isinstance(x, torch.Tensor) for x in value))
    assert dataset.lengths == feats.lengths
    utterances = read_manifest(split_manifest(data, "train"))
    for got, want in zip(feats, _direct(utterances, features), strict=True):
        assert torch.equal(got, stats.normalize(want))  # normalized on access, exactly
    batch = dataset.collate([1, 0])
    assert torch.equal(batch.feats[1, : feats.lengths[0]], feats[0])
    assert isinstance(dataset.targets, PackedTargets)  # labels packed too, not a tensor each
    vocab = vocabulary(39)
    for got, utterance in zip(dataset.targets, utterances, strict=True):
        assert torch.equal(got, phone_targets(utterance, 39, vocab))


def test_the_npy_header_reserves_room_for_any_corpus() -> None:
    header = feature_store._npy_header((10**15, 123))
    assert len(header) == 128 and len(header) % 64 == 0


def test_bytes_overwritten_inside_the_array_are_noticed_and_the_store_rebuilt(
    tmp_path, utterances
) -> None:
    """#20.4: same size, same header, damaged frames: shape checks pass, the CRC-32 does not."""
    config = FeatureConfig()
    base = tmp_path / "dev"
    _build(utterances, config, base)
    array, _ = store_files(base)
    size = array.stat().st_size
    with array.open("r+b") as f:
        f.seek(size // 2)
        f.write(b"\xff" * 4096)
    assert array.stat().st_size == size
    assert open_store(base, [u.id for u in utterances]) is not None  # the shape still fits
    assert not feature_store.content_matches(base)
    notices: list[str] = []
    rebuilt = _build(utterances, config, base, notice=notices.append)
    assert len(notices) == 1 and "damaged" in notices[0] and str(array) in notices[0]
    for got, want in zip(rebuilt, _direct(utterances, config), strict=True):
        assert torch.equal(got, want)
    assert feature_store.content_matches(base)
    _build(utterances, config, base, notice=notices.append)
    assert len(notices) == 1  # an intact store is used without a word


def test_training_rebuilds_a_damaged_store_with_one_notice(tmp_path, prepared) -> None:
    """#20.4 through `seqkit train`: training used to go on with "2 skipped" batches."""
    from typer.testing import CliRunner

    from seqkit.cli.main import app

    data = tmp_path / "prepared"
    shutil.copytree(prepared, data, ignore=shutil.ignore_patterns("cache"))
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('[model]\nkind = "ctc"\n[model.encoder]\nlayers = 1\nhidden = 16\n'
                      'stack = 3\n[train]\nthreads = 1\n[data]\nphone_set = 39\n')
    args = ["train", str(recipe), "--data", str(data), "--max-epochs", "1"]
    runner = CliRunner()
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    (train_array,) = (data / "cache").glob("train-*.npy")
    with train_array.open("r+b") as f:
        f.seek(train_array.stat().st_size // 2)
        f.write(np.full(1024, np.nan, dtype=np.float32).tobytes())
    second = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    assert "damaged" in second.output and "rebuilding" in second.output
    assert " skipped)" not in second.output  # the epoch line's "(N skipped)"
    assert [p.name for p in (data / "cache").iterdir() if p.name.startswith(".")] == []
