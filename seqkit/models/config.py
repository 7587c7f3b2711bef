"""Model configuration: frozen dataclasses validated once, stored in every checkpoint.

The defaults are Graves, Mohamed & Hinton (2013), "Speech Recognition with Deep Recurrent Neural
Networks": three bidirectional layers of 250 LSTM units per direction (CTC-3l-250h,
Trans-3l-250h), a one-layer 250-unit prediction network and a 250-unit joint layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from seqkit.config_schema import build, choice, to_plain
from seqkit.errors import ConfigError


class ModelKind(StrEnum):
    """``model.kind``: which model :func:`seqkit.models.build_model` builds."""

    CTC = "ctc"  # encoder + linear to phones and blank
    TRANSDUCER = "transducer"  # encoder + prediction network + joint (Graves 2012)
    LM = "lm"  # phone language model shaped like the prediction network, to pretrain it


class Cell(StrEnum):
    """``model.encoder.cell``: which LSTM cell the encoder stacks."""

    LSTM = "lstm"  # torch.nn.LSTM (cuDNN / oneDNN, fast)
    PEEPHOLE = "peephole"  # Graves's LSTM with peepholes, a Python loop over frames


def _check_int(owner: str, name: str, value: Any, low: int, high: int | None = None) -> None:
    """Raise ConfigError unless ``value`` is an int in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{owner}.{name} must be an integer, found {value!r} ({type(value).__name__})"
        )
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise ConfigError(f"{owner}.{name} must be {bound}, found {value}")


def _check_dropout(owner: str, value: Any) -> None:
    """Raise ConfigError unless ``value`` is a probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{owner}.dropout must be a number in [0, 1), found {value!r} ({type(value).__name__})"
        )
    if not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{owner}.dropout must be in [0, 1), found {value}")


@dataclass(frozen=True)
class EncoderConfig:
    """The transcription network: a stack of (B)LSTM layers over feature frames.

    Attributes:
        layers: number of stacked (B)LSTM layers (Graves 2013: 3 to 5).
        hidden: LSTM units per direction (Graves 2013: 250).
        bidirectional: run every layer forwards and backwards and concatenate (BLSTM).
        dropout: dropout probability on the outputs of every layer but the last (0 = off, as in
            the papers, which used weight noise instead).
        projection: if > 0, each direction's output is projected to this many units (LSTMP,
            Sak et al. 2014), shrinking the recurrent matrices; 0 = no projection.
        cell: ``"lstm"`` = ``torch.nn.LSTM`` (cuDNN / oneDNN, fast); ``"peephole"`` = Graves's
            LSTM with peephole connections, a Python loop over frames (the papers' exact
            cell; 5-12x slower on CPU, more on GPU).
        stack: frame stacking factor: concatenate ``stack`` consecutive frames and keep one in
            ``stack`` (frame rate / stack, faster training and decoding); 1 = off, as in the
            TIMIT recipes.
    """

    layers: int = 3
    hidden: int = 250
    bidirectional: bool = True
    dropout: float = 0.0
    projection: int = 0
    cell: Cell = Cell.LSTM
    stack: int = 1

    def __post_init__(self) -> None:
        _check_int("encoder", "layers", self.layers, 1, 64)
        _check_int("encoder", "hidden", self.hidden, 1, 65536)
        if not isinstance(self.bidirectional, bool):
            raise ConfigError(
                f"encoder.bidirectional must be true or false, found {self.bidirectional!r}"
            )
        _check_dropout("encoder", self.dropout)
        _check_int("encoder", "projection", self.projection, 0, 65536)
        if self.projection >= self.hidden:
            raise ConfigError(
                f"encoder.projection must be smaller than encoder.hidden ({self.hidden}), found "
                f"{self.projection}: use 0 for no projection"
            )
        object.__setattr__(self, "cell", choice(Cell, self.cell, "encoder.cell"))
        _check_int("encoder", "stack", self.stack, 1, 64)

    @property
    def output_dim(self) -> int:
        """Width H of the encoder output: (projection or hidden) x directions."""
        per_direction = self.projection or self.hidden
        return per_direction * (2 if self.bidirectional else 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML / JSON / checkpoint friendly); inverse of :meth:`from_dict`."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """Build from a plain dict; missing keys take their defaults.

        Raises:
            ConfigError: an unknown key (the message lists the valid ones) or a bad value.
        """
        return build(cls, data, prefix="model.encoder", source="model config")


@dataclass(frozen=True)
class PredictorConfig:
    """The prediction network (transducer) or phone language model: embedding + LSTM.

    Attributes:
        embed: size of the label embedding (the blank's row is the start symbol's).
        hidden: LSTM units (Graves 2013: 250).
        layers: stacked LSTM layers (Graves 2013: 1).
        dropout: dropout on the embedding and between LSTM layers (0 = off).
    """

    embed: int = 128
    hidden: int = 250
    layers: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_int("predictor", "embed", self.embed, 1, 65536)
        _check_int("predictor", "hidden", self.hidden, 1, 65536)
        _check_int("predictor", "layers", self.layers, 1, 64)
        _check_dropout("predictor", self.dropout)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; inverse of :meth:`from_dict`."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictorConfig:
        """Build from a plain dict; missing keys take their defaults.

        Raises:
            ConfigError: an unknown key (the message lists the valid ones) or a bad value.
        """
        return build(cls, data, prefix="model.predictor", source="model config")


@dataclass(frozen=True)
class ModelConfig:
    """Which model to build and its parts.

    Attributes:
        kind: ``"ctc"`` = encoder + linear to phones and blank; ``"transducer"`` = encoder +
            prediction network + joint (Graves 2012); ``"lm"`` = phone language model with the
            prediction network's architecture, to pretrain it (Graves 2013).
        encoder: the transcription network (unused by ``"lm"``).
        predictor: the prediction network / language model (unused by ``"ctc"``).
        joint_dim: width of the transducer's joint hidden layer ``tanh(W_f f + W_g g)``.
        fused_joint: compute the transducer's joint, log-softmax and loss together a chunk of
            frames at a time (:mod:`seqkit.losses.fused_joint`, in float32 even under
            autocast): no (B, T', U+1, V) logits or (B, T', U+1, J) hidden layer is held, for
            a second pass of the joint in the backward. Same results; it pays where those
            tensors are large (~5x less memory at V=500), not in speed (``seqkit bench
            profile``). Training only: decoding computes the joint as usual.
        joint_stride: transducer only: concatenate this many consecutive encoder outputs
            (zero-padding the last group, as ``encoder.stack`` pads input frames) before the
            joint, so the joint, its log-softmax and the loss see one frame in
            ``joint_stride`` (the (B, T', U+1, J) joint shrinks by that factor; ``W_f`` takes
            ``joint_stride`` x H_f inputs). Output frames are ``encoder.stack x joint_stride``
            input frames long (icefall and ESPnet transducers run the joint at 40 ms). 1 = off,
            today's model; the CTC and LM kinds ignore it, as they ignore the predictor.
        prune_range: transducer training only: run the joint on this many label positions per
            frame (S), chosen by a cheap additive joint's lattice (pruned RNN-T, Kuang et al.
            2022; :mod:`seqkit.losses.pruned`), instead of on all U+1: the joint's
            (B, T', U+1, J) work shrinks to (B, T', S, J). 0 = off (the full joint); at least 2.
            Adds the additive joint's two linear layers (``simple_f``, ``simple_g``), which PreTrans
            initializes from the CTC run's and the phone LM's output layers. Evaluation and
            decoding use the full joint.
        simple_loss_scale: with ``prune_range``, the training loss is the pruned loss plus this
            times the additive joint's own transducer loss (which trains it).
        ctc_loss_scale: transducer training only: add this times a CTC loss on the encoder's
            outputs through its own output layer (``ctc_output``, which PreTrans initializes
            from the CTC run's), as icefall's and ESPnet's transducers do. 0 = off.
    """

    kind: ModelKind = ModelKind.CTC
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    joint_dim: int = 250
    fused_joint: bool = False
    joint_stride: int = 1
    prune_range: int = 0
    simple_loss_scale: float = 0.5
    ctc_loss_scale: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", choice(ModelKind, self.kind, "model.kind"))
        if not isinstance(self.encoder, EncoderConfig):
            raise ConfigError(
                f"model.encoder must be an EncoderConfig, found {type(self.encoder).__name__}: "
                "use ModelConfig.from_dict for plain dicts"
            )
        if not isinstance(self.predictor, PredictorConfig):
            raise ConfigError(
                f"model.predictor must be a PredictorConfig, found "
                f"{type(self.predictor).__name__}: use ModelConfig.from_dict for plain dicts"
            )
        _check_int("model", "joint_dim", self.joint_dim, 1, 65536)
        _check_int("model", "joint_stride", self.joint_stride, 1, 64)
        _check_int("model", "prune_range", self.prune_range, 0, 65536)
        if self.prune_range == 1:
            raise ConfigError("model.prune_range must be 0 (off) or at least 2, found 1: one "
                              "label position per frame leaves no path through the lattice")
        if self.prune_range and self.fused_joint:
            raise ConfigError("model.prune_range and model.fused_joint are two ways to shrink "
                              "the joint: set one of them")
        for name in ("simple_loss_scale", "ctc_loss_scale"):
            scale = getattr(self, name)
            if isinstance(scale, bool) or not (isinstance(scale, (int, float))
                                               and 0 <= scale < float("inf")):
                raise ConfigError(f"model.{name} must be a number >= 0, found {scale!r}")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict ``{"kind", "encoder": {...}, "predictor": {...}, "joint_dim",
        "fused_joint", "joint_stride", "prune_range", "simple_loss_scale", "ctc_loss_scale"}``."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from :meth:`to_dict` output (or a TOML ``[model]`` table); missing keys default.

        Raises:
            ConfigError: an unknown key (the message lists the valid ones) or a bad value.
        """
        return build(cls, data, prefix="model", source="model config")
