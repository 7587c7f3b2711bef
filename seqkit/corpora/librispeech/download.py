"""``seqkit data download``: LibriSpeech and Libri-Light archives, checksummed, never half there.

The archives, their URLs and SHA-256 sums are torchaudio's (``torchaudio.datasets.LIBRISPEECH``
and ``LibriLightLimited``; a test checks that this table still equals theirs). Their download
code is not used, because with it a partial download could pass for a complete one: both treat
a folder that exists as a finished download, so an interrupted unpack is never repaired; they
also report progress with their own bar on stderr and leave the multi-gigabyte archive behind.
Here:

* the archive streams into ``<file>.part`` and becomes ``<file>`` only once its SHA-256 matches
  (a mismatch deletes it);
* it unpacks into a hidden folder beside OUT's final folder, which is renamed into place with a
  ``.seqkit-download.json`` marker inside only when every file is out;
* a folder counts as present only with that marker; one without it (an interrupted unpack, or
  a copy made by hand) is unpacked again;
* an archive already in OUT (from an earlier run, or put there by hand) is verified and used
  instead of downloading it again.

Layout after download: ``OUT/LibriSpeech/<subset>/...`` and ``OUT/librispeech_finetuning/...``,
which ``seqkit data prepare OUT PREPARED`` reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from seqkit.atomic import replace_dir, write_json
from seqkit.corpora.librispeech.layout import LIBRILIGHT_DIR, LIBRISPEECH_DIR, LIBRISPEECH_SUBSETS
from seqkit.errors import ConfigError, DownloadError
from seqkit.locks import output_lock
from seqkit.progress import ProgressFn

MARKER = ".seqkit-download.json"
OPENSLR = "https://www.openslr.org/resources/12/"
_LIBRILIGHT_URL = "https://dl.fbaipublicfiles.com/librilight/data/"
_CHUNK = 1 << 20  # bytes per read: progress every MB
_TIMEOUT_S = 30  # a connection silent this long is an error, not a hang


@dataclass(frozen=True)
class Archive:
    """One downloadable archive.

    Attributes:
        name: the subset it holds (``dev-clean``, ``10h``).
        file: archive file name.
        url: where it is published.
        sha256: its SHA-256, hex.
        folder: what it unpacks to, relative to OUT.
    """

    name: str
    file: str
    url: str
    sha256: str
    folder: str


_SHA256 = {  # torchaudio.datasets.librispeech._CHECKSUMS
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
ARCHIVES: dict[str, Archive] = {
    name: Archive(name, f"{name}.tar.gz", f"{OPENSLR}{name}.tar.gz", _SHA256[name],
                  f"{LIBRISPEECH_DIR}/{name}")
    for name in LIBRISPEECH_SUBSETS
}
# Libri-Light's limited-supervision sets: one archive holds 10min, 1h and 10h
# (torchaudio.datasets.librilight_limited._URL and _CHECKSUM).
ARCHIVES["10h"] = Archive(
    "10h", "librispeech_finetuning.tgz", f"{_LIBRILIGHT_URL}librispeech_finetuning.tgz",
    "5d1efdc777b548194d7e09ba89126e2188026df9fd57aa57eb14408d2b2342af", LIBRILIGHT_DIR,
)
_ALIASES = {"10min": "10h", "1h": "10h"}  # all in the 10h archive

# corpus -> (subsets it may download, subsets it downloads by default)
CORPORA: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "librispeech": (LIBRISPEECH_SUBSETS, ("train-clean-100", "dev-clean", "test-clean")),
    # Libri-Light has no dev or test set: LibriSpeech's come with it.
    "librilight": (("10min", "1h", "10h", "dev-clean", "dev-other", "test-clean", "test-other"),
                   ("10h", "dev-clean", "test-clean")),
}


@dataclass(frozen=True)
class Fetched:
    """What :func:`download_corpus` did for one archive.

    Attributes:
        subset: the subset (archive) name.
        folder: where its files are.
        status: ``"present"`` (complete from an earlier run: nothing fetched) or
            ``"downloaded"``.
    """

    subset: str
    folder: Path
    status: str

    def to_dict(self) -> dict[str, str]:
        """JSON-able form."""
        return {"subset": self.subset, "folder": str(self.folder), "status": self.status}


def resolve_subsets(corpus: str, subsets: tuple[str, ...] | None) -> list[Archive]:
    """The archives to fetch for a corpus and subset names (None: the corpus's defaults).

    Raises:
        ConfigError: an unknown corpus or subset.
    """
    if corpus not in CORPORA:
        raise ConfigError(f"unknown corpus {corpus!r}: choose {' or '.join(CORPORA)}")
    allowed, default = CORPORA[corpus]
    names = subsets or default
    for name in names:
        if name not in allowed:
            raise ConfigError(
                f"unknown {corpus} subset {name!r}: choose from {', '.join(allowed)}"
            )
    archives: list[Archive] = []
    for name in names:
        archive = ARCHIVES[_ALIASES.get(name, name)]
        if archive not in archives:
            archives.append(archive)
    return archives


def download_corpus(
    corpus: str,
    out_dir: str | os.PathLike[str],
    *,
    subsets: tuple[str, ...] | None = None,
    mirror: str | None = None,
    keep_archives: bool = False,
    progress: ProgressFn | None = None,
) -> list[Fetched]:
    """Download, verify and unpack a corpus's archives into ``out_dir``; skip what is present.

    Args:
        corpus: ``librispeech`` or ``librilight``.
        out_dir: folder to fill (created).
        subsets: subset names (see :data:`CORPORA`); None = the corpus's defaults.
        mirror: a base URL holding the archives by file name (e.g. an OpenSLR mirror or a
            local copy) instead of their usual addresses.
        keep_archives: keep each verified archive after unpacking. Default: delete it.
        progress: called as ``progress(description, done, total)`` (megabytes).

    Returns:
        One entry per archive, in order.

    Raises:
        ConfigError: an unknown corpus or subset.
        DownloadError: no network, an HTTP error, a checksum mismatch, too little disk space.
        OutputLockedError: another process downloads into ``out_dir``.
    """
    archives = resolve_subsets(corpus, subsets)
    out = Path(out_dir)
    with output_lock(out, command="seqkit data download"):
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        _remove_killed_downloads(out, archives)
        try:
            return [fetch_archive(a, out, mirror=mirror, keep_archive=keep_archives,
                                  progress=progress) for a in archives]
        except BaseException:
            if created:  # a failed download leaves no empty folder behind
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise


def _remove_killed_downloads(out: Path, archives: list[Archive]) -> None:
    """Partial downloads and unpacks that killed processes left in ``out`` (it is locked now,
    so no live process writes them): ``ARCHIVE.part`` files and ``.NAME.partial-*`` folders."""
    for archive in archives:
        (out / (archive.file + ".part")).unlink(missing_ok=True)
    for staging in out.glob(".*.partial-*"):
        if staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging, ignore_errors=True)


def fetch_archive(
    archive: Archive,
    out: Path,
    *,
    mirror: str | None = None,
    keep_archive: bool = False,
    progress: ProgressFn | None = None,
) -> Fetched:
    """Make ``out/archive.folder`` complete: skip it if marked, else download and unpack.

    Raises:
        DownloadError: see :func:`download_corpus`.
    """
    target = out / archive.folder
    if (target / MARKER).is_file():
        return Fetched(archive.name, target, "present")
    path = out / archive.file
    if path.is_file():
        _verify(path, archive, progress)
    else:
        url = mirror.rstrip("/") + "/" + archive.file if mirror else archive.url
        _download(url, path, archive, progress)
    _unpack(path, out, archive, progress)
    if not keep_archive:
        path.unlink()
    return Fetched(archive.name, target, "downloaded")


def _download(url: str, path: Path, archive: Archive, progress: ProgressFn | None) -> None:
    """Stream ``url`` into ``path`` through ``path.part``, checking the SHA-256 on the way."""
    part = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0)
            _check_space(path.parent, 2 * total, archive)  # the archive + what it unpacks to
            with part.open("wb") as f:
                _copy(response, f, digest, f"{archive.name}: download (MB)", total, progress)
    except (TimeoutError, urllib.error.URLError, ConnectionError) as err:
        part.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"cannot download {url} ({reason}): check the network connection, or put "
            f"{archive.file} into {path.parent} by other means and run this again (it is verified)"
        ) from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != archive.sha256:
        part.unlink()
        raise DownloadError(
            f"{url}: SHA-256 {digest.hexdigest()[:16]}... does not match {archive.sha256[:16]}... "
            "(a truncated or altered download; deleted): run this again, or try --mirror"
        )
    os.replace(part, path)


def _copy(src: IO[bytes], dst: IO[bytes] | None, digest: Any, description: str, total: int,
          progress: ProgressFn | None) -> None:
    done = 0
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        if dst is not None:
            dst.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(description, done >> 20, max(total, done) >> 20)


def _verify(path: Path, archive: Archive, progress: ProgressFn | None) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        _copy(f, None, digest, f"{archive.name}: verify (MB)", path.stat().st_size, progress)
    if digest.hexdigest() != archive.sha256:
        raise DownloadError(
            f"{path}: SHA-256 {digest.hexdigest()[:16]}... does not match {archive.sha256[:16]}... "
            f"for {archive.file}: delete it and run this again to download it"
        )


def _check_space(folder: Path, needed: int, archive: Archive) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(
            f"{archive.file} needs about {needed / 1e9:.1f} GB free in {folder} (archive + "
            f"unpacked), found {free / 1e9:.1f} GB: free some space or choose another OUT"
        )


def _unpack(path: Path, out: Path, archive: Archive, progress: ProgressFn | None) -> None:
    """Unpack into a hidden folder, mark it complete, then rename it into place."""
    staging = out / f".{archive.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        total = path.stat().st_size
        description = f"{archive.name}: unpack (MB)"
        count = 0
        with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                tar.extract(member, staging, filter="data")  # no absolute paths, links out
                count += member.isfile()
                if progress is not None:
                    progress(description, raw.tell() >> 20, total >> 20)
        unpacked = staging / archive.folder
        if not unpacked.is_dir():
            raise DownloadError(
                f"{path} did not unpack to {archive.folder}/: not the {archive.name} archive; "
                "delete it and run this again"
            )
        marker = {"archive": archive.file, "sha256": archive.sha256, "files": count}
        write_json(unpacked / MARKER, marker)
        target = out / archive.folder
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(unpacked, target)  # an unmarked folder there is a partial unpack or copy
        # LibriSpeech's top-level notes (README.TXT, SPEAKERS.TXT, ...) come with every subset.
        for extra in unpacked.parent.glob("*"):
            if extra.is_file() and not (target.parent / extra.name).exists():
                os.replace(extra, target.parent / extra.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
