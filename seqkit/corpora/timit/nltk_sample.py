"""The NLTK TIMIT sample: download NLTK's zip and unpack it as a corpus ``seqkit data prepare``
reads.

NLTK distributes 160 utterances of 16 TIMIT speakers (``nltk.download('timit')``) under
CC BY-NC-SA. Unpacked, ``OUT`` holds ``<dr>-<speaker>/<sentence>.wav|phn|wrd|txt`` and
``spkrinfo.txt``, the layout :mod:`seqkit.corpora.timit.layout` reads. Its speakers are TIMIT
training speakers: it measures models that were not trained on TIMIT (all of it goes to test).

Integrity: zipfile checks every member's CRC-32 as it is extracted, and the result must hold the
sample's speaker folders. A SHA-256 of the whole zip is computed as it is downloaded and written
to ``OUT/SOURCE.json``; given ``sha256`` (``--sha256``), a zip that does not match is refused
before anything is unpacked. seqkit pins no value for NLTK's URL (:data:`NLTK_TIMIT_SHA256` is
None): it was not known where this was written, and an invented one would refuse the real
file. The zip is unpacked into a staged directory beside ``OUT`` and renamed into place
(:func:`seqkit.atomic.staged_dir`), so a failed download or unpack leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from seqkit.atomic import check_output_dir, staged_dir, write_json
from seqkit.corpora.timit.layout import NLTK_SAMPLE_PART, find_utterances
from seqkit.errors import CorpusError
from seqkit.locks import output_lock
from seqkit.progress import ProgressFn

NLTK_TIMIT_URL = (
    "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/timit.zip"
)
# The SHA-256 of NLTK_TIMIT_URL's zip, once someone has checked it against NLTK's own index;
# None: unknown, so only the zip's CRCs and layout are checked (see the module docstring).
NLTK_TIMIT_SHA256: str | None = None
_TOP = "timit"  # every member of NLTK's zip sits under timit/
_CHUNK = 1 << 16


def download_nltk_timit(
    out: str | os.PathLike[str],
    *,
    url: str = NLTK_TIMIT_URL,
    sha256: str | None = NLTK_TIMIT_SHA256,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> Path:
    """Download NLTK's TIMIT sample zip from ``url`` and unpack it to ``out``.

    ``out`` is locked for the call (:mod:`seqkit.locks`); download folders that killed runs
    left beside it are removed first, and a failed download leaves no folder it created.

    Args:
        out: directory to create (the corpus root).
        url: where the zip is; any URL urllib opens (``file://`` too). Default: NLTK's.
        sha256: the zip's expected SHA-256 (hex); None = not checked (only recorded).
        force: replace an existing non-empty ``out``. Default: False.
        progress: called as ``progress("download", bytes done, total bytes)``.

    Returns:
        ``out``, ready for ``seqkit data prepare``; ``out/SOURCE.json`` holds the URL and the
        zip's SHA-256.

    Raises:
        OutputExistsError: ``out`` exists and is not empty, and ``force`` is False.
        OutputLockedError: another process writes ``out``.
        CorpusError: the download failed, its SHA-256 differs from ``sha256``, or the file is
            not NLTK's TIMIT sample zip.
    """
    out = Path(out)
    with output_lock(out, command="seqkit data download"):
        check_output_dir(out, force=force)
        for stale in out.parent.glob(f".{out.name}.download-*"):  # of killed downloads
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.download-", dir=out.parent) as tmp:
            zip_path = Path(tmp) / "timit.zip"
            digest = _fetch(url, zip_path, progress)
            return unpack_nltk_timit(zip_path, out, force=force, sha256=sha256,
                                     source={"url": url, "sha256": digest})


def _fetch(url: str, path: Path, progress: ProgressFn | None) -> str:
    """Download ``url`` to ``path``; its SHA-256 (hex), computed on the way."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, path.open("wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress("download", done, max(total, done))
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise CorpusError(
            f"could not download {url} ({getattr(err, 'reason', err)}): check the network, "
            "or fetch the zip yourself and pass it with --from-zip"
        ) from None
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def unpack_nltk_timit(
    zip_path: str | os.PathLike[str], out: str | os.PathLike[str], *, force: bool = False,
    sha256: str | None = NLTK_TIMIT_SHA256, source: dict[str, str] | None = None,
) -> Path:
    """Unpack NLTK's TIMIT sample zip (members under ``timit/``) so that ``out`` is its root.

    Args:
        zip_path: the zip.
        out: directory to create (the corpus root).
        force: replace an existing non-empty ``out``. Default: False.
        sha256: the zip's expected SHA-256 (hex), checked before unpacking; None = not checked.
        source: what ``out/SOURCE.json`` records (default: the zip's path and SHA-256).

    Returns:
        ``out``.

    Raises:
        OutputExistsError: ``out`` exists and is not empty, and ``force`` is False.
        OutputLockedError: another process writes ``out``.
        CorpusError: a SHA-256 other than ``sha256``, not a zip, a damaged member (CRC), a
            member outside ``timit/``, or no sample speaker folder in it.
    """
    zip_path, out = Path(zip_path), Path(out)
    with output_lock(out, command="seqkit data download"):
        check_output_dir(out, force=force)
        if source is None:
            source = {"zip": str(zip_path), "sha256": _sha256(zip_path)}
        if sha256 is not None and source["sha256"] != sha256.lower():
            raise CorpusError(
                f"{zip_path}: SHA-256 {source['sha256'][:16]}... does not match the expected "
                f"{sha256[:16]}...: a truncated or altered download; fetch it again"
            )
        with staged_dir(out) as stage:
            _unpack_into(zip_path, stage)
            write_json(stage / "SOURCE.json", source)
    return out


def _unpack_into(zip_path: Path, stage: Path) -> None:
    """The zip's members into ``stage``, which must then hold the sample's speakers."""
    _extract(zip_path, stage)
    try:
        speakers = {u.speaker for u in find_utterances(stage) if u.part == NLTK_SAMPLE_PART}
    except CorpusError:
        speakers = set()
    if not speakers:
        raise CorpusError(
            f"{zip_path} has no <dr>-<speaker>/ folders under timit/: expected NLTK's TIMIT "
            f"sample zip ({NLTK_TIMIT_URL})"
        )


def _extract(zip_path: Path, into: Path) -> None:
    """The members of the zip, ``timit/`` stripped, into ``into`` (CRC-checked as read)."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.infolist():
                parts = PurePosixPath(member.filename).parts
                if not parts or parts[0] != _TOP or ".." in parts:
                    raise CorpusError(
                        f"{zip_path}: member {member.filename!r} is outside timit/: expected "
                        f"NLTK's TIMIT sample zip ({NLTK_TIMIT_URL})"
                    )
                target = into.joinpath(*parts[1:])
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as err:
        raise CorpusError(
            f"{zip_path} is not a readable zip ({err}): download NLTK's TIMIT sample again"
        ) from None
