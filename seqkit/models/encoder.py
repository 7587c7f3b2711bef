"""The transcription network: a stack of LSTM or bidirectional LSTM layers over feature frames.

Every bidirectional layer is two unidirectional recurrent nets. The forward one runs over the
padded batch as it is (padding sits at the end, so it cannot reach a valid output); the backward
one runs over each sequence reversed *within its own length* (a gather index, so padding stays
at the end) and its outputs are reversed back. This gives the same valid outputs as running each
utterance alone, without ``PackedSequence``, whose backward pass is about 10x slower on CPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from seqkit.errors import ConfigError, TensorInputError
from seqkit.models.config import Cell, EncoderConfig


class PeepholeLSTM(nn.Module):
    """Graves's LSTM with peephole connections, one direction, batch first.

    Graves, Mohamed & Hinton 2013, eq. 3-7: the input and forget gates see the previous cell
    state and the output gate sees the new one through diagonal ("peephole") weights:

        i = sigmoid(W_xi x + W_hi h + w_ci * c_prev + b_i)
        f = sigmoid(W_xf x + W_hf h + w_cf * c_prev + b_f)
        c = f * c_prev + i * tanh(W_xc x + W_hc h + b_c)
        o = sigmoid(W_xo x + W_ho h + w_co * c + b_o)
        h = o * tanh(c)            (then h = W_hr h if ``projection`` > 0)

    The input part of every gate is one matrix product over all frames; the recurrence is a
    Python loop over frames, so this cell is much slower than ``torch.nn.LSTM`` (which has no
    peepholes): forward + backward of a 3 x 192 BLSTM encoder took 5-12x as long on a 2-core CPU
    (B=8, T=200: 2.45 s vs 0.43 s), and the gap is wider on GPU, where cuDNN fuses the loop. Use
    it to reproduce the papers' exact cell, not for speed.

    Args:
        input_size: F, features per input frame.
        hidden: H, cell units.
        projection: if > 0, the output h is projected to this many units (fed back too).
    """

    def __init__(self, input_size: int, hidden: int, projection: int = 0) -> None:
        super().__init__()
        self.hidden = hidden
        self.output_size = projection or hidden
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden, self.output_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden))
        self.peephole = nn.Parameter(torch.empty(3, hidden))  # rows: w_ci, w_cf, w_co
        self.weight_hr = nn.Parameter(torch.empty(projection, hidden)) if projection else None
        bound = 1.0 / math.sqrt(hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the cell over all frames.

        Args:
            x: (B, T, F) float.

        Returns:
            (B, T, H) float outputs (H = ``projection`` or ``hidden``), zero initial state.
        """
        return self.step(x, None)[0]

    def step(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the cell over frames from a given state (streaming carries it between chunks).

        Args:
            x: (B, T, F) float.
            state: (h (B, H), c (B, hidden)) after the previous frames; None = zero state.

        Returns:
            (B, T, H) float outputs and the state after the last frame.
        """
        batch, frames, _ = x.shape
        # input contribution of all four gates for all frames at once: (B, T, 4H)
        gates_x = torch.nn.functional.linear(x, self.weight_ih, self.bias)
        if state is None:
            h = x.new_zeros(batch, self.output_size)
            c = x.new_zeros(batch, self.hidden)
        else:
            h, c = state
        w_ci, w_cf, w_co = self.peephole[0], self.peephole[1], self.peephole[2]
        outputs = []
        for t in range(frames):
            gates = gates_x[:, t] + h @ self.weight_hh.t()  # (B, 4H)
            gi, gf, gc, go = gates.chunk(4, dim=1)  # each (B, H)
            i = torch.sigmoid(gi + w_ci * c)
            f = torch.sigmoid(gf + w_cf * c)
            c = f * c + i * torch.tanh(gc)
            o = torch.sigmoid(go + w_co * c)
            h = o * torch.tanh(c)
            if self.weight_hr is not None:
                h = h @ self.weight_hr.t()  # (B, P)
            outputs.append(h)
        if not outputs:
            return x.new_zeros(batch, 0, self.output_size), (h, c)
        return torch.stack(outputs, dim=1), (h, c)  # (B, T, H)


class _LSTM(nn.Module):
    """``torch.nn.LSTM`` (one layer, one direction, batch first) returning only the outputs."""

    def __init__(self, input_size: int, hidden: int, projection: int = 0) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden, batch_first=True, proj_size=projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, T, H)."""
        return self.rnn(x)[0]

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(B, T, F) from ``state`` ((1, B, H), (1, B, hidden); None = zero) -> outputs, state."""
        return self.rnn(x, state)


def _make_direction(cell: Cell, input_size: int, hidden: int, projection: int) -> nn.Module:
    """One layer in one direction of the given cell type."""
    if cell == Cell.PEEPHOLE:
        return PeepholeLSTM(input_size, hidden, projection)
    return _LSTM(input_size, hidden, projection)


def reverse_index(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """Index that reverses each sequence within its own length, leaving padding in place.

    Args:
        lengths: (B,) int, valid frames per sequence (each <= ``frames``).
        frames: T, the padded length.

    Returns:
        (B, T) int64 with ``idx[b, t] = lengths[b] - 1 - t`` for ``t < lengths[b]`` and ``t``
        elsewhere; applying it twice (``gather``) is the identity.
    """
    t = torch.arange(frames, device=lengths.device).unsqueeze(0)  # (1, T)
    lengths = lengths.unsqueeze(1)  # (B, 1)
    return torch.where(t < lengths, lengths - 1 - t, t)  # (B, T)


class EncoderLayer(nn.Module):
    """One (B)LSTM layer: forward direction, and backward direction if bidirectional."""

    def __init__(
        self, input_size: int, hidden: int, *, bidirectional: bool, projection: int, cell: Cell
    ) -> None:
        super().__init__()
        self.forward_rnn = _make_direction(cell, input_size, hidden, projection)
        self.backward_rnn = (
            _make_direction(cell, input_size, hidden, projection) if bidirectional else None
        )

    def forward(self, x: torch.Tensor, reverse: torch.Tensor | None) -> torch.Tensor:
        """Run both directions.

        Args:
            x: (B, T, F) float, padding at the end of each sequence.
            reverse: (B, T) int64 from :func:`reverse_index` (needed if bidirectional).

        Returns:
            (B, T, H) or (B, T, 2H) float; values at padded frames are meaningless.
        """
        out = self.forward_rnn(x)  # (B, T, H)
        if self.backward_rnn is None:
            return out
        if reverse is None:
            raise TensorInputError("a bidirectional layer needs the reverse index: pass lengths")
        index_in = reverse.unsqueeze(-1).expand(-1, -1, x.shape[-1])  # (B, T, F)
        back = self.backward_rnn(x.gather(1, index_in))  # (B, T, H), time-reversed
        index_out = reverse.unsqueeze(-1).expand(-1, -1, back.shape[-1])  # (B, T, H)
        back = back.gather(1, index_out)  # back in forward time
        return torch.cat([out, back], dim=-1)  # (B, T, 2H)


def stack_frames(
    feats: torch.Tensor, feat_lengths: torch.Tensor, stack: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``stack`` consecutive frames and keep one in ``stack``.

    Args:
        feats: (B, T, F) float; frames at or past each length should be zero (the encoder
            zeroes them) so that a padded batch gives the per-utterance result.
        feat_lengths: (B,) int64.
        stack: stacking factor (1 returns the inputs unchanged).

    Returns:
        (B, ceil(T / stack), stack * F) stacked frames (the last group zero-padded) and
        (B,) lengths ``ceil(feat_lengths / stack)``.
    """
    if stack == 1:
        return feats, feat_lengths
    batch, frames, dim = feats.shape
    groups = -(-frames // stack)
    pad = groups * stack - frames
    if pad:
        feats = torch.nn.functional.pad(feats, (0, 0, 0, pad))  # (B, groups * stack, F)
    stacked = feats.reshape(batch, groups, stack * dim)  # (B, T / stack, stack * F)
    return stacked, torch.div(feat_lengths + stack - 1, stack, rounding_mode="floor")


class StreamStacker:
    """:func:`stack_frames` for one stream whose frames arrive in pieces.

    Frames wait until ``stack`` of them complete a group; at the end of the stream the last
    group is zero-padded as :func:`stack_frames` pads it, so the groups of all pieces together
    are those of :func:`stack_frames` on the whole stream.

    Args:
        stack: stacking factor (1 passes frames through).
        dim: F, features per incoming frame.
    """

    def __init__(self, stack: int, dim: int) -> None:
        self.stack = stack
        self.pending = torch.zeros(0, dim)  # (n < stack, F) frames waiting to fill a group

    def push(self, frames: torch.Tensor, *, final: bool = False) -> torch.Tensor:
        """(n, F) next frames -> (m, stack * F) groups now complete (all of them if ``final``)."""
        frames = torch.cat([self.pending.to(frames.dtype), frames])  # (n, F)
        ready = frames.shape[0] if final else frames.shape[0] - frames.shape[0] % self.stack
        self.pending = frames[ready:]
        length = torch.tensor([ready])
        stacked, _ = stack_frames(frames[None, :ready], length, self.stack)  # (1, m, stack * F)
        return stacked[0]


def sequence_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool, True at valid frames."""
    return torch.arange(frames, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


class Encoder(nn.Module):
    """Stack of LSTM / BLSTM layers with optional frame stacking, projection and dropout.

    Args:
        config: the encoder's :class:`EncoderConfig`.
        input_dim: F, features per input frame (123 for fbank123).

    Attributes:
        output_dim: H of the output (``config.output_dim``).
        output_stride: input frames per output frame (``config.stack``).
    """

    def __init__(self, config: EncoderConfig, input_dim: int) -> None:
        super().__init__()
        self.config = config
        self.input_dim = input_dim
        self.output_dim = config.output_dim
        self.output_stride = config.stack
        layers = []
        size = input_dim * config.stack
        for _ in range(config.layers):
            layers.append(
                EncoderLayer(
                    size,
                    config.hidden,
                    bidirectional=config.bidirectional,
                    projection=config.projection,
                    cell=config.cell,
                )
            )
            size = config.output_dim
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, feats: torch.Tensor, feat_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch.

        Args:
            feats: (B, T, F) float, normalized features padded at the end.
            feat_lengths: (B,) int64, valid frames per utterance (<= T).

        Returns:
            (B, T', H) float encoder output (T' = ceil(T / stack)), zero at padded frames, and
            (B,) int64 output lengths ``ceil(feat_lengths / stack)`` on the same device.

        Raises:
            TensorInputError: ``feats`` is not (B, T, F) with this encoder's F, or the lengths do
                not fit the batch.
        """
        if feats.dim() != 3 or feats.shape[-1] != self.input_dim:
            raise TensorInputError(
                f"expected feats (B, T, {self.input_dim}), found {tuple(feats.shape)}: "
                "were the features computed with the model's feature config?"
            )
        batch, frames, _ = feats.shape
        feat_lengths = feat_lengths.to(device=feats.device, dtype=torch.long)
        if feat_lengths.shape != (batch,):
            raise TensorInputError(
                f"expected feat_lengths ({batch},), found {tuple(feat_lengths.shape)}: "
                "pass one length per utterance"
            )
        if batch and (int(feat_lengths.min()) < 0 or int(feat_lengths.max()) > frames):
            raise TensorInputError(
                f"expected feat_lengths in [0, {frames}], found "
                f"{int(feat_lengths.min())}..{int(feat_lengths.max())}: lengths must not exceed "
                "the padded time axis"
            )
        # zero the padding so that frame stacking sees what a per-utterance run sees
        x = feats * sequence_mask(feat_lengths, frames).unsqueeze(-1).to(feats.dtype)
        x, lengths = stack_frames(x, feat_lengths, self.config.stack)  # (B, T', stack * F)
        reverse = reverse_index(lengths, x.shape[1]) if self.config.bidirectional else None
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            x = layer(x, reverse)  # (B, T', H)
        mask = sequence_mask(lengths, x.shape[1]).unsqueeze(-1)  # (B, T', 1)
        return x * mask.to(x.dtype), lengths

    def forward_chunk(
        self, stacked: torch.Tensor, states: list[Any] | None
    ) -> tuple[torch.Tensor, list[Any]]:
        """Continue a unidirectional encoder over the next frames of one stream.

        Running the chunks of an utterance one after another, each from the state the previous
        one left, gives the outputs of :meth:`forward` on the whole utterance (eval mode).

        Args:
            stacked: (B, T', stack * F) float, normalized frames already stacked ``stack`` to a
                step (zero-padded at the end of the stream, as :func:`stack_frames` pads).
            states: per layer, the state returned by the previous call; None to start.

        Returns:
            (B, T', H) float outputs and the per-layer states to pass to the next call.

        Raises:
            ConfigError: the encoder is bidirectional (its outputs need the whole utterance).
        """
        if self.config.bidirectional:
            raise ConfigError(
                "a bidirectional encoder needs the whole utterance before its first output: "
                "stream with a unidirectional model (e.g. recipes/synth/ctc_lstm_stream.toml)"
            )
        states = states if states is not None else [None] * len(self.layers)
        x = stacked
        new_states = []
        for k, (layer, state) in enumerate(zip(self.layers, states, strict=True)):
            if k > 0:
                x = self.dropout(x)
            x, state = layer.forward_rnn.step(x, state)  # (B, T', H)
            new_states.append(state)
        return x, new_states
