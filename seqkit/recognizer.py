"""seqkit from Python: load a trained recognizer, then decode, evaluate or stream with it.

:func:`load` reads a run folder, a ``.pt`` checkpoint or a file written by ``seqkit export``
and returns a :class:`Recognizer`; ``seqkit decode``, ``seqkit evaluate`` and ``seqkit decode
--stream`` are thin shells around its methods, so the CLI and a script get the same phones for
the same file. Audio goes through the front end the model was trained with: files in any format
soundfile reads, samples in memory at any rate, resampled as files are.

Example:
    >>> import seqkit, soundfile
    >>> recognizer = seqkit.load("runs/ctc")
    >>> recognizer.kind, recognizer.phone_set, recognizer.vocab[0]
    ('ctc', 61, '<blank>')
    >>> samples, rate = soundfile.read("a.wav", dtype="float32")
    >>> hyps = recognizer.decode(["a.wav", samples], sample_rate=rate)
    >>> hyps[0].phones == hyps[1].phones  # the file, and its samples read into memory
    True
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from seqkit.data.checksums import verify_prepared
from seqkit.data.manifest import read_manifest
from seqkit.data.splits import SPLITS, split_manifest
from seqkit.decoding.evaluate import EvalReport, evaluate
from seqkit.decoding.export import read_embedded_checkpoint
from seqkit.decoding.ngram import PhoneNgram, load_lm_source
from seqkit.decoding.recognize import (
    DecodeOptions,
    Source,
    check_acoustic_model,
    recognize_sources,
)
from seqkit.decoding.results import Hypothesis, RecognitionResult
from seqkit.decoding.streaming import StreamingRecognizer, StreamResult
from seqkit.decoding.waveforms import StreamResampler, check_sample_rate, samples_of, waveform_at
from seqkit.errors import AudioError, ConfigError, CorpusError
from seqkit.models.checkpoint import (
    LoadedModel,
    load_model,
    model_from_payload,
    resolve_checkpoint,
)
from seqkit.progress import ProgressFn

# One input to :meth:`Recognizer.decode`: an audio file, or 1-D samples with their sample_rate.
AudioInput = str | os.PathLike[str] | np.ndarray | torch.Tensor
TransducerSearchName = Literal["auto", "graves", "batched"]


def load(run_or_checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu"
         ) -> Recognizer:
    """Load a trained CTC or transducer model for decoding.

    Args:
        run_or_checkpoint: a run folder written by ``seqkit train`` (its ``best.pt``, else
            ``last.pt``), a ``.pt`` checkpoint, or a TorchScript file written by ``seqkit
            export`` (it carries its checkpoint).
        device: where the model runs, as torch names devices. Default ``"cpu"``; decoding has
            been tested on the CPU only.

    Returns:
        The :class:`Recognizer`.

    Raises:
        CheckpointError: nothing at the path, a run folder without a checkpoint, a file that is
            not a seqkit checkpoint, a phone LM (not an acoustic model), a newer checkpoint
            format, or weights that do not fit their config.

    Example:
        >>> seqkit.load("runs/ctc").kind
        'ctc'
        >>> seqkit.load("runs/missing")
        Traceback (most recent call last):
        ...
        seqkit.errors.CheckpointError: checkpoint runs/missing not found: pass a run dir written by `seqkit train` or a .pt file
    """  # noqa: E501
    return Recognizer(read_model(run_or_checkpoint, device))


def read_model(run_or_checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu"
               ) -> LoadedModel:
    """The acoustic model :func:`load` wraps (internal: ``seqkit export`` reads it too).

    Raises:
        CheckpointError: as :func:`load`.
    """
    file = resolve_checkpoint(run_or_checkpoint)
    embedded = read_embedded_checkpoint(file, map_location=device)
    if embedded is not None:
        loaded = model_from_payload(embedded, file, map_location=device)
    else:
        loaded = load_model(file, map_location=device)
    check_acoustic_model(loaded)
    return loaded


class Recognizer:
    """A trained CTC or transducer phone recognizer; make one with :func:`seqkit.load`.

    Decoding is deterministic: the same audio and options give the same phones. Search options
    are per call: ``beam`` 1 is greedy search; ``beam`` K > 1 is CTC prefix beam search or, for
    a transducer, Graves's beam search (or the batched one, ``transducer_search``), either with
    an optional phone n-gram LM by shallow fusion (``lm``, ``lm_weight``).
    """

    def __init__(self, loaded: LoadedModel) -> None:
        check_acoustic_model(loaded)
        self._loaded = loaded
        self._lms: dict[tuple[str, int], PhoneNgram] = {}

    def __repr__(self) -> str:
        direction = "bidirectional" if self.bidirectional else "unidirectional"
        return (f"<seqkit.Recognizer {self.kind} {direction} {self.phone_set} phones "
                f"from {self.path}>")

    @property
    def kind(self) -> str:
        """``"ctc"`` or ``"transducer"``."""
        return str(self._loaded.kind)

    @property
    def phone_set(self) -> int | None:
        """The phone set the model outputs, 61, 48 or 39 TIMIT symbols (None if not recorded)."""
        return self._loaded.phone_set

    @property
    def vocab(self) -> tuple[str, ...]:
        """The model's output symbols by index; index 0 is the blank, the rest are phones."""
        return tuple(self._loaded.vocab)

    @property
    def path(self) -> Path:
        """The checkpoint (or exported) file the model was read from."""
        return self._loaded.path

    @property
    def sample_rate(self) -> int:
        """The rate the model's front end runs at (files and samples are resampled to it)."""
        assert self._loaded.features is not None  # an acoustic model (checked when made)
        return self._loaded.features.sample_rate

    @property
    def bidirectional(self) -> bool:
        """Whether the encoder reads the recording backwards too (then it cannot stream)."""
        return bool(self._loaded.config.encoder.bidirectional)

    def decode(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        beam: int = 1,
        lm: str | os.PathLike[str] | None = None,
        lm_weight: float | None = None,
        sample_rate: int | None = None,
        batch_size: int = 8,
        insertion_bonus: float = 0.0,
        transducer_search: TransducerSearchName = "auto",
        max_symbols_per_frame: int = DecodeOptions.max_symbols_per_frame,
    ) -> list[Hypothesis]:
        """Recognize audio files or samples: phones with start and end times and scores.

        Args:
            inputs: audio files (any format soundfile reads, any rate and channel count), 1-D
                numpy arrays or torch tensors of samples (float in [-1, 1], or int16 / int32
                PCM), or a list mixing them; one input alone is taken as a list of one.
            beam: 1 = greedy search (default); K > 1 = beam search keeping K hypotheses.
            lm: a phone n-gram LM for beam search: a saved n-gram JSON file, or a prepared
                folder (or a ``.jsonl`` manifest) whose train transcripts a trigram is
                estimated from (once per recognizer).
            lm_weight: the LM's weight in shallow fusion; default 0.5 with an LM, 0 without.
            sample_rate: the rate of the inputs given as samples, in Hz (required for them;
                files carry their own). Samples are resampled to :attr:`sample_rate` as files
                are.
            batch_size: inputs per model call.
            insertion_bonus: score added per phone in beam search with an LM.
            transducer_search: a transducer's beam search: ``"graves"`` (any number of labels
                per frame), ``"batched"`` (all hypotheses at once, fast on long files) or
                ``"auto"`` (batched above 60 s).
            max_symbols_per_frame: the most labels a transducer emits at one frame in greedy
                and batched search.

        Returns:
            One :class:`Hypothesis` per input, in input order, named by the path as given or
            ``<array i>``.

        Raises:
            AudioError: an input is missing, unreadable, empty, shorter than one frame, or
                samples of the wrong shape or dtype (the message names it; see
                :meth:`recognize` to decode the others anyway).
            ConfigError: options that do not go together (an LM without beam search, a
                weight without an LM), or samples without a ``sample_rate``.

        Example:
            >>> [hyp] = seqkit.load("runs/ctc").decode(["a.wav"], beam=4, lm="prepared")
            >>> first = hyp.segments[0]
            >>> first.phone == hyp.phones[0], first.start, 0.0 < first.end <= hyp.duration
            (True, 0.0, True)
        """
        result = self.recognize(
            inputs, beam=beam, lm=lm, lm_weight=lm_weight, sample_rate=sample_rate,
            batch_size=batch_size, insertion_bonus=insertion_bonus,
            transducer_search=transducer_search, max_symbols_per_frame=max_symbols_per_frame)
        if result.failures:
            raise AudioError(result.failures[0][1])
        return list(result.hypotheses)

    def recognize(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        beam: int = 1,
        lm: str | os.PathLike[str] | None = None,
        lm_weight: float | None = None,
        sample_rate: int | None = None,
        batch_size: int = 8,
        insertion_bonus: float = 0.0,
        transducer_search: TransducerSearchName = "auto",
        max_symbols_per_frame: int = DecodeOptions.max_symbols_per_frame,
        keep_features: bool = False,
        progress: ProgressFn | None = None,
    ) -> RecognitionResult:
        """:meth:`decode` for batch jobs: inputs that fail are reported, the others decoded.

        What ``seqkit decode`` runs. Arguments as :meth:`decode`, and:

        Args:
            keep_features: keep each input's normalized features in its hypothesis (for
                alignment pictures).
            progress: called as ``progress(description, done, total)`` while it works.

        Returns:
            The hypotheses of the inputs that could be decoded, ``(name, message)`` for each
            that could not, and the audio seconds and wall-clock time (real-time factor).

        Raises:
            ConfigError: as :meth:`decode`.
        """
        items = self._sources(inputs, sample_rate)
        options = self._options(beam, lm, lm_weight, insertion_bonus, transducer_search,
                                max_symbols_per_frame, batch_size)
        return recognize_sources(self._loaded, items, options=options,
                                 keep_features=keep_features, progress=progress)

    def evaluate(
        self,
        prepared_dir: str | os.PathLike[str],
        split: str = "test",
        beam: int = 1,
        lm: str | os.PathLike[str] | None = None,
        *,
        lm_weight: float | None = None,
        batch_size: int = 8,
        insertion_bonus: float = 0.0,
        transducer_search: TransducerSearchName = "auto",
        max_symbols_per_frame: int = DecodeOptions.max_symbols_per_frame,
        progress: ProgressFn | None = None,
    ) -> EvalReport:
        """Phone error rate on a prepared split, scored as the TIMIT literature scores it.

        Reference and hypothesis are folded to 39 phones (``q`` deleted, ``sil`` runs merged);
        PER = (S + D + I) / N over the split, and the 61-phone PER for a 61-phone model.

        Args:
            prepared_dir: a folder written by ``seqkit data prepare``; its files are checked
                against its ``checksums.json``.
            split: ``"train"``, ``"dev"`` or ``"test"`` (default).
            beam, lm: as :meth:`decode`; the other search options too, by keyword.
            progress: called as ``progress(description, done, total)`` while it works.

        Returns:
            The :class:`EvalReport`; utterances whose audio fails are listed in its
            ``failures`` and not scored.

        Raises:
            CorpusError: no such split in ``prepared_dir``, a file changed since it was
                prepared, or an empty split.
            ConfigError: an unknown split, or options that do not go together.

        Example:
            >>> report = seqkit.load("runs/ctc").evaluate("prepared")
            >>> f"PER {100 * report.per:.1f}% on {len(report.utterances)} utterances"
            'PER ...% on 2 utterances'
        """
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        prepared = Path(prepared_dir)
        manifest = split_manifest(prepared, split)
        if not manifest.is_file():
            raise CorpusError(
                f"{manifest} not found: expected a directory made by seqkit data prepare"
            )
        verify_prepared(prepared, [manifest.name])
        options = self._options(beam, lm, lm_weight, insertion_bonus, transducer_search,
                                max_symbols_per_frame, batch_size)
        return evaluate(self._loaded, read_manifest(manifest), options=options,
                        progress=progress)

    def stream(
        self,
        sample_rate: int = 16000,
        *,
        beam: int = 1,
        lm: str | os.PathLike[str] | None = None,
        lm_weight: float | None = None,
        insertion_bonus: float = 0.0,
        chunk_ms: float = 100,
    ) -> PhoneStream:
        """Start decoding a stream: feed it chunks of samples, get phones as they are decided.

        Only a unidirectional model streams (the ``*_stream`` recipes); the phones are those
        :meth:`decode` gives for the whole recording. Beam search is CTC prefix search or
        Graves's transducer search.

        Args:
            sample_rate: the rate of the chunks, in Hz; resampled on the fly to
                :attr:`sample_rate` as a whole file would be. Default 16000.
            beam, lm, lm_weight, insertion_bonus: as :meth:`decode`.
            chunk_ms: the chunk length you will feed, for the latency figure and
                :attr:`PhoneStream.samples_per_chunk`; any length may be fed. Default 100.

        Returns:
            A :class:`PhoneStream` for one recording.

        Raises:
            ConfigError: a bidirectional model (its first output needs the whole recording),
                one trained with per-recording mean normalization (``features.cmn``), a chunk
                shorter than one frame, or options that do not go together.

        Example:
            >>> import soundfile
            >>> recognizer = seqkit.load("runs/ctc_stream")  # a unidirectional model
            >>> samples, rate = soundfile.read("a.wav", dtype="float32")
            >>> stream = recognizer.stream(sample_rate=rate)
            >>> chunks = (samples[i : i + 1600] for i in range(0, len(samples), 1600))
            >>> phones = list(stream.phones(chunks))  # each phone as soon as it is decided
            >>> phones == list(recognizer.decode(["a.wav"])[0].phones)
            True
        """
        rate = check_sample_rate(sample_rate)
        options = self._options(beam, lm, lm_weight, insertion_bonus, "auto",
                                DecodeOptions.max_symbols_per_frame, 1)
        return PhoneStream(StreamingRecognizer(self._loaded, options, chunk_ms=chunk_ms), rate)

    def _options(self, beam: int, lm: str | os.PathLike[str] | None, lm_weight: float | None,
                 insertion_bonus: float, transducer_search: str, max_symbols_per_frame: int,
                 batch_size: int) -> DecodeOptions:
        """Validated search options, the LM read (or estimated) once per source."""
        return DecodeOptions(
            beam=beam, lm=self._lm(lm) if lm is not None else None, lm_weight=lm_weight,
            insertion_bonus=insertion_bonus,
            transducer_search=transducer_search,  # type: ignore[arg-type]  # checked there
            max_symbols_per_frame=max_symbols_per_frame, batch_size=batch_size)

    def _lm(self, source: str | os.PathLike[str]) -> PhoneNgram:
        path = Path(source)
        key = (str(path.resolve()), path.stat().st_mtime_ns if path.exists() else 0)
        if key not in self._lms:
            self._lms[key] = load_lm_source(path, self.phone_set or 61)
        return self._lms[key]

    def _sources(self, inputs: AudioInput | Sequence[AudioInput], sample_rate: int | None
                 ) -> list[tuple[str, Source]]:
        """Name and source per input; samples are converted and resampled when their turn
        comes (an AudioError then names the input)."""
        if isinstance(inputs, str | os.PathLike | np.ndarray | torch.Tensor):
            inputs = [inputs]
        rate = None if sample_rate is None else check_sample_rate(sample_rate)
        items: list[tuple[str, Source]] = []
        for i, item in enumerate(inputs):
            if isinstance(item, str | os.PathLike):
                items.append((os.fspath(item), os.fspath(item)))
                continue
            name = f"<array {i}>"
            if rate is None:
                raise ConfigError(
                    f"input {i} is samples ({type(item).__name__}): pass their rate, e.g. "
                    "decode(inputs, sample_rate=16000)"
                )
            items.append((name, _Samples(item, rate, self.sample_rate, name)))
        return items


class _Samples:
    """In-memory samples, converted and resampled to the model's rate when called."""

    def __init__(self, samples: Any, sample_rate: int, rate: int, name: str) -> None:
        self.samples, self.sample_rate, self.rate, self.name = samples, sample_rate, rate, name

    def __call__(self) -> torch.Tensor:
        return waveform_at(self.samples, self.sample_rate, self.rate, what=self.name)


class PhoneStream:
    """One recording decoded while it arrives; from :meth:`Recognizer.stream`.

    Feed chunks of samples with :meth:`accept` (each returns the phones decided so far that it
    had not returned yet), then call :meth:`finish` once at the end; or hand an iterable of
    chunks to :meth:`phones` and iterate over the phones. A greedy search decides a phone when
    it emits it; a beam search when every kept hypothesis has it.
    """

    def __init__(self, recognizer: StreamingRecognizer, sample_rate: int) -> None:
        self._recognizer = recognizer
        self._resampler = StreamResampler(sample_rate, recognizer.rate)
        self._result: StreamResult | None = None
        self.sample_rate = sample_rate
        """The rate of the chunks fed in, in Hz."""

    @property
    def latency_ms(self) -> float:
        """The algorithmic latency in ms, the chunk plus the front end's lookahead plus the wait
        for an output frame's input frames."""
        return float(self._recognizer.latency_ms)

    @property
    def samples_per_chunk(self) -> int:
        """Samples (at :attr:`sample_rate`) in a chunk of the ``chunk_ms`` given."""
        return int(self._recognizer.samples_per_chunk * self.sample_rate
                   / self._recognizer.rate)

    def accept(self, chunk: np.ndarray | torch.Tensor) -> list[str]:
        """Feed the next samples (1-D, any length); return the phones newly decided.

        Raises:
            AudioError: the chunk is not 1-D samples of a float or int16 / int32 dtype.
            ConfigError: the stream has finished.
        """
        if self._result is not None:
            raise ConfigError("this stream has finished: start another with recognizer.stream()")
        wave = self._resampler.accept(samples_of(chunk, what="chunk"))
        return self._recognizer.accept(wave)

    def finish(self) -> list[str]:
        """End of the recording: the last phones decided; :attr:`result` holds all of them.

        Raises:
            AudioError: the stream was shorter than one analysis window.
            ConfigError: the stream has finished already.
        """
        if self._result is not None:
            raise ConfigError("this stream has finished already: finish() is called once")
        tail = self._resampler.finish()
        phones = self._recognizer.accept(tail) if tail.shape[0] else []
        last, self._result = self._recognizer.finish()
        return phones + last

    def phones(self, chunks: Iterable[np.ndarray | torch.Tensor]) -> Iterator[str]:
        """Feed every chunk, then finish; yield each phone as soon as it is decided."""
        for chunk in chunks:
            yield from self.accept(chunk)
        yield from self.finish()

    @property
    def result(self) -> StreamResult:
        """The whole result (phones, score, decision times, timing), once finished.

        Raises:
            ConfigError: the stream has not finished yet.
        """
        if self._result is None:
            raise ConfigError("the stream has not finished: call finish() first")
        return self._result
