"""A split's features on disk, read through a memory map: memory independent of corpus size.

A store is a file pair: ``NAME.npy``, every utterance's raw (unnormalized) float32 frames
concatenated into one (N, F) array, and ``NAME.json``, the index (utterance ids and frame
counts, in manifest order). Readers open the array with ``numpy.load(mmap_mode="r")`` and slice
one utterance at a time, so a training process holds only the batch it is building, and the N
workers of a distributed run share the file's pages in the OS page cache instead of each holding
a copy (train-clean-100 is about 18 GB of float32 frames, 960 h about 170 GB).

Writing streams too: frames are appended as each utterance is computed; the ``.npy`` header,
whose shape is known only at the end, is reserved first and filled in last. The array is written
before the index, each atomically, and a store is used only when the index, the array's header
and the file size all agree; anything else (a truncated or foreign file, another manifest) is
recomputed.

Shape and size do not see bytes damaged in place (a bad disk block, a stray write): training
would go on with garbage frames, skipping the batches that turn non-finite. So the index also
holds a CRC-32 of the array's data, computed as it is written (no second pass), and
:func:`build_store` checks it before handing the store out; a mismatch rebuilds the store and
says so through ``notice``. CRC-32 (zlib) because it is the cheapest checksum in the standard
library that any accidental damage fails; checking reads the whole array once per load.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from seqkit.atomic import remove_debris, write_atomic
from seqkit.audio.features import FeatureConfig, FeatureStats, compute_features, one_torch_thread
from seqkit.audio.load import load_audio
from seqkit.data.ragged import RaggedRows
from seqkit.errors import CorpusError
from seqkit.locks import output_lock
from seqkit.progress import ProgressFn

NoticeFn = Callable[[str], None]

# float32, as computed: normalized batches are bit-identical to features computed directly.
STORE_DTYPE = np.dtype(np.float32)
_FORMAT_VERSION = 2  # 2: the index holds the data's CRC-32 ("crc32")
# Bytes reserved for the .npy header (magic, length, dict): room for any (N, F), 64-aligned.
_HEADER_BYTES = 128
_CHUNK = 64  # utterances per worker task: progress granularity vs. pickling overhead
_READ_BYTES = 1 << 24  # bytes per read when checking a store's CRC-32


class FeatureStore(RaggedRows):
    """Per-utterance features sliced from a memory-mapped (N, F) array.

    ``store[i]`` is utterance ``i``'s (T, F) float32 features, copied out of the map and
    normalized with ``stats`` when given; nothing per utterance is kept in memory.

    Args:
        frames: (N, F) the concatenated frames (a read-only ``numpy.memmap``).
        lengths: frames per utterance, summing to N.
        stats: normalization applied on access; None = raw features.
    """

    def __init__(self, frames: np.ndarray, lengths: Sequence[int],
                 stats: FeatureStats | None = None) -> None:
        super().__init__(lengths)
        self.frames = frames
        self.stats = stats

    @property
    def dim(self) -> int:
        """Feature dimension F."""
        return int(self.frames.shape[1])

    def row(self, start: int, end: int) -> torch.Tensor:
        """(T, F) float32 frames ``[start, end)``, copied out of the map, normalized."""
        raw = torch.from_numpy(np.array(self.frames[start:end], dtype=np.float32))  # (T, F)
        return self.stats.normalize(raw) if self.stats is not None else raw

    def normalized(self, stats: FeatureStats | None) -> FeatureStore:
        """The same frames, normalized on access with ``stats`` (None = raw)."""
        return FeatureStore(self.frames, self.lengths, stats)


def store_files(base: Path) -> tuple[Path, Path]:
    """The array and index files of the store named ``base`` (a path without suffix)."""
    return base.with_name(base.name + ".npy"), base.with_name(base.name + ".json")


def open_store(base: Path, ids: Sequence[str]) -> FeatureStore | None:
    """The store at ``base`` if it is complete and holds exactly ``ids``, in order; else None."""
    array, index_file = store_files(base)
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        if index.get("version") != _FORMAT_VERSION or index.get("ids") != list(ids):
            return None
        lengths = [int(n) for n in index["lengths"]]
        frames = np.load(array, mmap_mode="r")
        size = array.stat().st_size
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent, truncated, damaged or foreign: recomputed by the caller
    expected = (sum(lengths), int(index.get("dim", -1)))
    if (
        not isinstance(frames, np.memmap) or frames.dtype != STORE_DTYPE
        or frames.shape != expected or len(lengths) != len(ids) or min(lengths, default=0) < 0
        or size != frames.offset + frames.nbytes
    ):
        return None
    return FeatureStore(frames, lengths)


def content_matches(base: Path) -> bool:
    """Whether the store's data still has the CRC-32 its index recorded when it was written.

    Reads the whole array once (in ``_READ_BYTES`` pieces, never all in memory).
    """
    array, index_file = store_files(base)
    try:
        expected = json.loads(index_file.read_text(encoding="utf-8"))["crc32"]
        crc = 0
        with array.open("rb") as f:
            f.seek(_HEADER_BYTES)
            while piece := f.read(_READ_BYTES):
                crc = zlib.crc32(piece, crc)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return crc == expected


def write_store(base: Path, ids: Sequence[str], feature_stream: Iterable[torch.Tensor]) -> None:
    """Write a store from features computed one utterance at a time (never all in memory).

    Raises:
        OSError: the files cannot be written (no partial file is left).
        CorpusError: the stream yields another number of utterances than ``ids``, or features
            that are not (T, F) with one F.
    """
    array, index_file = store_files(base)
    lengths: list[int] = []
    dims: set[int] = set()
    shape: list[int] = []
    crc = 0  # of the data after the header, as written

    def write_array(tmp: Path) -> None:
        nonlocal crc
        with tmp.open("wb") as out:
            out.write(b"\0" * _HEADER_BYTES)  # the header, once the shape is known
            for feats in feature_stream:
                if feats.dim() != 2:
                    raise CorpusError(f"expected features (T, F), found {tuple(feats.shape)}")
                block = np.ascontiguousarray(feats.detach().cpu().numpy(), dtype=STORE_DTYPE)
                data = block.tobytes()
                out.write(data)
                crc = zlib.crc32(data, crc)
                lengths.append(block.shape[0])
                dims.add(block.shape[1])
            if len(dims) > 1 or len(lengths) != len(ids):
                raise CorpusError(
                    f"feature store {array}: expected {len(ids)} utterances of one dimension, "
                    f"found {len(lengths)} with dimensions {sorted(dims)}"
                )
            shape[:] = [sum(lengths), dims.pop() if dims else 0]
            out.seek(0)
            out.write(_npy_header((shape[0], shape[1])))

    write_atomic(array, write_array)
    index = {"version": _FORMAT_VERSION, "dtype": STORE_DTYPE.name, "dim": shape[1],
             "frames": shape[0], "crc32": crc, "ids": list(ids), "lengths": lengths}
    write_atomic(index_file, lambda tmp: tmp.write_text(json.dumps(index), encoding="utf-8"))


def _npy_header(shape: tuple[int, int]) -> bytes:
    """A version 1.0 ``.npy`` header for a C-order (N, F) array of STORE_DTYPE, _HEADER_BYTES
    long (the format allows any space padding before the closing newline)."""
    text = repr({"descr": np.lib.format.dtype_to_descr(STORE_DTYPE), "fortran_order": False,
                 "shape": (int(shape[0]), int(shape[1]))})
    magic = np.lib.format.magic(1, 0)
    body = text.encode("latin1").ljust(_HEADER_BYTES - len(magic) - 2 - 1) + b"\n"
    return magic + struct.pack("<H", len(body)) + body


def build_store(
    ids: Sequence[str],
    audio: Sequence[str],
    features: FeatureConfig,
    base: Path | None,
    *,
    jobs: int = 1,
    progress: ProgressFn | None = None,
    description: str = "features",
    notice: NoticeFn | None = None,
) -> FeatureStore:
    """The raw features of the utterances ``ids``: the store at ``base`` if valid, else computed.

    Computed features are streamed into ``base`` (the cache). When ``base`` is None or cannot
    be written (a read-only prepared directory), they go to a store in the temp directory
    (``$TMPDIR``) that is deleted once mapped: the map keeps it readable until released.

    A cached store is used only if its data still matches its CRC-32 (:func:`content_matches`);
    a damaged one is rebuilt, with a ``notice``. Processes building the same store take turns
    (a lock beside it, :mod:`seqkit.locks`): the second one then finds the first one's store;
    temp files of killed builds are removed first.

    Args:
        ids: utterance ids, in store order.
        audio: their audio files.
        features: the front end.
        base: the cache store's path without suffix, or None.
        jobs: processes computing features (chunks of ``_CHUNK`` utterances, written in
            order as they arrive); 1 = in this process.
        progress: called as ``progress(description, done, total)`` while computing.
        description: the progress description.
        notice: called with one line when a damaged store is rebuilt.

    Raises:
        AudioError: an audio file cannot be read.
        CorpusError: neither the cache nor the temp directory can hold the store.
    """
    if base is not None:
        try:
            with output_lock(base, command="a feature store build", wait=True):
                stored = _cached_store(base, ids, notice)
                if stored is None:
                    remove_debris(base.parent, [p.name for p in store_files(base)])
                    _write_computed(base, ids, audio, features, jobs, progress, description)
                    stored = open_store(base, ids)
        except OSError:
            stored = None  # no cache here: a temporary store below
        if stored is not None:
            return stored
    scratch = Path(tempfile.mkdtemp(prefix="seqkit-features-"))
    try:
        temp = scratch / "split"
        _write_computed(temp, ids, audio, features, jobs, progress, description)
        stored = open_store(temp, ids)
    except OSError as err:
        raise CorpusError(
            f"cannot write the feature store in {scratch.parent} ({err}): free disk space "
            "there or point TMPDIR at a disk with room for the split's features"
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the map (if any) keeps the data alive
    if stored is None:
        raise CorpusError(f"the feature store written in {scratch.parent} did not read back")
    return stored


def _cached_store(base: Path, ids: Sequence[str], notice: NoticeFn | None) -> FeatureStore | None:
    """The cached store at ``base`` if it is complete and undamaged, else None (with a notice
    when only its content is damaged)."""
    found = open_store(base, ids)
    if found is None:
        return None
    if content_matches(base):
        return found
    if notice is not None:
        notice(f"feature store {store_files(base)[0]} is damaged (its data no longer matches "
               "its checksum): rebuilding it")
    return None


def _write_computed(
    base: Path, ids: Sequence[str], audio: Sequence[str], features: FeatureConfig, jobs: int,
    progress: ProgressFn | None, description: str,
) -> None:
    """Compute the features of ``audio`` over ``jobs`` processes into the store ``base``."""
    chunks = [list(audio[i:i + _CHUNK]) for i in range(0, len(audio), _CHUNK)]
    stream = _compute(chunks, features, min(jobs, len(chunks)))
    total, done = len(audio), 0

    def reported() -> Iterator[torch.Tensor]:
        nonlocal done
        for feats in stream:
            yield feats
            done += 1
            if progress is not None:
                progress(description, done, total)

    with one_torch_thread(), contextlib.closing(stream):  # closing: a failed write ends the pool
        write_store(base, ids, reported())


def _compute(
    chunks: list[list[str]], features: FeatureConfig, jobs: int
) -> Iterator[torch.Tensor]:
    """Features of each utterance of ``chunks`` in order, in this process or a pool."""
    tasks = [(paths, features) for paths in chunks]
    if jobs <= 1:
        for task in tasks:
            yield from (torch.from_numpy(f) for f in _compute_chunk(task))
        return
    with multiprocessing.get_context("forkserver").Pool(jobs) as pool:
        for result in pool.imap(_compute_chunk, tasks):  # in order, as they complete
            yield from (torch.from_numpy(f) for f in result)


def _compute_chunk(task: tuple[list[str], FeatureConfig]) -> list[np.ndarray]:
    """Worker: (T, F) float32 features of a chunk's audio files (numpy: pickled by value)."""
    paths, config = task
    with one_torch_thread():
        return [compute_features(load_audio(path, sample_rate=config.sample_rate), config).numpy()
                for path in paths]
