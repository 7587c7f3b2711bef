"""Errors a user can act on.

Library code never prints: it raises a :class:`SeqkitError` subclass whose message says what was
expected, what was found and what to do. The CLI turns it into one red line and exit code 2.
"""


class SeqkitError(Exception):
    """Base class for every error caused by user input (files, configs, arguments)."""


class AudioError(SeqkitError):
    """An audio file is missing, unreadable, empty or not audio."""


class CorpusError(SeqkitError):
    """A corpus, transcription file or manifest is malformed or laid out wrongly."""


class ConfigError(SeqkitError):
    """A recipe or option has an unknown key, a wrong type or a conflicting value."""


class CheckpointError(SeqkitError):
    """A checkpoint is missing, corrupt, of another model kind or of an incompatible version."""


class TensorInputError(SeqkitError, ValueError):
    """Tensors given to a model, a search or an alignment have the wrong shape, dtype or lengths."""


class LossInputError(TensorInputError):
    """Tensors passed to a loss have the wrong shape, dtype, device or lengths."""


class BackendUnavailableError(SeqkitError):
    """A requested compute backend (e.g. Triton without CUDA or TRITON_INTERPRET=1) cannot run."""


class TrainingError(SeqkitError):
    """Training cannot go on (e.g. too many non-finite losses in a row)."""


class OutputExistsError(SeqkitError):
    """An output path exists and would be overwritten without --force."""


class DownloadError(SeqkitError):
    """A corpus cannot be downloaded: no network, an HTTP error, a bad checksum, no disk space."""


class OutputLockedError(SeqkitError):
    """Another live process holds the lock of an output folder (two runs would mix results)."""


class CorpusWarning(UserWarning):
    """A corpus or prepared folder that can be used but not checked (e.g. prepared before seqkit
    wrote content checksums): shown as one line by the CLI, used anyway."""


class AudioWarning(UserWarning):
    """Audio that can be used but is not what its file says (e.g. truncated): shown as one line
    by the CLI, decoded anyway."""
