"""The content checksums of a prepared folder: written when it is built, verified before use.

``seqkit data prepare`` (:func:`seqkit.corpora.prepared.write_prepared`) ends by writing
``checksums.json`` beside what it wrote: the length and SHA-256 of each file training and
evaluation read (the split manifests, ``stats.json``) and of the records beside them
(``skipped.json``, LibriSpeech's ``oov.tsv``). A reader checks the files it is about to use
(:func:`verify_prepared`) and refuses any that changed since: a
manifest edited by hand, cut short by a full disk or copied in from another folder no longer
trains or scores silently. Audio files stay outside: they live in the corpus, not in the
prepared folder, and hashing them would cost as much as reading the corpus. Nor does it cover
``cache/`` (feature stores carry their own CRC-32, :mod:`seqkit.data.feature_store`).

The check streams each file once (SHA-256 runs at several hundred MB/s, faster than the JSON
parse that follows) and compares lengths first, so a truncated file fails without hashing. A
folder prepared before seqkit wrote ``checksums.json`` still loads, with a
:class:`seqkit.errors.CorpusWarning`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from seqkit.atomic import write_json
from seqkit.errors import CorpusError, CorpusWarning

CHECKSUMS_FILE = "checksums.json"
_FORMAT = "seqkit-prepared-checksums"
_CHUNK = 1 << 20


def file_digest(path: Path) -> dict[str, int | str]:
    """``{"bytes": length, "sha256": hex digest}`` of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def write_checksums(folder: str | os.PathLike[str], names: Iterable[str], *,
                    corpus: str | os.PathLike[str] | None = None) -> Path:
    """Write ``folder/checksums.json`` for the files ``names`` of ``folder`` (atomically).

    Args:
        folder: the (staged) prepared folder.
        names: files in it to cover, by name.
        corpus: the corpus it was prepared from, for the message a changed file gets.

    Returns:
        The checksums file.
    """
    folder = Path(folder)
    files = {name: file_digest(folder / name) for name in sorted(names)}
    payload: dict[str, Any] = {"format": _FORMAT, "version": 1, "files": files}
    if corpus is not None:
        payload["corpus"] = str(Path(corpus).resolve())
    return write_json(folder / CHECKSUMS_FILE, payload)


def verify_prepared(folder: str | os.PathLike[str], names: Iterable[str]) -> None:
    """Check that the files ``names`` of a prepared folder are as prepare wrote them.

    A name the checksums do not list is refused if the file exists (it was put there after
    prepare) and left to the caller if it does not (e.g. ``stats.json`` of an evaluation-only
    corpus, which the caller reports as missing in its own words).

    Args:
        folder: a folder made by ``seqkit data prepare``.
        names: the files the caller is about to read, e.g. ``["train.jsonl", "stats.json"]``.

    Warns:
        CorpusWarning: ``folder`` has no ``checksums.json`` (made by an older seqkit or by
            hand): nothing can be checked, so it is used as it is.

    Raises:
        CorpusError: a file differs from its checksum, is missing or is not one prepare wrote,
            or ``checksums.json`` is unreadable; the message names the file and the command
            that makes the folder again.
    """
    folder = Path(folder)
    listed, corpus = _read_checksums(folder)
    if listed is None:
        warnings.warn(
            f"{folder} has no {CHECKSUMS_FILE} (made by an older seqkit or by hand): its "
            f"files are used unchecked; {_again(folder, None)} to add one",
            CorpusWarning, stacklevel=1)
        return
    for name in names:
        path = folder / name
        expected = listed.get(name)
        if expected is None:
            if path.exists():
                raise CorpusError(f"{path} was not written by `seqkit data prepare` (not in "
                                  f"{CHECKSUMS_FILE}): {_again(folder, corpus)}")
            continue
        try:
            size = path.stat().st_size
            found = (file_digest(path) if size == expected.get("bytes")
                     else {"bytes": size, "sha256": None})
        except FileNotFoundError:
            raise CorpusError(f"{path} is missing from the prepared folder: "
                              f"{_again(folder, corpus)}") from None
        except OSError as err:
            raise CorpusError(f"cannot read {path} ({err.strerror or err}): "
                              f"{_again(folder, corpus)}") from None
        if found != expected:
            how = (f"{found['bytes']} bytes, expected {expected.get('bytes')}"
                   if found["bytes"] != expected.get("bytes") else "same size, other content")
            raise CorpusError(f"{path} changed since `seqkit data prepare` wrote it ({how}): "
                              f"{_again(folder, corpus)}")


def prepared_digests(folder: str | os.PathLike[str], names: Iterable[str]) -> dict[str, str]:
    """The SHA-256 of each of ``names`` in a prepared folder, checked as :func:`verify_prepared`
    checks them: what a training run records of the corpora it read.

    Files the checksums list are hashed once (by the check); a folder without
    ``checksums.json`` (older seqkit, with its warning) has its files hashed here.

    Raises:
        CorpusError: as :func:`verify_prepared`, or a file is missing.
    """
    folder, names = Path(folder), list(names)
    verify_prepared(folder, names)
    listed, corpus = _read_checksums(folder)
    digests = {}
    for name in names:
        entry = (listed or {}).get(name)
        if entry is not None and isinstance(entry.get("sha256"), str):
            digests[name] = entry["sha256"]
            continue
        try:
            digests[name] = str(file_digest(folder / name)["sha256"])
        except OSError as err:
            raise CorpusError(f"cannot read {folder / name} ({err.strerror or err}): "
                              f"{_again(folder, corpus)}") from None
    return digests


def verify_manifest(path: str | os.PathLike[str]) -> None:
    """Check a manifest given by its path, when its folder's checksums list it.

    For readers that take a manifest file as well as a prepared folder (``--lm PATH.jsonl``):
    a manifest outside a prepared folder (made by hand, no ``checksums.json`` beside it) is
    used as it is, without a warning.

    Raises:
        CorpusError: as :func:`verify_prepared`.
    """
    path = Path(path)
    listed, _ = _read_checksums(path.parent)
    if listed is not None and path.name in listed:
        verify_prepared(path.parent, [path.name])


def _read_checksums(folder: Path) -> tuple[dict[str, dict[str, Any]] | None, str | None]:
    """The listed files and the recorded corpus; (None, None) when there is no checksums file."""
    path = folder / CHECKSUMS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CorpusError(f"cannot read {path} ({err}): {_again(folder, None)}") from None
    files = data.get("files") if isinstance(data, dict) else None
    if (data.get("format") if isinstance(data, dict) else None) != _FORMAT or not (
            isinstance(files, dict) and all(isinstance(v, dict) for v in files.values())):
        raise CorpusError(f"{path} is not a seqkit checksums file: {_again(folder, None)}")
    corpus = data.get("corpus")
    return files, corpus if isinstance(corpus, str) else None


def _again(folder: Path, corpus: str | None) -> str:
    return f"re-run `seqkit data prepare {corpus or 'CORPUS'} {folder} --force`"
