"""Acoustic models (deep (B)LSTM-CTC, RNN transducer) and the phone LM that pretrains one.

Every acoustic model takes ``forward(feats (B, T, F), feat_lengths (B,), targets (B, U),
target_lengths (B,)) -> (B,)`` per-utterance negative log-likelihoods and has ``kind`` and
``output_stride``. :func:`build_model` makes one from a :class:`ModelConfig`;
:mod:`seqkit.models.checkpoint` saves and reloads them.
"""

from __future__ import annotations

from torch import nn

from seqkit.errors import ConfigError
from seqkit.models.config import Cell, EncoderConfig, ModelConfig, ModelKind, PredictorConfig
from seqkit.models.ctc import CTCModel
from seqkit.models.encoder import Encoder, PeepholeLSTM
from seqkit.models.lm import PhoneLM
from seqkit.models.transducer import Predictor, TransducerModel


def build_model(
    config: ModelConfig, *, input_dim: int, vocab_size: int, blank: int = 0
) -> nn.Module:
    """Build the model a config describes, with freshly initialized weights.

    Args:
        config: the :class:`ModelConfig` (``kind`` picks CTC, transducer or LM).
        input_dim: F, features per frame (``FeatureConfig.dim``; ignored by ``"lm"``).
        vocab_size: V, phones + blank (``len(vocabulary(phone_set))``).
        blank: blank index. Default 0.

    Returns:
        A :class:`CTCModel`, :class:`TransducerModel` or :class:`PhoneLM` in training mode.

    Raises:
        ConfigError: ``input_dim`` or ``vocab_size`` too small, or ``blank`` outside [0, V).
    """
    if not isinstance(config, ModelConfig):
        raise ConfigError(
            f"expected a ModelConfig, found {type(config).__name__}: use ModelConfig.from_dict"
        )
    if vocab_size < 2:
        raise ConfigError(f"expected vocab_size >= 2 (blank + phones), found {vocab_size}")
    if not 0 <= blank < vocab_size:
        raise ConfigError(f"expected blank in [0, {vocab_size}), found {blank}")
    if config.kind == ModelKind.LM:
        return PhoneLM(config, vocab_size=vocab_size, blank=blank)
    if input_dim < 1:
        raise ConfigError(f"expected input_dim >= 1 (features per frame), found {input_dim}")
    if config.kind == ModelKind.CTC:
        return CTCModel(config, input_dim=input_dim, vocab_size=vocab_size, blank=blank)
    return TransducerModel(config, input_dim=input_dim, vocab_size=vocab_size, blank=blank)


__all__ = [
    "CTCModel",
    "Cell",
    "Encoder",
    "EncoderConfig",
    "ModelConfig",
    "ModelKind",
    "PeepholeLSTM",
    "PhoneLM",
    "PredictorConfig",
    "Predictor",
    "TransducerModel",
    "build_model",
]
