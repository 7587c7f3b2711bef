"""The NLTK TIMIT sample: download NLTK's zip and unpack it as a corpus ``seqkit data prepare``
reads.

NLTK distributes 160 utterances of 16 TIMIT speakers (``nltk.download('timit')``) under
CC BY-NC-SA. Unpacked, ``OUT`` holds ``<dr>-<speaker>/<sentence>.wav|phn|wrd|txt`` and
``spkrinfo.txt``, the layout :mod:`seqkit.corpora.timit.layout` reads. Its speakers are TIMIT
training speakers: it measures models that were not trained on TIMIT (all of it goes to test).

Integrity: the zip's size, MD5 and SHA-256 are computed as it is downloaded (or read, for a zip
given by path) and written to ``OUT/SOURCE.json``. Downloaded from NLTK's own URL, the zip must
have the size and MD5 NLTK's data index publishes for it (:data:`NLTK_TIMIT`: ``index.xml`` on
the ``gh-pages`` branch of github.com/nltk/nltk_data, commit 5db857e, package ``timit``:
``size="22251869" checksum="34c047c4749a811287f2c652104d7849"``; the checksum is an MD5, the
value old distribution RPM specs list too; NLTK's downloader compares a zip's size and MD5 with
them to tell an installed package that is stale). Those
values belong to that URL: a zip from another ``url`` (a mirror, a ``file://`` copy) or from a
path is checked against them only when asked (``published=True``, ``--nltk-index``). Given
``sha256`` (``--sha256``), the zip's SHA-256 must match too. Any mismatch is refused before
anything is unpacked; then zipfile checks every member's CRC-32 as it is extracted, and the
result must hold the sample's speaker folders. The zip is unpacked into a staged directory
beside ``OUT`` and renamed into place (:func:`seqkit.atomic.staged_dir`), so a failed download
or unpack leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from seqkit.atomic import check_output_dir, staged_dir, write_json
from seqkit.corpora.timit.layout import NLTK_SAMPLE_PART, find_utterances
from seqkit.errors import CorpusError
from seqkit.locks import output_lock
from seqkit.progress import ProgressFn


@dataclass(frozen=True)
class PublishedZip:
    """A zip's size and MD5 as its publisher lists them beside its URL.

    Attributes:
        url: where the publisher serves it.
        size: its length in bytes.
        md5: its MD5 (hex).
        where: where these values are published (named in the message of a mismatch).
    """

    url: str
    size: int
    md5: str
    where: str


# NLTK's data index (see the module docstring), the values NLTK's downloader checks a zip with.
NLTK_TIMIT = PublishedZip(
    url="https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/timit.zip",
    size=22_251_869,
    md5="34c047c4749a811287f2c652104d7849",
    where="NLTK's data index, nltk/nltk_data gh-pages index.xml",
)
NLTK_TIMIT_URL = NLTK_TIMIT.url
_TOP = "timit"  # every member of NLTK's zip sits under timit/
_CHUNK = 1 << 16


@dataclass(frozen=True)
class ZipDigests:
    """A zip's length and digests, computed in one pass over its bytes."""

    size: int
    md5: str
    sha256: str


class _Digester:
    def __init__(self) -> None:
        self.size = 0
        # not for security: to compare with the MD5 NLTK publishes (allowed in FIPS mode too)
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.md5.update(chunk)
        self.sha256.update(chunk)

    def result(self) -> ZipDigests:
        return ZipDigests(self.size, self.md5.hexdigest(), self.sha256.hexdigest())


def published_values(url: str, published: bool | None = None) -> PublishedZip | None:
    """The published values a zip from ``url`` must match, or None to check none.

    Args:
        url: where the zip came from ("" for a zip given by path).
        published: True: NLTK's (:data:`NLTK_TIMIT`) whatever the URL (a mirror of it);
            False: none; None (default): NLTK's when ``url`` is NLTK's own URL, else none.
    """
    if published is None:
        published = url == NLTK_TIMIT.url
    return NLTK_TIMIT if published else None


def download_nltk_timit(
    out: str | os.PathLike[str],
    *,
    url: str = NLTK_TIMIT_URL,
    sha256: str | None = None,
    published: bool | None = None,
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
        published: check the zip's size and MD5 against NLTK's data index
            (:func:`published_values`); None (default): only for NLTK's own URL.
        force: replace an existing non-empty ``out``. Default: False.
        progress: called as ``progress("download", bytes done, total bytes)``.

    Returns:
        ``out``, ready for ``seqkit data prepare``; ``out/SOURCE.json`` holds the URL and the
        zip's size, MD5 and SHA-256.

    Raises:
        OutputExistsError: ``out`` exists and is not empty, and ``force`` is False.
        OutputLockedError: another process writes ``out``.
        CorpusError: the download failed, its size, MD5 or SHA-256 differ from those expected,
            or the file is not NLTK's TIMIT sample zip.
    """
    out = Path(out)
    with output_lock(out, command="seqkit data download"):
        check_output_dir(out, force=force)
        for stale in out.parent.glob(f".{out.name}.download-*"):  # of killed downloads
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.download-", dir=out.parent) as tmp:
            zip_path = Path(tmp) / "timit.zip"
            digests = _fetch(url, zip_path, progress)
            _check(url, digests, sha256, published_values(url, published))
            return _unpack_checked(zip_path, out, {"url": url, **_recorded(digests)})


def _fetch(url: str, path: Path, progress: ProgressFn | None) -> ZipDigests:
    """Download ``url`` to ``path``; its size and digests, computed on the way."""
    digester = _Digester()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, path.open("wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                digester.update(chunk)
                if progress is not None:
                    progress("download", digester.size, max(total, digester.size))
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise CorpusError(
            f"could not download {url} ({getattr(err, 'reason', err)}): check the network, "
            "or fetch the zip yourself and pass it with --from-zip"
        ) from None
    return digester.result()


def _digests(path: Path) -> ZipDigests:
    digester = _Digester()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digester.update(chunk)
    except OSError as err:
        raise CorpusError(f"cannot read {path} ({err.strerror or err}): check the path") from None
    return digester.result()


def _recorded(digests: ZipDigests) -> dict[str, str | int]:
    return {"bytes": digests.size, "md5": digests.md5, "sha256": digests.sha256}


def _check(label: str, found: ZipDigests, sha256: str | None,
           published: PublishedZip | None) -> None:
    """Refuse a zip whose size or digests differ from what is expected of it (one line)."""
    if published is not None and (found.size, found.md5) != (published.size, published.md5):
        raise CorpusError(
            f"{label}: expected {published.size} bytes with MD5 {published.md5} "
            f"({published.where}), got {found.size} bytes with MD5 {found.md5}: a truncated "
            "or altered download; fetch it again (if NLTK has republished the sample since, "
            "check its index.xml and pass --no-nltk-index --sha256 HASH)"
        )
    if sha256 is not None and found.sha256 != sha256.strip().lower():
        raise CorpusError(
            f"{label}: expected SHA-256 {sha256.strip().lower()} (--sha256), got "
            f"{found.sha256}: a truncated or altered download; fetch it again"
        )


def unpack_nltk_timit(
    zip_path: str | os.PathLike[str], out: str | os.PathLike[str], *, force: bool = False,
    sha256: str | None = None, published: bool = False,
) -> Path:
    """Unpack NLTK's TIMIT sample zip (members under ``timit/``) so that ``out`` is its root.

    Args:
        zip_path: the zip.
        out: directory to create (the corpus root).
        force: replace an existing non-empty ``out``. Default: False.
        sha256: the zip's expected SHA-256 (hex), checked before unpacking; None = not checked.
        published: also check its size and MD5 against NLTK's data index (:data:`NLTK_TIMIT`),
            for a zip fetched from NLTK by hand. Default: False (a path has no URL to go by).

    Returns:
        ``out``; ``out/SOURCE.json`` holds the zip's path, size, MD5 and SHA-256.

    Raises:
        OutputExistsError: ``out`` exists and is not empty, and ``force`` is False.
        OutputLockedError: another process writes ``out``.
        CorpusError: a size or digest other than expected, not a zip, a damaged member (CRC),
            a member outside ``timit/``, or no sample speaker folder in it.
    """
    zip_path, out = Path(zip_path), Path(out)
    with output_lock(out, command="seqkit data download"):
        check_output_dir(out, force=force)
        digests = _digests(zip_path)
        _check(str(zip_path), digests, sha256, published_values("", published))
        return _unpack_checked(zip_path, out, {"zip": str(zip_path), **_recorded(digests)})


def _unpack_checked(zip_path: Path, out: Path, source: dict[str, str | int]) -> Path:
    """Unpack a zip already checked into ``out`` (locked by the caller), with SOURCE.json."""
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
