"""seqkit: (B)LSTM-CTC and RNN-transducer phoneme recognition with its own loss kernels.

The public Python API is what ``__all__`` lists here, plus :mod:`seqkit.losses`; every other
module is internal and may change without notice. The names are imported when first used, so
``import seqkit`` stays light (the ``seqkit`` command imports it for every command)::

    import seqkit

    recognizer = seqkit.load("runs/ctc")
    for hyp in recognizer.decode(["a.wav"]):
        print(hyp.name, " ".join(hyp.phones))
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("seqkit")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"

# public name -> the module that holds it
_HOMES = {
    "load": "seqkit.recognizer",
    "Recognizer": "seqkit.recognizer",
    "PhoneStream": "seqkit.recognizer",
    "train": "seqkit.training_run",
    "Hypothesis": "seqkit.decoding.results",
    "PhoneSegment": "seqkit.decoding.results",
    "RecognitionResult": "seqkit.decoding.results",
    "EvalReport": "seqkit.decoding.evaluate",
    "UtteranceResult": "seqkit.decoding.evaluate",
    "StreamResult": "seqkit.decoding.streaming",
    "StreamStats": "seqkit.decoding.streaming",
    "TrainSummary": "seqkit.training.trainer",
    "EpochRecord": "seqkit.training.runlog",
    "StepRecord": "seqkit.training.runlog",
    "Notice": "seqkit.training.runlog",
    "SeqkitError": "seqkit.errors",
    "AudioError": "seqkit.errors",
    "BackendUnavailableError": "seqkit.errors",
    "LossInputError": "seqkit.errors",
    "CheckpointError": "seqkit.errors",
    "ConfigError": "seqkit.errors",
    "CorpusError": "seqkit.errors",
    "OutputExistsError": "seqkit.errors",
    "OutputLockedError": "seqkit.errors",
    "TrainingError": "seqkit.errors",
}

# The public API, in one place (the reference at docs/api.md documents each name).
__all__ = [
    "AudioError",
    "BackendUnavailableError",
    "CheckpointError",
    "ConfigError",
    "CorpusError",
    "EpochRecord",
    "EvalReport",
    "Hypothesis",
    "LossInputError",
    "Notice",
    "OutputExistsError",
    "OutputLockedError",
    "PhoneSegment",
    "PhoneStream",
    "RecognitionResult",
    "Recognizer",
    "SeqkitError",
    "StepRecord",
    "StreamResult",
    "StreamStats",
    "TrainSummary",
    "TrainingError",
    "UtteranceResult",
    "__version__",
    "load",
    "train",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on use
    from seqkit.decoding.evaluate import EvalReport, UtteranceResult
    from seqkit.decoding.results import Hypothesis, PhoneSegment, RecognitionResult
    from seqkit.decoding.streaming import StreamResult, StreamStats
    from seqkit.errors import (
        AudioError,
        BackendUnavailableError,
        CheckpointError,
        ConfigError,
        CorpusError,
        LossInputError,
        OutputExistsError,
        OutputLockedError,
        SeqkitError,
        TrainingError,
    )
    from seqkit.recognizer import PhoneStream, Recognizer, load
    from seqkit.training.runlog import EpochRecord, Notice, StepRecord
    from seqkit.training.trainer import TrainSummary
    from seqkit.training_run import train


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'seqkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
