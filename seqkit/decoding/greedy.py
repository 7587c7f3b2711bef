"""Greedy (best-path) decoding for CTC and transducer models.

Both decoders take the model's outputs as tensors, never the audio, so training can call them on
a dev batch it has already encoded and decoding can reuse them after its own front end.
"""

from __future__ import annotations

import torch

from seqkit.decoding.protocol import TransducerLike
from seqkit.errors import ConfigError, TensorInputError

CTC_INPUT = ("log_probs (B, T, V)", "pass the CTC model's log_probs output (batch first)")
TRANSDUCER_INPUT = ("encoder output f (B, T, H)", "pass model.encode(...)[0]")


def checked_lengths(
    x: torch.Tensor, lengths: torch.Tensor, what: str, expected: tuple[str, str]
) -> list[int]:
    """Check a search input (3-D, batch first) and its lengths; the lengths as a Python list.

    Args:
        x: (B, T, ·) log-probs or encoder output.
        lengths: (B,) valid frames per utterance.
        what: the calling search, for the message.
        expected: :data:`CTC_INPUT` or :data:`TRANSDUCER_INPUT` (what ``x`` should be, and how).

    Raises:
        TensorInputError: ``x`` is not 3-D, or the lengths do not fit it.
    """
    if x.dim() != 3:
        raise TensorInputError(f"expected {expected[0]}, found {tuple(x.shape)}: {expected[1]}")
    batch, frames = x.shape[0], x.shape[1]
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise TensorInputError(
            f"expected lengths (B,) = ({batch},) for {what}, found {tuple(lengths.shape)}: "
            "pass one length per utterance"
        )
    out = [int(v) for v in lengths.tolist()]
    if out and (min(out) < 0 or max(out) > frames):
        raise TensorInputError(
            f"expected lengths in [0, {frames}] for {what}, found {min(out)}..{max(out)}: "
            "lengths must not exceed the padded time axis"
        )
    return out


def check_max_symbols(max_symbols_per_frame: int) -> None:
    """Refuse a per-frame label cap below 1 (the transducer searches' ``max_symbols_per_frame``).

    Raises:
        ConfigError: if ``max_symbols_per_frame`` < 1.
    """
    if max_symbols_per_frame < 1:
        raise ConfigError(
            f"expected max_symbols_per_frame >= 1, found {max_symbols_per_frame}: use 1 or more"
        )


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path CTC decoding: argmax per frame, merge repeats, drop blanks.

    Graves et al. 2006, "Connectionist Temporal Classification", section 3.2 (best path).

    Args:
        log_probs: (B, T, V) float, log-probabilities (or any scores whose argmax is wanted).
        lengths: (B,) int, valid frames per utterance.
        blank: index of the blank symbol. Default 0.

    Returns:
        One list of label indices (blank excluded) per utterance.

    Raises:
        TensorInputError: if the shapes or lengths do not fit.
    """
    valid = checked_lengths(log_probs, lengths, "ctc_greedy", CTC_INPUT)
    batch = log_probs.shape[0]
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    out: list[list[int]] = []
    for b in range(batch):
        path = best[b, : valid[b]]
        if path.numel() == 0:
            out.append([])
            continue
        # keep a frame if it differs from the previous one, then drop blanks
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        labels = path[keep]
        out.append([int(x) for x in labels[labels != blank].tolist()])
    return out


def transducer_greedy(
    model: TransducerLike,
    f: torch.Tensor,
    lengths: torch.Tensor,
    blank: int = 0,
    max_symbols_per_frame: int = 5,
) -> list[list[int]]:
    """Greedy transducer decoding: at each frame emit the argmax label until blank wins.

    Graves 2012, "Sequence Transduction with Recurrent Neural Networks". The prediction network
    runs only when a label is emitted; ``max_symbols_per_frame`` bounds the emissions per frame so
    an untrained model cannot loop forever.

    Args:
        model: a transducer model (:class:`~seqkit.decoding.protocol.TransducerLike`).
        f: (B, T, H) float, encoder output (``model.encode``).
        lengths: (B,) int, valid encoder frames per utterance.
        blank: index of the blank symbol (also the prediction network's start symbol). Default 0.
        max_symbols_per_frame: most labels emitted at one frame. Default 5.

    Returns:
        One list of label indices (blank excluded) per utterance.

    Raises:
        TensorInputError: if the shapes or lengths do not fit.
        ConfigError: if ``max_symbols_per_frame`` < 1.
    """
    valid = checked_lengths(f, lengths, "transducer_greedy", TRANSDUCER_INPUT)
    check_max_symbols(max_symbols_per_frame)
    out: list[list[int]] = []
    with torch.no_grad():
        for b in range(f.shape[0]):
            search = TransducerGreedySearch(
                model, blank=blank, max_symbols_per_frame=max_symbols_per_frame, device=f.device
            )
            search.step(f[b, : valid[b]])
            out.append(search.labels)
    return out


class CTCGreedySearch:
    """:func:`ctc_greedy` over one stream of frames, a chunk at a time (same labels)."""

    def __init__(self, blank: int = 0) -> None:
        self.blank = blank
        self.previous: int | None = None  # the last frame's best symbol
        self.labels: list[int] = []

    def step(self, log_probs: torch.Tensor) -> list[int]:
        """(T, V) log-probs of the next frames -> the labels they decide (final at once)."""
        new: list[int] = []
        for k in log_probs.argmax(dim=-1).tolist():
            if k != self.previous and k != self.blank:
                new.append(k)
            self.previous = k
        self.labels.extend(new)
        return new


class TransducerGreedySearch:
    """Greedy transducer search over one utterance, frame by frame (see :func:`transducer_greedy`).

    The prediction network's output and state after the labels so far are carried between
    calls, so feeding the encoder output in chunks gives the labels of one call on all of it.
    """

    def __init__(
        self, model: TransducerLike, *, blank: int = 0, max_symbols_per_frame: int = 5,
        device: torch.device | str = "cpu",
    ) -> None:
        self.model = model
        self.blank = blank
        self.max_symbols = max_symbols_per_frame
        self.device = device
        start = torch.full((1, 1), blank, dtype=torch.long, device=device)
        self.g, self.state = model.predict(start, None)  # g: (1, 1, H)
        self.labels: list[int] = []

    def step(self, f: torch.Tensor) -> list[int]:
        """(T, H) encoder output of the next frames -> the labels emitted on them."""
        new: list[int] = []
        for t in range(f.shape[0]):
            ft = f[t].reshape(1, 1, -1)  # (1, 1, H)
            for _ in range(self.max_symbols):
                logits = self.model.joint(ft.unsqueeze(2), self.g.unsqueeze(1))  # (1, 1, 1, V)
                k = int(logits.reshape(-1).argmax())
                if k == self.blank:
                    break
                new.append(k)
                label = torch.full((1, 1), k, dtype=torch.long, device=self.device)
                self.g, self.state = self.model.predict(label, self.state)
        self.labels.extend(new)
        return new
