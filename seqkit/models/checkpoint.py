"""Checkpoints: the one file format training writes and decoding reads.

A checkpoint is a ``torch.save``'d dict holding only tensors, numbers, strings, lists and dicts,
so it loads with ``torch.load(weights_only=True)``. Keys:

- ``"format"``: ``"seqkit-checkpoint"``; ``"format_version"``: int (:data:`FORMAT_VERSION`);
  ``"seqkit_version"``: the writer's version.
- ``"model_config"``: :meth:`ModelConfig.to_dict`; ``"model"``: the state dict;
  ``"input_dim"``: F; ``"vocab"``: list of symbols, index 0 the blank; ``"phone_set"``: 61, 48
  or 39; ``"features"``: :meth:`FeatureConfig.to_dict` or None (LM); ``"stats"``:
  :meth:`FeatureStats.to_dict` or None (LM).
- Training state (optional, written by the trainer): ``"optimizer"``, ``"scheduler"``,
  ``"epoch"``, ``"step"``, ``"rng"``, ``"train_config"``, ``"best_score"``, ..., and what the run
  read: ``"corpora"`` (each with its SHA-256s), ``"dev_set"``, ``"init"`` (the model it was
  fine-tuned from, or None).

:func:`read_init` and :func:`load_init` start a run from a trained model (``seqkit train
--init``), refusing one whose weights or inputs do not fit.

A run dir holds ``best.pt`` (best dev PER) and ``last.pt`` (latest epoch or interruption).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqkit import __version__
from seqkit.atomic import write_atomic
from seqkit.audio.features import FeatureConfig, FeatureStats
from seqkit.config_schema import dotted
from seqkit.errors import CheckpointError, ConfigError, SeqkitError
from seqkit.models import build_model
from seqkit.models.config import ModelConfig, ModelKind

FORMAT = "seqkit-checkpoint"
# Bump when a change makes older readers misread new files; readers accept <= their version.
FORMAT_VERSION = 1
BEST = "best.pt"
LAST = "last.pt"
REQUIRED_KEYS = ("model_config", "model", "vocab", "input_dim")
PARTS = ("encoder", "predictor")


@dataclass
class LoadedModel:
    """A model reloaded from a checkpoint, with everything needed to feed and read it.

    Attributes:
        model: the model, in eval mode, on the requested device.
        kind: ``"ctc"``, ``"transducer"`` or ``"lm"`` (a :class:`ModelKind`, equal to those).
        vocab: symbols by index, index 0 the blank.
        phone_set: 61, 48 or 39 (None if the checkpoint does not say).
        features: the front end the model was trained on (None for an LM).
        stats: the normalization statistics (None for an LM).
        config: the model's :class:`ModelConfig`.
        path: the checkpoint file that was read.
        epoch: epochs completed when it was written (None if not a training checkpoint).
        input_dim: F, features per frame.
        seqkit_version: version of seqkit that wrote it.
    """

    model: nn.Module
    kind: ModelKind
    vocab: list[str]
    phone_set: int | None
    features: FeatureConfig | None
    stats: FeatureStats | None
    config: ModelConfig
    path: Path
    epoch: int | None
    input_dim: int = 0
    seqkit_version: str = ""


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or the model)."""
    return model.module if hasattr(model, "module") else model


def model_payload(
    model: nn.Module,
    *,
    vocab: list[str],
    phone_set: int | None,
    features: FeatureConfig | None,
    stats: FeatureStats | None,
) -> dict[str, Any]:
    """The model part of a checkpoint payload; the trainer adds its own state to it.

    Args:
        model: a model from :func:`seqkit.models.build_model` (DDP wrappers are unwrapped).
        vocab: symbols by index, index 0 the blank.
        phone_set: 61, 48 or 39.
        features: the feature config (None for an LM).
        stats: the normalization statistics (None for an LM).

    Returns:
        Dict with ``format``, ``format_version``, ``seqkit_version``, ``model_config``,
        ``model``, ``input_dim``, ``vocab``, ``phone_set``, ``features``, ``stats``.
    """
    inner = _unwrap(model)
    encoder = getattr(inner, "encoder", None)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seqkit_version": __version__,
        "model_config": inner.config.to_dict(),
        "model": inner.state_dict(),
        "input_dim": int(encoder.input_dim) if encoder is not None else 0,
        "vocab": list(vocab),
        "phone_set": phone_set,
        "features": features.to_dict() if features is not None else None,
        "stats": stats.to_dict() if stats is not None else None,
    }


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (temp file in the same dir, then ``os.replace``).

    ``format``, ``format_version`` and ``seqkit_version`` are filled in when missing. A reader
    never sees a half-written file, even if the process dies mid-write.

    Args:
        path: destination ``.pt`` file; its directory is created if needed.
        payload: dict with at least ``model_config``, ``model``, ``vocab`` and ``input_dim``
            (see :func:`model_payload`); values must be tensors, numbers, strings, None, lists,
            tuples or dicts so it reloads with ``weights_only=True``.

    Returns:
        The path written.

    Raises:
        CheckpointError: required keys missing, or the file cannot be written.
    """
    if not isinstance(payload, dict):
        raise CheckpointError(f"expected a checkpoint payload dict, found {type(payload).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(
            f"checkpoint payload lacks {', '.join(missing)}: start from model_payload(model, ...)"
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seqkit_version": __version__,
        **payload,
    }
    path = Path(path)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())

    try:
        write_atomic(path, write)
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoint {path} ({err.strerror}): check the directory's permissions "
            "and free disk space"
        ) from None
    return path


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint file a path names: a ``.pt`` file, or a run dir's best.pt / last.pt.

    Raises:
        CheckpointError: nothing at ``path``, or a run dir with neither file.
    """
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(
            f"run dir {path} has no {BEST} or {LAST}: train into it first "
            f"(`seqkit train RECIPE --out {path}`) or let it finish one epoch"
        )
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found: pass a run dir written by `seqkit train` or a .pt file"
        )
    return path


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read and check a checkpoint payload (``weights_only=True``, no code runs).

    Args:
        path: a ``.pt`` file or a run dir (best.pt, else last.pt; see
            :func:`resolve_checkpoint` for which file that is).
        map_location: device for the tensors. Default ``"cpu"``.

    Returns:
        The payload dict as saved (e.g. for ``--resume``).

    Raises:
        CheckpointError: missing, unreadable, not a seqkit checkpoint, a newer format, or
            missing keys.
    """
    return _read(resolve_checkpoint(path), map_location)


def _read(file: Path, map_location: str | torch.device) -> dict[str, Any]:
    """Load and check one checkpoint file (see :func:`load_checkpoint`)."""
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        first_line = (str(err).strip().splitlines() or [""])[0][:120]
        raise CheckpointError(
            f"{file} is not a readable checkpoint ({type(err).__name__}: {first_line}): "
            "pass a .pt file written by `seqkit train`"
        ) from None
    return _checked(payload, file)


def _checked(payload: Any, file: Path) -> dict[str, Any]:
    """``payload`` if it is a seqkit checkpoint this version reads (CheckpointError if not)."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{file} is not a seqkit checkpoint (expected 'format': {FORMAT!r}): "
            "pass a .pt file written by `seqkit train`"
        )
    version = payload.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has checkpoint format {version!r} (written by seqkit "
            f"{payload.get('seqkit_version', '?')}); this seqkit {__version__} reads format "
            f"{FORMAT_VERSION} or older: upgrade seqkit"
        )
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(
            f"{file} lacks {', '.join(missing)}: the file is damaged or was not written by "
            "`seqkit train`; train again"
        )
    return payload


def _config_of(payload: dict[str, Any], file: Path) -> ModelConfig:
    """The payload's ModelConfig (CheckpointError if it no longer validates)."""
    try:
        return ModelConfig.from_dict(payload["model_config"])
    except ConfigError as err:
        raise CheckpointError(
            f"{file} holds a model config this seqkit rejects ({err}): "
            "use the seqkit version that wrote it"
        ) from None


def load_model(
    path: str | os.PathLike[str],
    *,
    expect_kind: str | None = None,
    map_location: str | torch.device = "cpu",
) -> LoadedModel:
    """Rebuild a trained model from a checkpoint or run dir, in eval mode.

    Args:
        path: a ``.pt`` file or a run dir (its best.pt, else last.pt).
        expect_kind: if given (``"ctc"``, ``"transducer"``, ``"lm"``), any other kind is an
            error.
        map_location: device for the model. Default ``"cpu"``.

    Returns:
        A :class:`LoadedModel`.

    Raises:
        CheckpointError: missing file, run dir without checkpoints, not a seqkit checkpoint,
            another kind than ``expect_kind``, a newer format, or weights that do not fit.
    """
    file = resolve_checkpoint(path)
    return model_from_payload(_read(file, map_location), file, expect_kind=expect_kind,
                              map_location=map_location)


def model_from_payload(
    payload: dict[str, Any],
    file: Path,
    *,
    expect_kind: str | None = None,
    map_location: str | torch.device = "cpu",
) -> LoadedModel:
    """Rebuild the model of a checkpoint payload already read (e.g. the one a TorchScript
    export carries), in eval mode.

    Args:
        payload: a checkpoint dict (see the module docstring).
        file: where it was read from, for messages and :attr:`LoadedModel.path`.
        expect_kind, map_location: as :func:`load_model`.

    Raises:
        CheckpointError: as :func:`load_model`.
    """
    payload = _checked(payload, file)
    config = _config_of(payload, file)
    if expect_kind is not None and config.kind != expect_kind:
        raise CheckpointError(
            f"{file} holds a {config.kind} model, expected a {expect_kind} model: "
            f"pass a run trained with a {expect_kind} recipe"
        )
    vocab = [str(s) for s in payload["vocab"]]
    try:
        model = build_model(config, input_dim=int(payload["input_dim"]), vocab_size=len(vocab))
        model.load_state_dict(payload["model"])
        features = FeatureConfig.from_dict(payload["features"]) if payload.get("features") else None
        stats = FeatureStats.from_dict(payload["stats"]) if payload.get("stats") else None
    except (SeqkitError, RuntimeError, KeyError, TypeError, ValueError) as err:
        first_line = (str(err).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"{file} does not rebuild into its model ({type(err).__name__}: {first_line}): "
            "the file is damaged or was edited; train again"
        ) from None
    model.to(map_location)
    model.eval()
    epoch = payload.get("epoch")
    return LoadedModel(
        model=model,
        kind=config.kind,
        vocab=vocab,
        phone_set=payload.get("phone_set"),
        features=features,
        stats=stats,
        config=config,
        path=file,
        epoch=int(epoch) if epoch is not None else None,
        input_dim=int(payload["input_dim"]),
        seqkit_version=str(payload.get("seqkit_version", "")),
    )


_SOURCE_KINDS = {"encoder": ("ctc", "transducer"), "predictor": ("lm", "transducer")}


def init_from_pretrained(
    model: nn.Module,
    checkpoint_path: str | os.PathLike[str],
    part: str = "encoder",
    *,
    vocab: list[str] | None = None,
) -> list[str]:
    """Copy a pretrained network into part of a model (Graves et al. 2013's PreTrans).

    ``part="encoder"`` copies a CTC (or transducer) run's encoder into the model's transcription
    network; ``part="predictor"`` copies a phone LM (or transducer) run's prediction network.
    The rest of the model keeps its initialization.

    Args:
        model: the model to initialize (a DDP wrapper is unwrapped); must have the part.
        checkpoint_path: a ``.pt`` file or run dir of the pretrained model.
        part: ``"encoder"`` or ``"predictor"``. Default ``"encoder"``.
        vocab: if given, the checkpoint's vocabulary must equal it (so label embeddings mean
            the same phones).

    Returns:
        Names of the parameters and buffers copied, as in ``model.state_dict()``.

    Raises:
        ConfigError: unknown ``part``, or the model has no such part.
        CheckpointError: unreadable checkpoint, a kind without that part, another vocabulary,
            or parameters whose names or shapes differ (the message names the parameter).
    """
    if part not in PARTS:
        raise ConfigError(f"part must be one of {', '.join(PARTS)}, found {part!r}")
    inner = _unwrap(model)
    target = getattr(inner, part, None)
    if not isinstance(target, nn.Module):
        raise ConfigError(
            f"a {getattr(inner, 'kind', type(inner).__name__)} model has no {part} to initialize:"
            f" pretrain the {part} of a transducer"
        )
    file = resolve_checkpoint(checkpoint_path)
    payload = _read(file, "cpu")
    source_kind = _config_of(payload, file).kind
    if source_kind not in _SOURCE_KINDS[part]:
        raise CheckpointError(
            f"{file} holds a {source_kind} model, which has no {part}: pass a "
            f"{' or '.join(_SOURCE_KINDS[part])} run to initialize the {part}"
        )
    if vocab is not None and list(payload["vocab"]) != list(vocab):
        raise CheckpointError(
            f"{file} was trained on another vocabulary ({len(payload['vocab'])} symbols, expected "
            f"{len(vocab)}): pretrain with the same phone set"
        )
    prefix = f"{part}."
    source = _weights_under(payload["model"], prefix)
    wanted = target.state_dict()
    for name, tensor in wanted.items():
        if name not in source:
            raise CheckpointError(
                f"{file} has no parameter {prefix}{name}: the pretrained {part} has another "
                f"architecture (layers, cell or bidirectional); use the same {part} settings"
            )
        if tuple(source[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"parameter {prefix}{name} has shape {tuple(source[name].shape)} in {file} but "
                f"{tuple(tensor.shape)} in the model: use the same {part} settings, features and "
                "phone set as the pretrained run"
            )
    extra = sorted(set(source) - set(wanted))
    if extra:
        raise CheckpointError(
            f"{file} has parameter {prefix}{extra[0]} that the model lacks: the pretrained "
            f"{part} has another architecture; use the same {part} settings"
        )
    _copy_into(wanted, source)
    return [prefix + name for name in wanted] + _copy_head(inner, payload["model"], part,
                                                           source_kind)


# A transducer's extra output layers start from the pretrained runs' output layers: the pruned
# transducer's additive joint (seqkit.losses.pruned) from the CTC run's per-frame phone scores
# and the phone LM's next-phone scores, the auxiliary CTC layer from the CTC run's.
_HEADS = {"encoder": (("simple_f", {"ctc": "output", "transducer": "simple_f"}),
                      ("ctc_output", {"ctc": "output", "transducer": "ctc_output"})),
          "predictor": (("simple_g", {"lm": "output", "transducer": "simple_g"}),)}


def _copy_head(model: nn.Module, weights: dict[str, torch.Tensor], part: str,
               source_kind: str) -> list[str]:
    """Copy the source's output layer into each of the model's extra layers for ``part`` where
    both exist with the same shapes; the names copied."""
    copied = []
    for head, sources in _HEADS[part]:
        target = getattr(model, head, None)
        if not isinstance(target, nn.Module):
            continue
        source = _weights_under(weights, f"{sources[str(source_kind)]}.")
        wanted = target.state_dict()
        if set(source) != set(wanted) or any(
                tuple(source[k].shape) != tuple(v.shape) for k, v in wanted.items()):
            continue
        _copy_into(wanted, source)
        copied += [f"{head}.{name}" for name in wanted]
    return copied


def _weights_under(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a state dict under ``prefix`` (e.g. ``"encoder."``), named without it."""
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def _copy_into(wanted: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> None:
    """Copy ``source``'s tensors into the model tensors ``wanted`` (a module's state dict,
    whose tensors share the module's storage), name by name."""
    with torch.no_grad():
        for name, tensor in wanted.items():
            tensor.copy_(source[name])


@dataclass(frozen=True)
class InitModel:
    """A trained model a run starts from (``seqkit train --init``): its weights and statistics.

    Attributes:
        path: the checkpoint file read.
        weights: its state dict.
        stats: the normalization statistics it was trained with (None for a phone LM).
        epoch: epochs it had trained (None if not a training checkpoint).
        best_score: its best dev score (dev PER in %, dev loss for an LM), if recorded.
    """

    path: Path
    weights: dict[str, torch.Tensor]
    stats: FeatureStats | None
    epoch: int | None
    best_score: float | None


# What makes two models' weights interchangeable, by kind: these settings must agree (dropout,
# fused_joint and the loss scales do not shape a weight; prune_range and ctc_loss_scale add
# layers only when on, so only on/off must agree).
_ENCODER_SHAPE = tuple(f"encoder.{k}" for k in ("layers", "hidden", "bidirectional",
                                                "projection", "cell", "stack"))
_PREDICTOR_SHAPE = ("predictor.embed", "predictor.hidden", "predictor.layers")
_SHAPE_KEYS = {
    ModelKind.CTC: _ENCODER_SHAPE,
    ModelKind.LM: _PREDICTOR_SHAPE,
    ModelKind.TRANSDUCER: (*_ENCODER_SHAPE, *_PREDICTOR_SHAPE, "joint_dim", "joint_stride",
                           "prune_range", "ctc_loss_scale"),
}
_ON_OFF_KEYS = ("prune_range", "ctc_loss_scale")


def read_init(
    path: str | os.PathLike[str],
    *,
    config: ModelConfig,
    phone_set: int,
    vocab: list[str],
    features: FeatureConfig | None,
) -> InitModel:
    """Read a trained model to fine-tune, refusing one whose weights or inputs do not fit.

    Args:
        path: a run dir (its best.pt, else last.pt) or a ``.pt`` file.
        config: the model the run builds (its recipe's ``[model]``).
        phone_set: the run's training phone set.
        vocab: the run's output symbols (index 0 the blank).
        features: the run's front end (None for a phone LM).

    Returns:
        The weights (load them with :func:`load_init`) and the statistics it was trained with.

    Raises:
        CheckpointError: unreadable, or another model kind, shape (e.g.
            ``model.encoder.hidden``), phone set, vocabulary or front end than the run's, or
            an acoustic model without statistics; the message names the difference and the
            ``--set`` that removes it.
    """
    file = resolve_checkpoint(path)
    payload = _read(file, "cpu")
    saved = _config_of(payload, file)
    if saved.kind != config.kind:
        raise CheckpointError(
            f"--init {file} holds a {saved.kind} model, the recipe trains a {config.kind}: "
            f"fine-tune with a {saved.kind} recipe"
            + (" (a transducer takes a CTC encoder through train.init_encoder)"
               if config.kind == ModelKind.TRANSDUCER and saved.kind == ModelKind.CTC else ""))
    old, new = dotted(saved.to_dict()), dotted(config.to_dict())
    for key in _SHAPE_KEYS[ModelKind(config.kind)]:
        a, b = old[key], new[key]
        if (bool(a) != bool(b)) if key in _ON_OFF_KEYS else a != b:
            raise CheckpointError(
                f"--init {file} has model.{key} = {_toml(a)}, the recipe {_toml(b)}: fine-tune "
                f"with the model it was trained as (--set model.{key}={_toml(a)}, or its "
                "config.toml)")
    saved_set = payload.get("phone_set")
    if saved_set is not None and int(saved_set) != phone_set:
        raise CheckpointError(
            f"--init {file} was trained on {saved_set} phones, the recipe on {phone_set}: "
            f"fine-tune on the same phone set (--set data.phone_set={saved_set})")
    if [str(s) for s in payload["vocab"]] != list(vocab):
        raise CheckpointError(
            f"--init {file} has another vocabulary ({len(payload['vocab'])} symbols, the run "
            f"{len(vocab)}): fine-tune on the phone set it was trained on")
    _check_front_end(file, payload.get("features"), features)
    stats = saved_stats(payload) if features is not None else None
    if features is not None and stats is None:
        raise CheckpointError(f"--init {file} holds no feature statistics: pass a checkpoint "
                              "written by `seqkit train`")
    epoch, best = payload.get("epoch"), payload.get("best_score")
    return InitModel(file, payload["model"], stats, int(epoch) if epoch is not None else None,
                     float(best) if best is not None else None)


def saved_stats(payload: dict[str, Any]) -> FeatureStats | None:
    """The normalization statistics a checkpoint payload carries (None for a phone LM).

    Raises:
        CheckpointError: they do not rebuild (the file was edited).
    """
    if not payload.get("stats"):
        return None
    try:
        return FeatureStats.from_dict(payload["stats"])
    except ConfigError as err:
        raise CheckpointError(f"a checkpoint's feature statistics do not rebuild ({err}): "
                              "start over with --force") from None


def _check_front_end(file: Path, saved: Any, features: FeatureConfig | None) -> None:
    """Refuse a model trained on another front end than ``features``, naming the setting."""
    if features is None:
        return
    if not saved:
        raise CheckpointError(f"--init {file} holds no front end (a phone LM?): fine-tune an "
                              "acoustic model")
    try:
        old = FeatureConfig.from_dict(saved).to_dict()
    except (SeqkitError, TypeError, ValueError) as err:
        raise CheckpointError(f"--init {file} holds a front end this seqkit rejects ({err}): "
                              "use the seqkit version that wrote it") from None
    new = features.to_dict()
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            raise CheckpointError(
                f"--init {file} was trained on features with {key} = {_toml(old.get(key))}, "
                f"the recipe has {_toml(new.get(key))}: fine-tune on its front end (--set "
                f"data.features.{key}={_toml(old.get(key))})")


def load_init(model: nn.Module, init: InitModel) -> None:
    """Copy an :class:`InitModel`'s weights into ``model`` (a DDP wrapper is unwrapped).

    Raises:
        CheckpointError: a parameter is missing, extra or of another shape (the message names
            it); :func:`read_init` has refused the settings that cause this.
    """
    wanted = _unwrap(model).state_dict()
    for name in sorted(set(wanted) | set(init.weights)):
        if name not in init.weights or name not in wanted:
            side = "lacks" if name not in init.weights else "has a parameter the model lacks:"
            raise CheckpointError(f"--init {init.path} {side} {name}: fine-tune with the model "
                                  "settings it was trained with (its config.toml)")
        if tuple(init.weights[name].shape) != tuple(wanted[name].shape):
            raise CheckpointError(
                f"--init {init.path}: {name} is {tuple(init.weights[name].shape)}, the model's "
                f"{tuple(wanted[name].shape)}: fine-tune with its model settings and front end")
    _copy_into(wanted, init.weights)


def _toml(value: Any) -> str:
    """A setting as ``--set`` takes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
