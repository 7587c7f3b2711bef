"""What the transducer searches need from a model, and the batch layout of its state.

The searches never look inside a model: they call ``predict`` and ``joint``. Writing that down as
a :class:`typing.Protocol` lets any module with those two methods be searched (the seqkit
:class:`~seqkit.models.transducer.TransducerModel`, a test's tiny model, an exported one), and
fixes the prediction state's layout, so the batched searches select hypotheses on a known axis
instead of guessing it from a tensor's rank.
"""

from __future__ import annotations

from typing import Protocol

import torch

from seqkit.models.transducer import LSTMState

# the batch axis of every tensor in an LSTMState: torch's LSTM layout (layers, B, H)
STATE_BATCH_AXIS = 1


class TransducerLike(Protocol):
    """A transducer model as the searches call it (Graves 2012).

    ``predict`` is the prediction network over a batch of label sequences, ``joint`` the joint
    network broadcasting encoder output against prediction output.
    """

    def predict(
        self, labels: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """labels (N, U) int64 -> g (N, U, H_g) and the new state (h, c), each (layers, N, H)."""
        ...

    def joint(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """f (..., H_f) and g (..., H_g), broadcast -> unnormalized logits (..., V)."""
        ...


def select_state(state: LSTMState, index: torch.Tensor) -> LSTMState:
    """The hypotheses ``index`` (N',) of a prediction state: (layers, N, H) -> (layers, N', H)."""
    h, c = state
    return h.index_select(STATE_BATCH_AXIS, index), c.index_select(STATE_BATCH_AXIS, index)


class CTCLike(Protocol):
    """A CTC model as decoding calls it."""

    def log_probs(
        self, feats: torch.Tensor, feat_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, F) -> log-probabilities (B, T', V) and output lengths (B,)."""
        ...


class TransducerAcoustic(TransducerLike, Protocol):
    """A transducer model as recognition calls it: the searches' two methods and the encoder."""

    def encode(
        self, feats: torch.Tensor, feat_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, F) -> encoder output f (B, T', H_f) and output lengths (B,)."""
        ...
