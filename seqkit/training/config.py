"""Training recipes: TOML files mapped onto frozen dataclasses, with typed ``--set`` overrides.

A recipe has three tables, each holding only what differs from the defaults below::

    [model]            # seqkit.models.config.ModelConfig (kind, [model.encoder], [model.predictor])
    [train]            # TrainConfig: optimizer, schedule, regularization, budget
    [data]             # DataConfig: training phone set, bucketing, [data.features]

``load_recipe(path, ["train.lr=3e-4", "model.encoder.hidden=128"])`` reads the file, applies the
overrides and builds :class:`RecipeConfig`; an unknown key or a wrong type is a
:class:`~seqkit.errors.ConfigError` naming the key and where it came from.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from seqkit.audio.augment import SpecAugment
from seqkit.audio.features import FeatureConfig
from seqkit.audio.perturb import Perturbation
from seqkit.config_schema import apply_overrides, build, choice, to_plain
from seqkit.data.phones import PHONE_SETS
from seqkit.data.pipeline import Augmentation
from seqkit.errors import ConfigError
from seqkit.models.config import ModelConfig, ModelKind
from seqkit.training.catalog import resolve_recipe


class Optimizer(StrEnum):
    """``train.optimizer``."""

    ADAM = "adam"  # robust default
    SGD = "sgd"  # SGD with Nesterov momentum, as Graves et al. 2013


class Amp(StrEnum):
    """``train.amp``: mixed precision on CUDA, and bf16 on CPUs that have it in hardware."""

    OFF = "off"
    BF16 = "bf16"
    FP16 = "fp16"  # with loss scaling


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class TrainConfig:
    """How to optimize: optimizer, LR schedule, regularization and the training budget.

    Attributes:
        optimizer: ``"adam"`` (default, robust) or ``"sgd"`` (SGD with Nesterov momentum, as
            Graves et al. 2013).
        lr: peak learning rate (after warmup).
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty added by the optimizer (0 = off).
        warmup_steps: linear LR warmup from 0 over this many optimizer steps (0 = off).
        lr_factor: multiply the LR by this when dev PER has not improved for ``lr_patience``
            epochs (reduce-on-plateau; dev loss for language models).
        lr_patience: epochs without improvement before the LR is reduced.
        min_lr: the plateau schedule never goes below this LR.
        grad_clip: clip the global gradient norm to this (0 = off).
        weight_noise: std of Gaussian noise added to every weight for each batch's forward and
            backward pass and removed before the update (Graves 2011/2013; 0 = off; 0.075 in
            the paper).
        budget_anneal: with a time budget (``max_minutes`` / ``--max-minutes``), scale the LR
            down linearly with the time left, to 5% at the end: for a fixed budget this beats
            a constant LR (Li et al. 2020, "Budgeted Training"). Time-based, so a resumed run
            sees a different LR than an uninterrupted one.
        max_epochs: passes over the training set (``--max-epochs`` overrides).
        max_minutes: wall-clock budget in minutes, 0 = none (``--max-minutes`` overrides); the
            run stops after the step that crosses it and writes ``last.pt``.
        max_steps: stop after this many optimizer steps in total, 0 = none (handy for tests
            and for interrupt/resume experiments).
        patience: early stopping: stop when dev PER has not improved for this many epochs
            (0 = never stop early).
        max_frames: padded input frames per global batch (summed over all workers); the
            batch size follows from it. Language models count phone tokens instead.
        seed: seeds model init, batch order, dropout, SpecAugment and weight noise.
        amp: mixed precision: ``"off"``, ``"bf16"`` or ``"fp16"`` (with loss scaling) on
            CUDA; ``"bf16"`` also on a CPU with bfloat16 in hardware (AVX512-BF16 or AMX) and
            float32 on other CPUs; ``"fp16"`` off CUDA trains in float32 with a warning.
        spec_augment: apply SpecAugment (frequency and time masks) to training features.
        freq_masks: SpecAugment frequency masks per utterance.
        freq_width: SpecAugment maximum frequency mask width (feature dims).
        time_masks: SpecAugment time masks per utterance.
        time_width: SpecAugment maximum time mask width (frames).
        vtlp: vocal-tract length perturbation of training features: warp factors uniform in
            ``1 +- vtlp`` per utterance and epoch (0 = off; see :mod:`seqkit.audio.perturb`).
        speed_perturb: speed perturbation: factors uniform in ``1 +- speed_perturb`` (0 = off).
        channel_db: random channel (spectral tilt +- this many dB plus ripples; 0 = off).
        lowpass_probability: chance of a random low-pass edge (3.4 kHz .. wideband) in the
            channel (0 = off).
        log_every: write a ``metrics.jsonl`` line every this many steps.
        max_bad_steps: abort after this many non-finite losses or gradients in a row.
        threads: CPU threads for torch (0 = all cores divided among local workers).
        init_encoder: run dir or checkpoint of a CTC run whose encoder initializes this
            model's (transducer pretraining, Graves 2013); "" = random init.
        init_predictor: run dir or checkpoint of an ``lm`` run whose network initializes the
            transducer's prediction network; "" = random init.
        freeze_encoder_epochs: with ``init_encoder``, keep the pretrained encoder's weights
            fixed for this many epochs at the start while the fresh joint network catches up;
            its backward pass is skipped, so those epochs cost less (0 = off; ignored without
            ``init_encoder``).
    """

    optimizer: Optimizer = Optimizer.ADAM
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_factor: float = 0.5
    lr_patience: int = 2
    min_lr: float = 1e-6
    grad_clip: float = 5.0
    weight_noise: float = 0.0
    budget_anneal: bool = False
    max_epochs: int = 20
    max_minutes: float = 0.0
    max_steps: int = 0
    patience: int = 6
    max_frames: int = 16000
    seed: int = 0
    amp: Amp = Amp.OFF
    spec_augment: bool = False
    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 2
    time_width: int = 40
    vtlp: float = 0.0
    speed_perturb: float = 0.0
    channel_db: float = 0.0
    lowpass_probability: float = 0.0
    log_every: int = 50
    max_bad_steps: int = 20
    threads: int = 0
    init_encoder: str = ""
    init_predictor: str = ""
    freeze_encoder_epochs: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "optimizer", choice(Optimizer, self.optimizer, "train.optimizer"))
        object.__setattr__(self, "amp", choice(Amp, self.amp, "train.amp"))
        _require(math.isfinite(self.lr) and self.lr > 0, f"train.lr must be > 0, found {self.lr}")
        _require(0 <= self.momentum < 1, f"train.momentum must be in [0, 1), found {self.momentum}")
        _require(0 < self.lr_factor <= 1,
                 f"train.lr_factor must be in (0, 1], found {self.lr_factor}")
        for name in ("weight_decay", "grad_clip", "weight_noise", "max_minutes", "min_lr"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value >= 0,
                     f"train.{name} must be >= 0, found {value}")
        for name in ("warmup_steps", "lr_patience", "max_steps", "patience", "threads",
                     "freq_masks", "freq_width", "time_masks", "time_width",
                     "freeze_encoder_epochs"):
            value = getattr(self, name)
            _require(value >= 0, f"train.{name} must be >= 0, found {value}")
        try:
            self.perturbation  # noqa: B018 - validates the ranges
        except ConfigError as err:
            raise ConfigError(f"train.{err}") from None
        for name in ("max_epochs", "max_frames", "log_every", "max_bad_steps"):
            value = getattr(self, name)
            _require(value >= 1, f"train.{name} must be >= 1, found {value}")


    @property
    def perturbation(self) -> Perturbation:
        """The feature perturbation these settings ask for."""
        return Perturbation(vtlp=self.vtlp, speed=self.speed_perturb, channel_db=self.channel_db,
                            lowpass_probability=self.lowpass_probability)

    @property
    def augmentation(self) -> Augmentation:
        """What the data pipeline does to training features: perturbation and SpecAugment."""
        masks = SpecAugment(self.freq_masks, self.freq_width, self.time_masks, self.time_width)
        return Augmentation(self.perturbation, masks if self.spec_augment else None)


@dataclass(frozen=True)
class DataConfig:
    """What the model is trained on.

    Attributes:
        phone_set: training targets: 61 (Graves et al.), 48 (Kaldi) or 39 phones; the 61
            TIMIT labels of the manifests are folded and ``q`` is dropped. Scoring always
            folds to 39.
        bucket_width: utterances whose lengths fall in the same ``bucket_width``-frame bucket
            are batched together (less padding; 0 = sort strictly by length).
        cache: keep the computed feature store in ``PREPARED/cache/`` so later runs skip
            extraction (False: a store in ``$TMPDIR``, removed once memory-mapped).
        feature_jobs: processes extracting features when a store is built (first run):
            0 = every core (shared by the local workers when each builds its own store).
        features: the front end; when it differs from the one ``stats.json`` was computed
            with, normalization statistics are recomputed on the training set.
    """

    phone_set: int = 61
    bucket_width: int = 20
    cache: bool = True
    feature_jobs: int = 0  # 0: all cores; rank 0 builds the cached store while the rest wait
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        _require(self.phone_set in PHONE_SETS,
                 f"data.phone_set must be one of 61, 48, 39, found {self.phone_set}")
        _require(self.bucket_width >= 0,
                 f"data.bucket_width must be >= 0, found {self.bucket_width}")
        _require(self.feature_jobs >= 0,
                 f"data.feature_jobs must be >= 0 (0 = every core), found {self.feature_jobs}")


@dataclass(frozen=True)
class RecipeConfig:
    """A whole recipe: model, training and data settings."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.model.kind != ModelKind.TRANSDUCER and (self.train.init_encoder or
                                                        self.train.init_predictor):
            raise ConfigError(
                f"train.init_encoder / train.init_predictor initialize a transducer, but "
                f"model.kind is '{self.model.kind}': remove them or set model.kind = 'transducer'"
            )

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (JSON / TOML / checkpoint friendly); inverse of :meth:`from_dict`."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RecipeConfig:
        """Build from a nested dict such as :meth:`to_dict` output or a parsed TOML file.

        Raises:
            ConfigError: an unknown key, a wrong type or an invalid value.
        """
        return build(cls, data, source=source)


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> RecipeConfig:
    """Read a TOML recipe and apply ``section.key=value`` overrides.

    Args:
        path: the recipe: a TOML file or a built-in name such as ``synth/ctc_blstm``.
        overrides: ``KEY=VALUE`` strings with dotted keys (``train.lr=3e-4``,
            ``model.encoder.hidden=128``); values are TOML literals, bare words are strings.

    Returns:
        The resolved recipe.

    A ``[run]`` table (what a run read, which ``seqkit train`` writes into ``RUN/config.toml``)
    is ignored, so a run's config.toml reads back as its recipe.

    Raises:
        ConfigError: neither a file nor a built-in name, or not TOML; an unknown key (with the
            valid keys and a did-you-mean); a wrong type (naming the key and the file or
            override); an invalid or conflicting value.
    """
    path = resolve_recipe(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read recipe {path} ({err}): check the path") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"recipe {path} is not valid TOML ({err}): fix the syntax") from None
    if isinstance(data, dict):
        data.pop(RUN_TABLE, None)  # a run's record in its config.toml: not a setting
    origins: dict[str, str] = {}
    data = apply_overrides(RecipeConfig, data, list(overrides or []), origins)
    return build(RecipeConfig, data, source=f"recipe {path.name}", origins=origins)


# The table of a run's config.toml that records what it read (corpora, dev set, --init); a
# recipe read back from that file ignores it.
RUN_TABLE = "run"


def run_to_toml(corpora: list[dict[str, Any]], *, dev: str, init: str | None) -> str:
    """A run's ``[run]`` table: its corpora (name, folder, weight, dev split, SHA-256 of the
    files read), which dev splits it scores and the model it started from, as TOML text."""
    lines = ["# what this run read (seqkit train writes it; reading the file as a recipe "
             "ignores it)", f"[{RUN_TABLE}]", f"dev = {_toml_value(dev)}"]
    if init is not None:
        lines.append(f"init = {_toml_value(init)}")
    for corpus in corpora:
        lines += ["", f"[[{RUN_TABLE}.corpora]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in corpus.items() if k != "sha256"]
        lines.append(f"[{RUN_TABLE}.corpora.sha256]")
        lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in corpus["sha256"].items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def recipe_to_toml(recipe: RecipeConfig) -> str:
    """The fully resolved recipe as TOML text (``None`` values, i.e. defaults, are left out)."""
    lines: list[str] = []

    def table(name: str, data: dict[str, Any]) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and v is not None}
        if scalars or not name.count("."):
            lines.append(f"[{name}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
            lines.append("")
        for key, value in data.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)

    for section, data in recipe.to_dict().items():
        table(section, data)
    return "\n".join(lines)
