"""Exit codes of the ``seqkit`` command, named once."""

import signal

USER_ERROR = 2  # a SeqkitError: input the user can fix (click also exits 2 on a bad option)
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), after writing what lets --resume continue
TERMINATED = 143  # SIGTERM (128 + 15: timeout, systemd, Slurm), after the same checkpoint


def interrupted_exit_code(stop_signal: int | None) -> int:
    """The exit code of a command that ``stop_signal`` stopped: SIGTERM's, else Ctrl-C's."""
    return TERMINATED if stop_signal == signal.SIGTERM else INTERRUPTED
