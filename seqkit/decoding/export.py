"""A recognizer in one TorchScript file: waveform in, phones out, with torch as the only need.

:func:`export_model` scripts a module holding the whole pipeline of ``seqkit decode`` with
greedy search: Kaldi's filterbank (the same arithmetic as
:func:`torchaudio.compliance.kaldi.fbank` with seqkit's settings, its mel matrix and window
stored as buffers), Δ and ΔΔ, global CMVN, the encoder, the CTC head or the transducer's
prediction and joint networks, and the greedy search. Scripting compiles every function it calls
into the file, so loading it needs neither seqkit nor torchaudio::

    recognizer = torch.jit.load("model.ts")
    phones = recognizer(wave)  # wave: (N,) float32, 16 kHz mono in [-1, 1] -> list[str]

The file also carries the model's checkpoint (config, phone set, front end, weights) as an extra
file of the archive, so that :func:`seqkit.load` (and ``seqkit decode``) read an exported file as
they read a run, with timings and beam search; the weights are then stored twice.

Why TorchScript although torch >= 2.11 warns that ``torch.jit.script`` is deprecated in favour of
``torch.export``: with torch 2.14, ``torch.export`` specializes ``nn.LSTM``'s time axis to the
example's length (pytorch/pytorch#115092), an exported program returns tensors only (no phone
strings), and the transducer's greedy loop (a data-dependent break per frame) would need the
prototype ``torch.while_loop``. Moving means an LSTM written as a ``while_loop``, the greedy
searches as loop state machines, and phone ids plus a vocabulary file instead of phones.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF
from torch import nn

from seqkit.atomic import remove_debris, write_atomic
from seqkit.decoding.recognize import check_acoustic_model
from seqkit.errors import CheckpointError, OutputExistsError
from seqkit.locks import output_lock
from seqkit.models.checkpoint import LoadedModel, model_payload
from seqkit.models.config import ModelKind
from seqkit.models.encoder import stack_frames

# The checkpoint inside an exported file: torch.jit.save's extra file (stored as
# <archive>/extra/<name> in the zip), read back by read_embedded_checkpoint.
EMBEDDED_CHECKPOINT = "seqkit_checkpoint.pt"

_PREEMPHASIS = 0.97  # Kaldi's default, which compute_features keeps


class _Frontend(nn.Module):
    """Waveform (N,) -> normalized features (T, F), as compute_features + stats.normalize."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        config, stats = loaded.features, loaded.stats
        assert config is not None and stats is not None  # check_acoustic_model
        self.window_size = int(config.sample_rate * config.frame_length_ms / 1000)
        self.shift = config.frame_shift_samples
        self.padded = 1 << (self.window_size - 1).bit_length()  # Kaldi's round_to_power_of_two
        self.use_energy = config.kind == "fbank123"
        self.cmn = config.cmn
        self.delta_length = 2 * config.delta_window + 1
        self.preemphasis = _PREEMPHASIS
        self.eps = float(torch.finfo(torch.float32).eps)  # Kaldi's floor before a log
        window = torch.hann_window(self.window_size, periodic=False).pow(0.85)  # Kaldi's povey
        self.register_buffer("window", window.unsqueeze(0))  # (1, window)
        mel, _ = kaldi.get_mel_banks(
            config.n_mels, self.padded, float(config.sample_rate), config.low_freq,
            config.high_freq, 100.0, -500.0, 1.0,
        )  # (n_mels, padded / 2), Kaldi's defaults for the unused VTLN arguments
        mel = nn.functional.pad(mel, (0, 1))  # (n_mels, padded / 2 + 1)
        self.register_buffer("mel_t", mel.T.contiguous())
        self.register_buffer("mean", stats.mean.clone())
        self.register_buffer("std", stats.std.clone())

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 1 or wave.shape[0] < self.window_size:
            raise ValueError("expected a 1-D waveform of at least one 25 ms window (16 kHz)")
        eps = torch.tensor(self.eps)
        frames = wave.to(torch.float32).unfold(0, self.window_size, self.shift)  # (T, window)
        frames = frames - torch.mean(frames, dim=1).unsqueeze(1)  # remove_dc_offset
        energy = torch.max(frames.pow(2).sum(1), eps).log()  # raw energy, floored at log 1 = 0
        energy = torch.max(energy, torch.tensor(0.0))
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # replicate at the edge
        frames = (frames - self.preemphasis * previous) * self.window
        frames = nn.functional.pad(frames, (0, self.padded - self.window_size))
        spectrum = torch.fft.rfft(frames).abs().pow(2.0)  # (T, padded / 2 + 1)
        fbank = torch.max(torch.mm(spectrum, self.mel_t), eps).log()  # (T, n_mels)
        if self.use_energy:  # fbank123: energy + log-mel, then Δ and ΔΔ
            static = torch.cat([energy.unsqueeze(1), fbank], dim=1)  # (T, F0)
            feats = self._with_deltas(self._mean_normalized(static))  # (T, 3 * F0)
        else:  # fbank80: log-mel only
            feats = self._mean_normalized(fbank)  # (T, n_mels)
        return ((feats - self.mean) / self.std).to(torch.float32)

    def _mean_normalized(self, static: torch.Tensor) -> torch.Tensor:
        """(T, F0) less its mean over time when the model was trained with features.cmn."""
        if self.cmn:
            return static - torch.mean(static, dim=0, keepdim=True)
        return static

    def _with_deltas(self, static: torch.Tensor) -> torch.Tensor:
        """(T, F0) -> (T, 3 * F0): the frames, their Δ and their ΔΔ."""
        static = static.T  # (F0, T): compute_deltas runs along the last axis
        delta = AF.compute_deltas(static, win_length=self.delta_length)
        delta2 = AF.compute_deltas(delta, win_length=self.delta_length)
        return torch.cat([static, delta, delta2], dim=0).T.contiguous()  # (T, 3 * F0)


class _Layer(nn.Module):
    """One encoder layer of one utterance: forward direction, and backward if bidirectional."""

    def __init__(self, forward_rnn: nn.Module, backward_rnn: nn.Module | None) -> None:
        super().__init__()
        self.forward_rnn = forward_rnn
        self.bidirectional = backward_rnn is not None
        self.backward_rnn = backward_rnn if backward_rnn is not None else forward_rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.forward_rnn(x)  # (1, T, H)
        if self.bidirectional:
            back = self.backward_rnn(x.flip(1)).flip(1)  # (1, T, H), the utterance reversed
            out = torch.cat([out, back], dim=-1)  # (1, T, 2H)
        return out


class _Encoder(nn.Module):
    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        encoder = loaded.model.encoder
        self.stack = loaded.config.encoder.stack
        self.layers = nn.ModuleList(
            _Layer(layer.forward_rnn, layer.backward_rnn) for layer in encoder.layers
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, F) -> (T', H), frames stacked and zero-padded as the encoder does."""
        x = _stack(feats, self.stack)  # (T', stack * F)
        x = x.unsqueeze(0)  # (1, T', stack * F)
        for layer in self.layers:
            x = layer(x)
        return x[0]


def _stack(frames: torch.Tensor, stack: int) -> torch.Tensor:
    """(T, F) -> (ceil(T / stack), stack * F): :func:`stack_frames` on one whole utterance."""
    lengths = torch.tensor([frames.shape[0]])
    return stack_frames(frames.unsqueeze(0), lengths, stack)[0][0]


class CTCRecognizer(nn.Module):
    """Front end + encoder + CTC head + best-path search."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.front = _Frontend(loaded)
        self.encoder = _Encoder(loaded)
        self.output = loaded.model.output
        self.vocab: list[str] = list(loaded.vocab)
        self.blank = 0

    def forward(self, wave: torch.Tensor) -> list[str]:
        h = self.encoder(self.front(wave))  # (T', H)
        best: list[int] = self.output(h).float().log_softmax(dim=-1).argmax(dim=-1).tolist()
        phones: list[str] = []
        previous = -1
        for k in best:
            if k != previous and k != self.blank:
                phones.append(self.vocab[k])
            previous = k
        return phones


class TransducerRecognizer(nn.Module):
    """Front end + transcription network + prediction and joint networks + greedy search."""

    def __init__(self, loaded: LoadedModel, max_symbols_per_frame: int = 5) -> None:
        super().__init__()
        model = loaded.model
        self.front = _Frontend(loaded)
        self.encoder = _Encoder(loaded)
        self.embedding = model.predictor.embedding
        self.lstm = model.predictor.lstm
        self.joint_f, self.joint_g, self.joint_out = model.joint_f, model.joint_g, model.joint_out
        self.joint_stride = loaded.config.joint_stride
        self.vocab: list[str] = list(loaded.vocab)
        self.blank = 0
        self.max_symbols = max_symbols_per_frame

    def forward(self, wave: torch.Tensor) -> list[str]:
        h = _stack(self.encoder(self.front(wave)), self.joint_stride)  # (T', H_f), as encode
        f = self.joint_f(h)  # (T', J): W_f f + b once per frame
        layers, hidden = self.lstm.num_layers, self.lstm.hidden_size
        state = (torch.zeros(layers, 1, hidden), torch.zeros(layers, 1, hidden))
        label = torch.full((1, 1), self.blank, dtype=torch.long)
        g, state = self.lstm(self.embedding(label), state)  # (1, 1, H_g)
        phones: list[str] = []
        for t in range(f.shape[0]):
            for _ in range(self.max_symbols):
                logits = self.joint_out(torch.tanh(f[t] + self.joint_g(g[0, 0])))  # (V,)
                k = int(logits.argmax())
                if k == self.blank:
                    break
                phones.append(self.vocab[k])
                label = torch.full((1, 1), k, dtype=torch.long)
                g, state = self.lstm(self.embedding(label), state)
        return phones


def export_model(loaded: LoadedModel, out: str | os.PathLike[str], *, force: bool = True) -> Path:
    """Write ``loaded`` as one TorchScript file: waveform (N,) float32 -> list of phones.

    ``out`` is locked while it is written (:func:`seqkit.locks.output_lock`), so two exports
    to one file do not race, and temp files of killed exports beside it are removed first.

    Args:
        loaded: a CTC or transducer model (bi- or unidirectional) from
            :func:`seqkit.models.checkpoint.load_model`.
        out: the file to write (atomically).
        force: replace an existing ``out``. Default: True.

    Returns:
        The path written.

    Raises:
        CheckpointError: the model is not an acoustic model with a front end.
        OutputExistsError: ``out`` exists and ``force`` is False.
        OutputLockedError: another process writes ``out``.
    """
    check_acoustic_model(loaded)
    path = Path(out)
    with output_lock(path, command="seqkit export"):
        if path.exists() and not force:
            raise OutputExistsError(
                f"{path} exists: pass --force to replace it, or choose another OUT")
        remove_debris(path.parent, [path.name])
        ctc = loaded.kind == ModelKind.CTC
        module = CTCRecognizer(loaded) if ctc else TransducerRecognizer(loaded)
        scripted = torch.jit.script(module.eval())
        buffer = io.BytesIO()
        torch.save(model_payload(loaded.model, vocab=loaded.vocab, phone_set=loaded.phone_set,
                                 features=loaded.features, stats=loaded.stats), buffer)
        extra = {EMBEDDED_CHECKPOINT: buffer.getvalue()}
        write_atomic(path, lambda tmp: scripted.save(str(tmp), _extra_files=extra))
    return path


def read_embedded_checkpoint(
    file: Path, map_location: str | torch.device = "cpu"
) -> dict[str, Any] | None:
    """The checkpoint payload an exported file carries; None if ``file`` is no TorchScript file.

    Raises:
        CheckpointError: a TorchScript file without a seqkit checkpoint (exported by an older
            seqkit, or by something else), or one whose checkpoint cannot be read.
    """
    if not zipfile.is_zipfile(file):
        return None
    with zipfile.ZipFile(file) as archive:
        names = archive.namelist()
        if not any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
            return None  # a torch.save file (also a zip), not TorchScript
        inside = [n for n in names if n.endswith(f"/extra/{EMBEDDED_CHECKPOINT}")]
        if not inside:
            raise CheckpointError(
                f"{file} is a TorchScript file without a seqkit checkpoint inside (exported by an "
                "older seqkit, or not by seqkit): export the run again (`seqkit export RUN "
                f"{file} --force`), or load the run itself"
            )
        data = archive.read(inside[0])
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for corrupt data
        first_line = (str(err).strip().splitlines() or [""])[0][:120]
        raise CheckpointError(
            f"{file}: its embedded checkpoint is not readable ({type(err).__name__}: "
            f"{first_line}): export the run again"
        ) from None
