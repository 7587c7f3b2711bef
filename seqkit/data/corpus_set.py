"""The prepared corpora one training run reads: their names, weights, statistics and record.

``seqkit train RECIPE --data A --data B --data-weight B=0.3`` trains on the union of A's and
B's train splits. What each part means:

- **Weight.** Corpus K with N_K train utterances and weight w_K contributes ``max(1,
  round(w_K * N_K))`` utterances to every epoch: weight 1 (the default) is each utterance once;
  0.3 is a fresh random 30% of them each epoch (seeded by the run's seed and the epoch); 2.5 is
  each utterance twice plus a random half. An epoch is the sum over the corpora, so weights
  change its length as well as the mix. Weights are in (0, 100].
- **Normalization.** One set of statistics over the union of the train splits, combined
  exactly from each folder's ``stats.json`` by its frame count (:func:`merge_stats`), so a
  big corpus weighs by its frames, not by its place on the command line.
- **Record.** Each corpus's folder, weight and the SHA-256 of the files the run read
  (:class:`CorpusRecord`) go into ``config.toml``, ``metrics.jsonl`` and the checkpoints;
  ``--resume`` compares them (:func:`first_change`) and refuses corpora that changed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from seqkit.audio import features
from seqkit.audio.features import FeatureStats
from seqkit.data.checksums import prepared_digests
from seqkit.data.splits import split_manifest
from seqkit.errors import ConfigError, CorpusError

MAX_WEIGHT = 100.0


class DevSet(StrEnum):
    """``--dev``: which dev splits a run of several corpora scores each epoch."""

    FIRST = "first"  # the first --data's dev split (one corpus: its own)
    ALL = "all"  # every corpus's dev split that has utterances, pooled


@dataclass(frozen=True)
class Corpus:
    """One ``--data`` of a run.

    Attributes:
        path: the prepared folder.
        name: how the user named it (the ``--data`` value as given).
        weight: share of its train utterances per epoch (see the module docstring).
    """

    path: Path
    name: str
    weight: float = 1.0


def parse_data_weights(texts: Sequence[str]) -> dict[str, float]:
    """``--data-weight`` values (``"B=0.3"``) as ``{corpus: weight}``.

    Raises:
        ConfigError: a value is not ``CORPUS=NUMBER`` or names a corpus twice.
    """
    weights: dict[str, float] = {}
    for text in texts:
        name, sep, value = text.rpartition("=")
        if not sep or not name:
            raise ConfigError(f"--data-weight {text!r}: expected CORPUS=WEIGHT, e.g. B=0.3")
        try:
            weight = float(value)
        except ValueError:
            raise ConfigError(f"--data-weight {text!r}: the weight must be a number in (0, "
                              f"{MAX_WEIGHT:g}], e.g. {name}=0.3") from None
        if name in weights:
            raise ConfigError(f"--data-weight names {name} twice: give each corpus one weight")
        weights[name] = weight
    return weights


def resolve_corpora(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    weights: Mapping[str, float] | None = None,
) -> list[Corpus]:
    """The corpora of a run, in ``--data`` order, with their weights.

    Args:
        data: one prepared folder or several.
        weights: ``{corpus: weight}``; a corpus is named by its ``--data`` value as given, its
            resolved path, or its folder name when no other corpus has that name. Unnamed
            corpora weigh 1.

    Raises:
        ConfigError: no corpus, one given twice, a weight outside (0, 100], or a weight for a
            corpus that is not among them (or whose folder name is ambiguous).
    """
    paths = [data] if isinstance(data, str | os.PathLike) else list(data)
    if not paths:
        raise ConfigError("no --data given: name at least one prepared folder")
    corpora = [Corpus(Path(p), str(p)) for p in paths]
    seen: dict[Path, str] = {}
    for c in corpora:
        key = c.path.resolve()
        if key in seen:
            raise ConfigError(
                f"--data {c.name} is given twice (as {seen[key]}): name each corpus once and "
                f"raise its share with --data-weight {c.name}=2")
        seen[key] = c.name
    weighted = dict.fromkeys(range(len(corpora)), 1.0)
    for key, weight in (weights or {}).items():
        k = _corpus_named(corpora, str(key))
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not (
                math.isfinite(weight) and 0 < weight <= MAX_WEIGHT):
            raise ConfigError(f"--data-weight {key}={weight}: the weight must be a number in "
                              f"(0, {MAX_WEIGHT:g}] (1 = each utterance once per epoch)")
        weighted[k] = float(weight)
    return [Corpus(c.path, c.name, weighted[k]) for k, c in enumerate(corpora)]


def _corpus_named(corpora: Sequence[Corpus], key: str) -> int:
    """The position of the corpus ``key`` names (see :func:`resolve_corpora`)."""
    for k, c in enumerate(corpora):
        if key == c.name or Path(key).resolve() == c.path.resolve():
            return k
    by_folder = [k for k, c in enumerate(corpora) if c.path.resolve().name == key]
    names = ", ".join(c.name for c in corpora)
    if len(by_folder) > 1:
        raise ConfigError(f"--data-weight {key}: several corpora are folders named {key} "
                          f"({', '.join(corpora[k].name for k in by_folder)}): name one by its "
                          "--data path")
    if not by_folder:
        raise ConfigError(f"--data-weight {key}: no --data is {key} (the corpora: {names}): "
                          "name a corpus by its --data path or its folder name")
    return by_folder[0]


def merge_stats(parts: Sequence[FeatureStats]) -> FeatureStats:
    """The statistics of the union of the corpora's train frames, from each one's statistics.

    Exact up to float rounding (:func:`seqkit.audio.features.merge_stats`): weighted by frame
    count, not an average of the means. One part is returned as it is.

    Raises:
        ConfigError: no parts, parts of other dimensions, or no frames.
    """
    if not parts:
        raise ConfigError("merge_stats: expected at least one set of statistics, found none")
    if len(parts) == 1:
        return parts[0]
    if len({p.dim for p in parts}) > 1:
        dims = sorted({p.dim for p in parts})
        raise ConfigError(f"cannot merge feature statistics of dimensions {dims}: prepare the "
                          "corpora with one front end")
    if sum(p.frames for p in parts) <= 0:
        raise ConfigError("cannot merge feature statistics of 0 frames: prepare the corpora again")
    return features.merge_stats(parts)


def count_utterances(folder: Path, split: str, *, required: bool = True) -> int:
    """How many utterances a prepared folder's ``split`` manifest holds (0: none or absent).

    Raises:
        CorpusError: the manifest cannot be read, or is missing and ``required``.
    """
    manifest = split_manifest(folder, split)
    try:
        with manifest.open(encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        if not required:
            return 0
        raise CorpusError(f"manifest {manifest} not found: expected a directory made by "
                          "`seqkit data prepare`") from None
    except OSError as err:
        raise CorpusError(f"cannot read {manifest} ({err.strerror}): check the prepared "
                          "folder") from None


@dataclass(frozen=True)
class CorpusRecord:
    """What a run records of one corpus it read.

    Attributes:
        name: the ``--data`` value as given.
        path: the prepared folder, resolved.
        weight: its ``--data-weight`` (1 = each utterance once per epoch).
        dev: whether its dev split is in the run's dev set.
        utterances: its train utterances (0: a dev-only corpus, e.g. prepared with
            ``--all-to dev``).
        sha256: SHA-256 of each file the run read from it, by name (``train.jsonl``,
            ``dev.jsonl`` when ``dev``, ``stats.json`` unless the run normalized with an
            ``--init`` model's statistics or is a phone LM).
    """

    name: str
    path: str
    weight: float
    dev: bool
    utterances: int
    sha256: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML / JSON / checkpoint friendly); inverse of :meth:`from_dict`."""
        return {"name": self.name, "path": self.path, "weight": self.weight, "dev": self.dev,
                "utterances": self.utterances, "sha256": dict(self.sha256)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CorpusRecord:
        """Build from :meth:`to_dict` output."""
        return cls(str(data["name"]), str(data["path"]), float(data["weight"]),
                   bool(data["dev"]), int(data["utterances"]),
                   {str(k): str(v) for k, v in dict(data["sha256"]).items()})


def record_corpora(corpora: Sequence[Corpus], *, dev: DevSet, stats_read: bool
                   ) -> list[CorpusRecord]:
    """Check and record the files a run reads from each corpus.

    A corpus with an empty train split (prepared with ``--all-to dev``) is read for its dev
    split only: first, to be the run's dev set (someone's held-out recordings), or with
    ``dev`` all.

    Args:
        corpora: the run's corpora.
        dev: which dev splits the run scores (the first corpus's always).
        stats_read: whether the run reads the ``stats.json`` of corpora it trains on.

    Raises:
        CorpusError: a file changed since prepare wrote it, or is missing; the first corpus
            has no dev utterances; no corpus has train utterances.
    """
    records = []
    for k, c in enumerate(corpora):
        n_train = count_utterances(c.path, "train")
        if k == 0 and not count_utterances(c.path, "dev"):
            raise CorpusError(
                f"{split_manifest(c.path, 'dev')} has no utterances: the first --data's dev "
                "split scores each epoch (put a corpus with a dev split first, or prepare held-out "
                "recordings with --all-to dev and give them first)")
        use_dev = k == 0 or (dev == DevSet.ALL
                             and count_utterances(c.path, "dev", required=False) > 0)
        names = ["train.jsonl", *(["dev.jsonl"] if use_dev else []),
                 *(["stats.json"] if stats_read and n_train else [])]
        records.append(CorpusRecord(c.name, str(c.path.resolve()), c.weight, use_dev, n_train,
                                    prepared_digests(c.path, names)))
    if not any(r.utterances for r in records):
        raise CorpusError(f"no --data has train utterances ({', '.join(c.name for c in corpora)}"
                          "): give at least one corpus with a train split")
    return records


def first_change(recorded: Sequence[CorpusRecord], current: Sequence[CorpusRecord]
                 ) -> str | None:
    """What differs between the corpora a run recorded and the ones given now, in words; None
    when they are the same (the same files by content, weights and dev splits; a folder may
    have moved)."""
    if len(recorded) != len(current):
        return (f"it trained on {len(recorded)} corpora "
                f"({', '.join(r.name for r in recorded)}), not {len(current)}")
    for k, (old, new) in enumerate(zip(recorded, current, strict=True)):
        where = f"corpus {k + 1} ({new.name})"
        if old.dev != new.dev:
            return f"{where}: its dev split {'is' if new.dev else 'is not'} in the dev set now"
        if old.weight != new.weight:
            return f"{where}: weight {new.weight:g}, it trained with {old.weight:g}"
        if old.sha256 != new.sha256:
            changed = sorted(n for n in set(old.sha256) | set(new.sha256)
                             if old.sha256.get(n) != new.sha256.get(n))
            return f"{where}: {changed[0]} is not the file it trained on (in {old.path})"
    return None
