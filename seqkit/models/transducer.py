"""RNN transducer: transcription network + prediction network + joint network.

Graves 2012, "Sequence Transduction with Recurrent Neural Networks"; the joint of Graves,
Mohamed & Hinton 2013 (Trans-3l-250h): ``logits = W_o tanh(W_f f_t + W_g g_u + b) + b_o``.
"""

from __future__ import annotations

import torch
from torch import nn

from seqkit.errors import TensorInputError
from seqkit.losses.ctc import ctc_loss
from seqkit.losses.fused_joint import fused_transducer_loss
from seqkit.losses.pruned import (
    band_width,
    lattice_nll,
    lattice_nll_and_bands,
    pruned_lattice,
    simple_lattice,
)
from seqkit.losses.transducer import transducer_loss
from seqkit.models.config import ModelConfig, ModelKind, PredictorConfig
from seqkit.models.encoder import Encoder, sequence_mask, stack_frames

LSTMState = tuple[torch.Tensor, torch.Tensor]


class Predictor(nn.Module):
    """Prediction network: label embedding + LSTM over the previous labels.

    The blank's embedding row serves as the start symbol. The same module, with an output layer,
    is the phone language model (:class:`seqkit.models.lm.PhoneLM`) whose weights pretrain it.

    Args:
        config: the :class:`PredictorConfig`.
        vocab_size: V, phones + blank.

    Attributes:
        output_dim: H, the LSTM's units.
    """

    def __init__(self, config: PredictorConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.output_dim = config.hidden
        self.embedding = nn.Embedding(vocab_size, config.embed)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            config.embed,
            config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )

    def forward(
        self, labels: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """Run over a batch of label sequences.

        Args:
            labels: (B, U) int64 label indices in [0, V) (the caller prepends the blank as the
                start symbol); padding at the end cannot affect valid outputs.
            state: (h, c), each (layers, B, H), from a previous call; None = zero state.

        Returns:
            (B, U, H) float outputs g and the new state (h, c).

        Raises:
            TensorInputError: ``labels`` is not (B, U) or holds an index outside [0, V).
        """
        if labels.dim() != 2:
            raise TensorInputError(
                f"expected labels (B, U), found {tuple(labels.shape)}: add a batch axis"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.vocab_size):
            raise TensorInputError(
                f"expected label indices in [0, {self.vocab_size}), found "
                f"{int(labels.min())}..{int(labels.max())}: is the vocabulary the model's?"
            )
        x = self.dropout(self.embedding(labels))  # (B, U, E)
        g, state = self.lstm(x, state)  # (B, U, H)
        return g, state


def start_with_blank(
    targets: torch.Tensor, target_lengths: torch.Tensor, blank: int
) -> torch.Tensor:
    """Prepend the blank start symbol and replace padding by the blank.

    Args:
        targets: (B, U) int64, padded with any value.
        target_lengths: (B,) int64.
        blank: blank index.

    Returns:
        (B, U + 1) int64: ``[blank, y_1, ..., y_U]`` with blanks past each length.
    """
    valid = sequence_mask(target_lengths.to(targets.device), targets.shape[1])  # (B, U)
    clean = torch.where(valid, targets.long(), torch.full_like(targets, blank, dtype=torch.long))
    start = clean.new_full((targets.shape[0], 1), blank)
    return torch.cat([start, clean], dim=1)  # (B, U + 1)


class TransducerModel(nn.Module):
    """RNN transducer (Graves 2012) with the joint of Graves et al. 2013.

    Args:
        config: model config with ``kind="transducer"``.
        input_dim: F, features per frame.
        vocab_size: V, phones + blank.
        blank: blank index (also the prediction network's start symbol). Default 0.

    Attributes:
        kind: ``"transducer"``.
        output_stride: input frames per output frame of :meth:`encode`, the frames the joint
            and the loss see (the encoder's ``stack`` x ``config.joint_stride``).
        encoder: transcription network (:class:`Encoder`), output (B, T_enc, H_enc).
        predictor: prediction network (:class:`Predictor`), output (B, U, H_g).
    """

    kind = ModelKind.TRANSDUCER

    def __init__(self, config: ModelConfig, *, input_dim: int, vocab_size: int, blank: int = 0):
        super().__init__()
        self.config = config
        self.blank = blank
        self.vocab_size = vocab_size
        self.encoder = Encoder(config.encoder, input_dim)
        self.predictor = Predictor(config.predictor, vocab_size)
        self.output_stride = self.encoder.output_stride * config.joint_stride
        # W_f and b, over joint_stride encoder outputs side by side: H_f = joint_stride x H_enc
        self.joint_f = nn.Linear(self.encoder.output_dim * config.joint_stride, config.joint_dim)
        self.joint_g = nn.Linear(self.predictor.output_dim, config.joint_dim, bias=False)  # W_g
        self.joint_out = nn.Linear(config.joint_dim, vocab_size)  # W_o and b_o
        if config.prune_range:
            # the additive joint am(t) + lm(u) that chooses the pruned joint's label positions
            self.simple_f = nn.Linear(self.joint_f.in_features, vocab_size)
            self.simple_g = nn.Linear(self.predictor.output_dim, vocab_size)
        if config.ctc_loss_scale:
            # a CTC model's output layer on the encoder, for the auxiliary CTC loss
            self.ctc_output = nn.Linear(self.encoder.output_dim, vocab_size)

    def encode(
        self, feats: torch.Tensor, feat_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transcription network, then ``joint_stride`` of its outputs concatenated per frame.

        Args:
            feats: (B, T, F) float, padded at the end.
            feat_lengths: (B,) int64 valid frames.

        Returns:
            f (B, T', H_f) float, zero past each length, and (B,) int64 output lengths
            ``ceil(feat_lengths / output_stride)`` (T' = ceil(T / output_stride),
            H_f = ``joint_stride`` x the encoder's H).

        Raises:
            TensorInputError: the features do not fit the model.
        """
        return self.joint_frames(*self.encoder(feats, feat_lengths))

    def joint_frames(
        self, h: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The joint's frames from the encoder's outputs h (B, T_enc, H_enc), zero past
        ``lengths``: the encoder's frame stacking again, ``joint_stride`` outputs side by side;
        f (B, T', joint_stride * H_enc) and (B,) int64 lengths."""
        return stack_frames(h, lengths, self.config.joint_stride)

    def predict(
        self, labels: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """Prediction network over previous labels (the caller prepends the blank as start).

        Args:
            labels: (B, U) int64 label indices.
            state: LSTM state (h, c) from a previous call, or None to start.

        Returns:
            g (B, U, H_g) float and the new state.

        Raises:
            TensorInputError: bad label shape or index.
        """
        return self.predictor(labels, state)

    def joint(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Joint network ``W_o tanh(W_f f + W_g g + b) + b_o``, broadcasting f against g.

        Args:
            f: (..., H_f) encoder output, e.g. (B, T, 1, H_f).
            g: (..., H_g) prediction output, e.g. (B, 1, U+1, H_g).

        Returns:
            (..., V) unnormalized logits over the broadcast shape, e.g. (B, T, U+1, V).
        """
        # project before broadcasting, so each linear runs on T or U+1 rows, not T x (U+1)
        hidden = torch.tanh(self.joint_f(f) + self.joint_g(g))  # (B, T, U+1, J)
        return self.joint_out(hidden)  # (B, T, U+1, V)

    def forward(
        self,
        feats: torch.Tensor,
        feat_lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Per-utterance transducer negative log-likelihood.

        Args:
            feats: (B, T, F) float, padded at the end.
            feat_lengths: (B,) int64 valid frames.
            targets: (B, U) int64 phone indices (never the blank), padded with any value.
            target_lengths: (B,) int64 valid labels.

        Returns:
            (B,) float32 negative log-likelihood of each utterance (summed, not normalized); in
            training mode plus the pruned model's additive-joint loss and the auxiliary CTC loss,
            each scaled as configured.

        Raises:
            TensorInputError: the inputs do not fit the model, or (LossInputError) the loss.
        """
        if targets.dim() != 2 or targets.shape[0] != feats.shape[0]:
            raise TensorInputError(
                f"expected targets (B, U) with B = {feats.shape[0]}, found {tuple(targets.shape)}"
            )
        h, enc_lengths = self.encoder(feats, feat_lengths)  # (B, T_enc, H_enc)
        f, out_lengths = self.joint_frames(h, enc_lengths)  # as encode(), keeping h for CTC
        target_lengths = target_lengths.to(device=targets.device, dtype=torch.long)
        # trim both axes to the longest valid sequence: the joint is (B, T', U+1, V)
        frames = int(out_lengths.max()) if out_lengths.numel() else 0
        labels = int(target_lengths.max()) if target_lengths.numel() else 0
        f = f[:, :frames]
        labels_in = start_with_blank(targets[:, :labels], target_lengths, self.blank)  # (B, U+1)
        g, _ = self.predict(labels_in)  # (B, U+1, H_g)
        if self.config.prune_range and self.training:
            loss = self._pruned_loss(f, g, labels_in[:, 1:], out_lengths, target_lengths)
        elif self.config.fused_joint:
            # joint + log-softmax + loss a chunk of frames at a time: no (B, T', U+1, V) tensor
            loss = fused_transducer_loss(
                self.joint_f(f), self.joint_g(g), self.joint_out.weight, self.joint_out.bias,
                labels_in[:, 1:], out_lengths, target_lengths, blank=self.blank,
            ).float()
        else:
            logits = self.joint(f.unsqueeze(2), g.unsqueeze(1)).float()  # (B, T', U+1, V)
            loss = transducer_loss(
                logits,
                labels_in[:, 1:].to(torch.int32),  # (B, U), padding replaced by the blank
                out_lengths.to(torch.int32),
                target_lengths.to(torch.int32),
                blank=self.blank,
                reduction="none",
            )
        if self.config.ctc_loss_scale and self.training:
            loss = loss + self.config.ctc_loss_scale * self.auxiliary_ctc_nll(
                h, enc_lengths, labels_in[:, 1:], target_lengths)
        return loss

    def auxiliary_ctc_nll(
        self, h: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """CTC loss of the encoder outputs h (B, T_enc, H_enc) through ``ctc_output``, per
        utterance (B,) float32; 0 where the utterance has too few frames for its labels."""
        log_probs = self.ctc_output(h).float().log_softmax(dim=-1)  # (B, T_enc, V)
        return ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_lengths,
                        blank=self.blank, reduction="none", zero_infinity=True)

    def _pruned_loss(
        self, f: torch.Tensor, g: torch.Tensor, targets: torch.Tensor,
        out_lengths: torch.Tensor, target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Pruned loss (the joint on ``prune_range`` label positions per frame) plus
        ``simple_loss_scale`` x the additive joint's loss, per utterance (B,) float32."""
        blank_lp, emit_lp = simple_lattice(self.simple_f(f), self.simple_g(g), targets,
                                           blank=self.blank)
        width = band_width(self.config.prune_range, out_lengths, target_lengths, g.shape[1])
        simple, starts = lattice_nll_and_bands(blank_lp, emit_lp, out_lengths, target_lengths,
                                               width)
        blank_lp, emit_lp = pruned_lattice(
            lambda z: self.joint_out(torch.tanh(z)), self.joint_f(f), self.joint_g(g), targets,
            starts, width, blank=self.blank)
        pruned = lattice_nll(blank_lp, emit_lp, out_lengths, target_lengths)
        return (pruned + self.config.simple_loss_scale * simple).float()
