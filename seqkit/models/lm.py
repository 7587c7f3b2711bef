"""Phone language model with the prediction network's architecture.

Graves, Mohamed & Hinton 2013 pretrain the transducer's prediction network as a language model
on the training transcriptions (PreTrans-3l-250h); :func:`seqkit.models.checkpoint.
init_from_pretrained` with ``part="predictor"`` copies this model's ``predictor`` into a
transducer.
"""

from __future__ import annotations

import torch
from torch import nn

from seqkit.errors import TensorInputError
from seqkit.models.config import ModelConfig, ModelKind
from seqkit.models.encoder import sequence_mask
from seqkit.models.transducer import Predictor, start_with_blank


class PhoneLM(nn.Module):
    """Next-phone predictor: the transducer's :class:`Predictor` + linear layer to V.

    The sequence starts with the blank symbol and ends by predicting the blank as
    end-of-sequence, so the model scores whole transcriptions.

    Args:
        config: model config with ``kind="lm"`` (only ``config.predictor`` is used).
        vocab_size: V, phones + blank.
        blank: blank index (start and end symbol). Default 0.

    Attributes:
        kind: ``"lm"``.
        output_stride: 1 (no acoustic frames; kept so every model has the attribute).
    """

    kind = ModelKind.LM
    output_stride = 1

    def __init__(self, config: ModelConfig, *, vocab_size: int, blank: int = 0) -> None:
        super().__init__()
        self.config = config
        self.blank = blank
        self.vocab_size = vocab_size
        self.predictor = Predictor(config.predictor, vocab_size)
        self.output = nn.Linear(self.predictor.output_dim, vocab_size)

    def log_probs(self, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
        """Next-label log-probabilities after the start symbol and each label.

        Args:
            targets: (B, U) int64 phone indices, padded with any value.
            target_lengths: (B,) int64 valid labels.

        Returns:
            (B, U + 1, V) float32: row u is the distribution of label u + 1 (row U_b is the
            end-of-sequence, i.e. blank, position of utterance b).
        """
        labels_in = start_with_blank(targets, target_lengths, self.blank)  # (B, U+1)
        g, _ = self.predictor(labels_in)  # (B, U+1, H)
        return self.output(g).float().log_softmax(dim=-1)  # (B, U+1, V)

    def forward(self, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
        """Per-sequence negative log-likelihood, end-of-sequence included.

        Args:
            targets: (B, U) int64 phone indices (never the blank), padded with any value.
            target_lengths: (B,) int64 valid labels.

        Returns:
            (B,) float32 negative log-likelihood of each sequence (sum over its U_b + 1
            predictions, not normalized).

        Raises:
            TensorInputError: bad shapes or label indices.
        """
        if targets.dim() != 2:
            raise TensorInputError(
                f"expected targets (B, U), found {tuple(targets.shape)}: add a batch axis"
            )
        target_lengths = target_lengths.to(device=targets.device, dtype=torch.long)
        log_probs = self.log_probs(targets, target_lengths)  # (B, U+1, V)
        batch, steps, _ = log_probs.shape
        # gold next labels: y_1..y_U then the blank as end of sequence (and past it)
        labels_in = start_with_blank(targets, target_lengths, self.blank)  # (B, U+1)
        gold = torch.cat([labels_in[:, 1:], labels_in.new_full((batch, 1), self.blank)], dim=1)
        picked = log_probs.gather(2, gold.unsqueeze(-1)).squeeze(-1)  # (B, U+1)
        valid = sequence_mask(target_lengths + 1, steps)  # (B, U+1)
        return -(picked * valid.to(picked.dtype)).sum(dim=1)
