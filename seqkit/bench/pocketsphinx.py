"""pocketsphinx as a phone recognizer: the peer seqkit's phone error rate is held against (#17).

pocketsphinx 5 (CMU Sphinx) ships a US-English acoustic model trained on people's speech and a
phone language model (``en-us-phone.lm.bin``). In *allphone* mode it decodes phones instead of
words, which makes it a second opinion on any TIMIT-layout corpus: a recognizer of people that
never saw our voices. The settings are the issue's: the bundled model and phone LM, ``lw`` 2.0,
``beam`` = ``pbeam`` = 1e-20, everything else pocketsphinx's default. Each file is decoded in one
call (``full_utt``: its cepstral mean normalization sees the whole utterance), from the file's
16-bit samples. With these settings it scores 54.0% PER on the four development speakers of the
NLTK TIMIT sample (see BENCHMARKS.md).

Its 39 ARPAbet phones fold onto our 39-phone scoring: ``SIL`` and the noise fillers (``+NSN+``,
``+SPN+``, ...) become ``sil``, ``AO`` becomes ``aa`` and ``ZH`` ``sh`` (Lee & Hon's folding),
the others are lower-cased.

pocketsphinx is an optional dependency (``pip install 'seqkit[peers]'``), imported only when a
recognizer is built.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from seqkit.audio import SAMPLE_RATE, load_audio
from seqkit.data.manifest import Utterance
from seqkit.data.phones import PHONES_39
from seqkit.decoding.evaluate import EvalReport, score_hypotheses
from seqkit.errors import AudioError, BackendUnavailableError, ConfigError
from seqkit.progress import ProgressFn

INSTALL_HINT = "pip install 'seqkit[peers]'"
NAME = "pocketsphinx allphone"
_MODEL = "en-us"  # the US-English model folder inside pocketsphinx's package
# ARPAbet symbols whose 39-phone class is not their lower-case self (Lee & Hon 1989).
_FOLDED = {"SIL": "sil", "AO": "aa", "ZH": "sh"}


@dataclass(frozen=True)
class AllphoneSettings:
    """pocketsphinx allphone decoding as issue #17 ran it; anything not here is the default.

    Attributes:
        phone_lm: the phone LM, a file in pocketsphinx's bundled ``en-us`` model folder.
            Default ``en-us-phone.lm.bin``.
        lw: language-model weight. Default 2.0 (pocketsphinx's 6.5 is tuned for words).
        beam: Viterbi beam per frame. Default 1e-20 (pocketsphinx's is 1e-48).
        pbeam: beam on phone transitions. Default 1e-20 (pocketsphinx's is 1e-48).
    """

    phone_lm: str = "en-us-phone.lm.bin"
    lw: float = 2.0
    beam: float = 1e-20
    pbeam: float = 1e-20

    def describe(self) -> str:
        """One line for reports, e.g. ``en-us, en-us-phone.lm.bin, lw 2.0, beam=pbeam=1e-20``."""
        beams = (f"beam=pbeam={self.beam:g}" if self.beam == self.pbeam
                 else f"beam {self.beam:g}, pbeam {self.pbeam:g}")
        return f"{_MODEL}, {self.phone_lm}, lw {self.lw:g}, {beams}"


def import_pocketsphinx() -> ModuleType:
    """The ``pocketsphinx`` module.

    Raises:
        BackendUnavailableError: it is not installed (the message gives the install command).
    """
    try:
        import pocketsphinx
    except ImportError:
        raise BackendUnavailableError(
            f"pocketsphinx (the peer recognizer) is not installed: {INSTALL_HINT}"
        ) from None
    return pocketsphinx


def to_scoring_phones(phones: Sequence[str]) -> list[str]:
    """pocketsphinx's phone labels as symbols of our 39-phone scoring.

    ``SIL`` and fillers (``+NSN+``, ``+SPN+``, any ``+...+``) -> ``sil``, ``AO`` -> ``aa``,
    ``ZH`` -> ``sh``, every other ARPAbet phone lower-cased (``AH`` -> ``ah``).

    Raises:
        ConfigError: a label with no 39-phone class (not from an ARPAbet US-English model).
    """
    out = []
    for phone in phones:
        if phone.startswith("+") and phone.endswith("+"):
            out.append("sil")
            continue
        folded = _FOLDED.get(phone, phone.lower())
        if folded not in PHONES_39:
            raise ConfigError(
                f"pocketsphinx phone {phone!r} has no 39-phone class: expected ARPAbet phones, "
                f"SIL or +FILLER+ from the bundled {_MODEL} model"
            )
        out.append(folded)
    return out


def _pcm16(waveform: torch.Tensor) -> bytes:
    """(N,) float32 in [-1, 1] -> little-endian 16-bit PCM (16-bit files get their own samples)."""
    samples = np.rint(waveform.numpy().astype(np.float64) * 32768.0)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


class AllphoneRecognizer:
    """pocketsphinx's bundled US-English model decoding phones (allphone mode).

    Args:
        settings: decoder settings. Default: the issue's (:class:`AllphoneSettings`).

    Raises:
        BackendUnavailableError: pocketsphinx is not installed.
        ConfigError: the phone LM is not in pocketsphinx's model folder.
    """

    def __init__(self, settings: AllphoneSettings = AllphoneSettings()) -> None:
        module = import_pocketsphinx()
        phone_lm = Path(module.get_model_path(f"{_MODEL}/{settings.phone_lm}"))
        if not phone_lm.is_file():
            raise ConfigError(
                f"phone LM {phone_lm} not found: expected a file of pocketsphinx's bundled "
                f"{_MODEL} model (en-us-phone.lm.bin); reinstall with {INSTALL_HINT}"
            )
        self.settings = settings
        self._decoder = module.Decoder(
            allphone=str(phone_lm), lw=settings.lw, beam=settings.beam, pbeam=settings.pbeam,
            loglevel="ERROR",  # its INFO log would go to stderr: the library prints nothing
        )

    def phones(self, waveform: torch.Tensor) -> list[str]:
        """Decode one utterance, (N,) float32 at 16 kHz, into pocketsphinx's phone labels."""
        self._decoder.start_utt()
        self._decoder.process_raw(_pcm16(waveform), full_utt=True)
        self._decoder.end_utt()
        return [segment.word for segment in self._decoder.seg()]

    def evaluate(
        self, utterances: Sequence[Utterance], *, progress: ProgressFn | None = None
    ) -> EvalReport:
        """Decode manifest utterances and score them as ``seqkit evaluate`` scores a model.

        Returns:
            The report (39-phone folding); utterances whose audio fails are listed in
            ``failures`` and not scored; ``elapsed`` covers loading the audio and decoding.
        """
        ids: list[str] = []
        refs: list[list[str]] = []
        hyps: list[list[str]] = []
        failures: list[tuple[str, str]] = []
        audio_seconds = 0.0
        started = time.perf_counter()
        for done, utterance in enumerate(utterances, start=1):
            try:
                waveform = load_audio(utterance.audio)
            except AudioError as err:
                failures.append((utterance.id, str(err)))
            else:
                audio_seconds += waveform.shape[0] / SAMPLE_RATE
                ids.append(utterance.id)
                refs.append(utterance.phone_labels)
                hyps.append(to_scoring_phones(self.phones(waveform)))
            if progress is not None:
                progress(f"{NAME}: decoding", done, len(utterances))
        elapsed = time.perf_counter() - started
        report = score_hypotheses(refs, hyps, ids, phone_set=39)
        return replace(report, failures=tuple(failures), audio_seconds=audio_seconds,
                       elapsed=elapsed, checkpoint=self.settings.describe(), kind=NAME)
