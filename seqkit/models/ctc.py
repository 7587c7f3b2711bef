"""CTC acoustic model: (B)LSTM encoder + linear layer to phones and blank.

Graves, Fernández, Gomez & Schmidhuber 2006, "Connectionist Temporal Classification"; deep
BLSTM-CTC as in Graves, Mohamed & Hinton 2013 (CTC-3l-250h).
"""

from __future__ import annotations

import torch
from torch import nn

from seqkit.losses.ctc import ctc_loss
from seqkit.models.config import ModelConfig, ModelKind
from seqkit.models.encoder import Encoder, sequence_mask


class CTCModel(nn.Module):
    """Encoder + linear output layer over V classes (index ``blank`` is the CTC blank).

    Args:
        config: model config with ``kind="ctc"``.
        input_dim: F, features per frame.
        vocab_size: V, phones + blank.
        blank: blank index. Default 0.

    Attributes:
        kind: ``"ctc"``.
        output_stride: input frames per output frame (the encoder's ``stack``).
    """

    kind = ModelKind.CTC

    def __init__(self, config: ModelConfig, *, input_dim: int, vocab_size: int, blank: int = 0):
        super().__init__()
        self.config = config
        self.blank = blank
        self.vocab_size = vocab_size
        self.encoder = Encoder(config.encoder, input_dim)
        self.output = nn.Linear(self.encoder.output_dim, vocab_size)
        self.output_stride = self.encoder.output_stride

    def log_probs(
        self, feats: torch.Tensor, feat_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame log-probabilities over phones and blank.

        Args:
            feats: (B, T, F) float, padded at the end.
            feat_lengths: (B,) int64 valid frames.

        Returns:
            (B, T', V) float32 log-probabilities (T' = ceil(T / stack)) and (B,) int64 output
            lengths.

        Raises:
            TensorInputError: the features do not fit the model (shape or lengths).
        """
        h, out_lengths = self.encoder(feats, feat_lengths)  # (B, T', H)
        logits = self.output(h).float()  # (B, T', V); float32 even under autocast
        return logits.log_softmax(dim=-1), out_lengths

    def forward(
        self,
        feats: torch.Tensor,
        feat_lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Per-utterance CTC negative log-likelihood.

        Args:
            feats: (B, T, F) float, padded at the end.
            feat_lengths: (B,) int64 valid frames.
            targets: (B, U) int64 phone indices (never the blank), padded with any value.
            target_lengths: (B,) int64 valid labels.

        Returns:
            (B,) float32 negative log-likelihood of each utterance (summed over its labels, not
            normalized; ``inf`` if the utterance has fewer frames than its labels need).

        Raises:
            TensorInputError: the inputs do not fit the model, or (LossInputError) the loss.
        """
        log_probs, out_lengths = self.log_probs(feats, feat_lengths)  # (B, T', V)
        target_lengths = target_lengths.to(device=targets.device, dtype=torch.long)
        # padding may hold any value (e.g. -1); the loss only needs valid indices there
        valid = sequence_mask(target_lengths, targets.shape[1])  # (B, U)
        targets = torch.where(valid, targets.long(), self.blank)
        return ctc_loss(
            log_probs.transpose(0, 1),  # (T', B, V)
            targets,
            out_lengths,
            target_lengths,
            blank=self.blank,
            reduction="none",
        )
