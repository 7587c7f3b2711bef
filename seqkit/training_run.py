"""seqkit from Python: train a recipe into a run folder, as ``seqkit train`` does.

Example:
    >>> summary = seqkit.train("synth/ctc_blstm", "prepared", "runs/new", max_epochs=1,
    ...                        overrides={"model.encoder.layers": 1, "model.encoder.hidden": 16})
    >>> summary.stopped, [e.epoch for e in summary.epochs]
    ('max_epochs', [1])
    >>> seqkit.load("runs/new").kind
    'ctc'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from seqkit.config_schema import dotted
from seqkit.errors import ConfigError
from seqkit.progress import ProgressFn
from seqkit.training import TrainSummary, load_recipe
from seqkit.training import train as train_recipe
from seqkit.training.trainer import LogFn


def train(
    recipe: str | os.PathLike[str],
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    data_weights: Mapping[str, float] | None = None,
    dev: str = "first",
    init: str | os.PathLike[str] | None = None,
    resume: bool = False,
    force: bool = False,
    max_epochs: int | None = None,
    max_minutes: float | None = None,
    seed: int | None = None,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
) -> TrainSummary:
    """Train a recipe on one or several prepared corpora, writing checkpoints and logs to a run
    folder.

    The same as ``seqkit train RECIPE --data DATA --out OUT`` on one process: ``out`` gets
    ``best.pt`` (best dev PER), ``last.pt`` (the full training state), ``config.toml`` (the
    resolved recipe), ``metrics.jsonl`` and ``curves.png``. Ctrl-C or SIGTERM writes
    ``last.pt`` and returns with ``stopped="interrupted"``; ``resume=True`` continues with the
    same next batch and learning rate.

    Args:
        recipe: a built-in recipe name (``seqkit recipes`` lists them, e.g.
            ``"synth/ctc_blstm"``) or a TOML file.
        data: a folder written by ``seqkit data prepare``, or several (``--data A --data B``):
            their train splits are mixed, normalization statistics taken over the union.
        out: the run folder; an existing one is refused unless ``resume`` or ``force``.
        overrides: recipe values to change: ``"key=value"`` strings as ``--set`` takes them
            (``["train.lr=3e-4"]``; values are TOML literals, bare words strings), or a mapping
            from dotted keys (or nested tables) to Python values (``{"train.lr": 3e-4}``).
        data_weights: corpus (its ``data`` path or folder name) -> weight W: it gives
            ``round(W x its train utterances)`` to each epoch (``--data-weight``; default 1).
        dev: ``"first"`` (the first corpus's dev split scores each epoch) or ``"all"`` (every
            corpus's dev split, pooled).
        init: fine-tune from a trained model of the same kind, shape, phone set and front end
            (a run folder's ``best.pt`` or a ``.pt`` file): its weights and feature
            statistics; a fresh optimizer and schedule.
        resume: continue ``out`` exactly where its ``last.pt`` stopped.
        force: start over in an existing ``out``.
        max_epochs: stop after this many epochs (overrides ``train.max_epochs``).
        max_minutes: stop after this many minutes, writing ``last.pt`` (overrides
            ``train.max_minutes``).
        seed: the random seed (overrides ``train.seed``).
        progress: called as ``progress("epoch N", batches_done, batches_total)``.
        log: called with each step and epoch record written to ``metrics.jsonl`` and with
            notices the user should read.

    Returns:
        What the run did: epochs, best epoch and dev score, why it stopped.

    Raises:
        ConfigError: an unknown recipe, key or value (the message lists the valid keys).
        OutputExistsError: ``out`` exists and neither ``resume`` nor ``force`` is set.
        OutputLockedError: another process trains into ``out``.
        CorpusError, AudioError: bad prepared data.
        CheckpointError: nothing to resume, ``last.pt`` does not fit the recipe, or ``init``
            is another kind of model (the message names the difference).
        TrainingError: too many non-finite losses in a row.
    """
    sets = override_strings(overrides)
    if seed is not None:
        sets.append(f"train.seed={seed}")
    resolved = load_recipe(recipe, sets)
    return train_recipe(resolved, data, out, data_weights=data_weights, dev=dev, init=init,
                        resume=resume, force=force, max_epochs=max_epochs,
                        max_minutes=max_minutes, progress=progress, log=log)


def override_strings(overrides: Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    """``overrides`` as the ``key=value`` strings ``--set`` takes.

    Example:
        >>> override_strings({"train": {"lr": 3e-4}, "model.kind": "ctc", "data.cache": False})
        ['train.lr=0.0003', 'model.kind="ctc"', 'data.cache=false']

    Raises:
        ConfigError: a value TOML cannot write (e.g. None, NaN or an object).
    """
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not isinstance(overrides, Mapping):
        return [str(item) for item in overrides]
    out: list[str] = []
    for key, value in dotted(overrides).items():
        out.append(f"{key}={_toml_literal(key, value)}")
    return out


def _toml_literal(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_literal(key, v) for v in value) + "]"
    raise ConfigError(
        f"override {key}: expected a bool, int, finite float, string or list, found {value!r}"
    )
