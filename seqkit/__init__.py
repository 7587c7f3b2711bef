"""seqkit: (B)LSTM-CTC and RNN-transducer phoneme recognition with its own loss kernels."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seqkit")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
