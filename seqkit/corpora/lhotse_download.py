"""``seqkit data download NAME OUT`` for lhotse's recipes: their archives checked and resumable.

A lhotse recipe's ``download_<name>`` fetches its archives through ``lhotse.utils.
resumable_download`` and unpacks each once it returns, marking a finished unpack with a
``.completed`` file; lhotse checks no checksum. seqkit runs the recipe with that one function
replaced by :func:`fetch_checked` (for the call only), so that every archive is

* **resumable**: streamed into ``<file>.part``; an interrupted download keeps what it has and the
  next run asks the server for the rest (an HTTP range request);
* **checked before it is unpacked**: against the SHA-256 pinned in :data:`PINNED_SHA256` where
  one is published (torchaudio's tables for the corpora it also downloads, LibriSpeech's from
  seqkit's own downloader); where none is, the source is named as publishing none, and the
  archive is checked for its announced length and for being a whole archive (every tar member
  read through, every zip member's CRC) before it is used. A mismatch deletes it and stops;
* **recorded**: ``OUT/seqkit-downloads.json`` lists each archive with the SHA-256 found and
  whether it was pinned, so a later download can be held to it (``--pin FILE=SHA256``).

A recipe that reaches the network any other way (Hugging Face, ``requests``, its own commands)
cannot be checked and is refused in one line; so is a corpus lhotse cannot download (TIMIT from
the LDC, L2-ARCTIC: their licences ask for a form). ``--mirror`` fetches every archive from
another base URL by file name (a mirror, a local copy).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import inspect
import json
import os
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from seqkit.atomic import write_json
from seqkit.corpora.lhotse_manifests import import_lhotse, quiet
from seqkit.corpora.lhotse_recipes import find_recipe_function, normalize_recipe
from seqkit.corpora.librispeech.download import ARCHIVES
from seqkit.corpora.librispeech.layout import LIBRISPEECH_SUBSETS
from seqkit.errors import ConfigError, DownloadError
from seqkit.locks import output_lock
from seqkit.progress import ProgressFn

RECORD = "seqkit-downloads.json"
_CHUNK = 1 << 20
_TIMEOUT_S = 30
# What in a recipe module's source shows it reaches the network without resumable_download.
_OTHER_NETWORK = ("requests.", "urlopen", "hf_hub", "snapshot_download", "load_dataset(",
                  "subprocess", "wget", "gdown", "boto", "urlretrieve", "os.system")

# SHA-256 of the archives lhotse's recipes download, by recipe and file name, where the corpus's
# publisher or a library that downloads it publishes one (torchaudio.datasets' tables; a test
# checks they still equal torchaudio's).
PINNED_SHA256: dict[str, dict[str, str]] = {
    "cmu_arctic": {
        "cmu_us_aew_arctic.tar.bz2":
            "645cb33c0f0b2ce41384fdd8d3db2c3f5fc15c1e688baeb74d2e08cab18ab406",
        "cmu_us_ahw_arctic.tar.bz2":
            "024664adeb892809d646a3efd043625b46b5bfa3e6189b3500b2d0d59dfab06c",
        "cmu_us_aup_arctic.tar.bz2":
            "2c55bc3050caa996758869126ad10cf42e1441212111db034b3a45189c18b6fc",
        "cmu_us_awb_arctic.tar.bz2":
            "d74a950c9739a65f7bfc4dfa6187f2730fa03de5b8eb3f2da97a51b74df64d3c",
        "cmu_us_axb_arctic.tar.bz2":
            "dd65c3d2907d1ee52f86e44f578319159e60f4bf722a9142be01161d84e330ff",
        "cmu_us_bdl_arctic.tar.bz2":
            "26b91aaf48b2799b2956792b4632c2f926cd0542f402b5452d5adecb60942904",
        "cmu_us_clb_arctic.tar.bz2":
            "3f16dc3f3b97955ea22623efb33b444341013fc660677b2e170efdcc959fa7c6",
        "cmu_us_eey_arctic.tar.bz2":
            "8a0ee4e5acbd4b2f61a4fb947c1730ab3adcc9dc50b195981d99391d29928e8a",
        "cmu_us_fem_arctic.tar.bz2":
            "3fcff629412b57233589cdb058f730594a62c4f3a75c20de14afe06621ef45e2",
        "cmu_us_gka_arctic.tar.bz2":
            "dc82e7967cbd5eddbed33074b0699128dbd4482b41711916d58103707e38c67f",
        "cmu_us_jmk_arctic.tar.bz2":
            "3a37c0e1dfc91e734fdbc88b562d9e2ebca621772402cdc693bbc9b09b211d73",
        "cmu_us_ksp_arctic.tar.bz2":
            "8029cafce8296f9bed3022c44ef1e7953332b6bf6943c14b929f468122532717",
        "cmu_us_ljm_arctic.tar.bz2":
            "b23993765cbf2b9e7bbc3c85b6c56eaf292ac81ee4bb887b638a24d104f921a0",
        "cmu_us_lnh_arctic.tar.bz2":
            "4faf34d71aa7112813252fb20c5433e2fdd9a9de55a00701ffcbf05f24a5991a",
        "cmu_us_rms_arctic.tar.bz2":
            "c6dc11235629c58441c071a7ba8a2d067903dfefbaabc4056d87da35b72ecda4",
        "cmu_us_rxr_arctic.tar.bz2":
            "1fa4271c393e5998d200e56c102ff46fcfea169aaa2148ad9e9469616fbfdd9b",
        "cmu_us_slp_arctic.tar.bz2":
            "54345ed55e45c23d419e9a823eef427f1cc93c83a710735ec667d068c916abf1",
        "cmu_us_slt_arctic.tar.bz2":
            "7c173297916acf3cc7fcab2713be4c60b27312316765a90934651d367226b4ea",
    },
    "libritts": {
        "dev-clean.tar.gz":
            "da0864e1bd26debed35da8a869dd5c04dfc27682921936de7cff9c8a254dbe1a",
        "dev-other.tar.gz":
            "d413eda26f3a152ac7c9cf3658ef85504dfb1b625296e5fa83727f5186cca79c",
        "test-clean.tar.gz":
            "234ea5b25859102a87024a4b9b86641f5b5aaaf1197335c95090cde04fe9a4f5",
        "test-other.tar.gz":
            "33a5342094f3bba7ccc2e0500b9e72d558f72eb99328ac8debe1d9080402f10d",
        "train-clean-100.tar.gz":
            "c5608bf1ef74bb621935382b8399c5cdd51cd3ee47cec51f00f885a64c6c7f6b",
        "train-clean-360.tar.gz":
            "ce7cff44dcac46009d18379f37ef36551123a1dc4e5c8e4eb73ae57260de4886",
        "train-other-500.tar.gz":
            "e35f7e34deeb2e2bdfe4403d88c8fdd5fbf64865cae41f027a185a6965f0a5df",
    },
    "ljspeech": {
        "LJSpeech-1.1.tar.bz2":
            "be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5",
    },
    "speechcommands": {
        "speech_commands_v0.01.tar.gz":
            "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
        "speech_commands_v0.02.tar.gz":
            "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    },
    "tedlium": {
        "TEDLIUM_release-3.tgz":
            "ad1e454d14d1ad550bc2564c462d87c7a7ec83d4dc2b9210f22ab4973b9eccdb",
    },
    "tedlium2": {
        "TEDLIUM_release2.tar.gz":
            "93281b5fcaaae5c88671c9d000b443cb3c7ea3499ad12010b3934ca41a7b9c58",
    },
    "vctk": {
        "VCTK-Corpus-0.92.zip":
            "f96258be9fdc2cbff6559541aae7ea4f59df3fcaf5cf963aae5ca647357e359c",
    },
    "yesno": {
        "waves_yesno.tar.gz":
            "c3f49e0cca421f96b75b41640749167b52118f232498667ca7a5f9416aef8e73",
    },
}
PINNED_SHA256["librispeech"] = {
    a.file: a.sha256 for a in ARCHIVES.values() if a.name in LIBRISPEECH_SUBSETS
}
# Recipes seqkit will not download, and why.
REFUSED = {
    "timit": "TIMIT (LDC93S1) is licensed by the LDC: seqkit does not download it (lhotse's "
             "recipe fetches an unofficial copy); get it from the LDC, then `seqkit data prepare "
             "TIMIT OUT`, or use `seqkit data download nltk-timit` for NLTK's free sample",
}
UNPINNED = "no published checksum: checked for length and archive integrity"


@dataclass(frozen=True)
class FetchedArchive:
    """One archive a recipe asked for.

    Attributes:
        url: where it came from (after ``--mirror``).
        file: where it is (or was, if the recipe deleted it after unpacking).
        sha256: its SHA-256.
        pinned: whether it was checked against a pinned SHA-256 (else: length + integrity).
        status: ``downloaded``, ``resumed`` (continued from an earlier ``.part``) or ``present``
            (already complete in OUT, verified, not fetched).
    """

    url: str
    file: Path
    sha256: str
    pinned: bool
    status: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"url": self.url, "file": str(self.file), "sha256": self.sha256,
                "check": "pinned SHA-256" if self.pinned else UNPINNED, "status": self.status}


@dataclass(frozen=True)
class RecipeDownload:
    """What :func:`download_recipe` did: the recipe, where its corpus is, its archives."""

    recipe: str
    corpus_dir: Path
    archives: tuple[FetchedArchive, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"recipe": self.recipe, "corpus": str(self.corpus_dir),
                "archives": [a.to_dict() for a in self.archives]}


def downloadable(recipe: str) -> Callable[..., Any]:
    """The recipe's ``download_<name>``, if seqkit can check what it downloads.

    Raises:
        ConfigError: no such recipe, or it downloads nothing (the corpus is licensed).
        DownloadError: it reaches the network other than through ``resumable_download``.
    """
    lhotse = import_lhotse()
    name = normalize_recipe(recipe)
    if name in REFUSED:
        raise ConfigError(REFUSED[name])
    download = find_recipe_function(name, "download")
    module = inspect.getmodule(download)
    source = _download_source(download, module)
    routed = getattr(module, "resumable_download", None) is lhotse.utils.resumable_download
    other = [marker for marker in _OTHER_NETWORK if marker in source]
    if not routed or other:
        how = ", ".join(m.rstrip(".(") for m in other) or "its own code"
        raise DownloadError(
            f"lhotse's {name} recipe downloads through {how}, which seqkit cannot check or "
            "resume: download the corpus as its page says, then `seqkit data prepare CORPUS OUT "
            f"--corpus {name}`"
        )
    return download


def _download_source(download: Callable[..., Any], module: Any) -> str:
    """The download function's source and that of the module's functions it calls."""
    sources = [inspect.getsource(download)]
    for name in download.__code__.co_names:
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and inspect.getmodule(helper) is module:
            sources.append(inspect.getsource(helper))
    return "\n".join(sources)


def download_recipe(
    recipe: str,
    out_dir: str | os.PathLike[str],
    *,
    options: dict[str, Any] | None = None,
    mirror: str | None = None,
    pins: dict[str, str] | None = None,
    progress: ProgressFn | None = None,
) -> RecipeDownload:
    """Run lhotse's ``download_<recipe>`` into ``out_dir`` with checked, resumable archives.

    Args:
        recipe: a lhotse recipe name (``cmu_arctic``, ``ljspeech``, ``lhotse:librispeech``).
        out_dir: folder to download and unpack into (created).
        options: keyword arguments of the recipe's download function (``speakers=["aew"]``).
        mirror: base URL holding the archives by file name, instead of the recipe's URLs.
        pins: ``file name -> SHA-256`` added to (and overriding) :data:`PINNED_SHA256`.
        progress: called as ``progress(description, done, total)`` (megabytes).

    Returns:
        The recipe, the corpus folder its download function returned, and each archive.

    Raises:
        ConfigError: an unknown recipe or option.
        DownloadError: an HTTP or network error (what arrived is kept for the next run), a
            checksum or integrity mismatch (the archive is deleted), a recipe seqkit cannot
            check.
        OutputLockedError: another process downloads into ``out_dir``.
    """
    name = normalize_recipe(recipe)
    download = downloadable(name)
    parameters = inspect.signature(download).parameters
    options = dict(options or {})
    for key in options:
        if key not in parameters or key == next(iter(parameters)):
            raise ConfigError(
                f"lhotse's download_{name} takes no option {key!r}: it takes "
                f"{', '.join(list(parameters)[1:]) or 'none'}"
            )
    table = {**PINNED_SHA256.get(name, {}), **(pins or {})}
    out = Path(out_dir)
    fetched: list[FetchedArchive] = []

    def fetch(url: str, filename: Any, force_download: bool = False, *args: Any,
              **kwargs: Any) -> None:
        fetched.append(fetch_checked(url, Path(filename), table, mirror=mirror,
                                     force=force_download, progress=progress))

    with output_lock(out, command="seqkit data download"):
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        try:
            with _routed(download, fetch), quiet():
                corpus = download(out, **options)
        except BaseException:
            if created and not any(out.iterdir()):  # a failed first try leaves no empty folder
                out.rmdir()
            raise
        finally:
            if fetched:
                _record(out, fetched)
    return RecipeDownload(name, Path(corpus) if corpus else out, tuple(fetched))


@contextlib.contextmanager
def _routed(download: Callable[..., Any], fetch: Callable[..., None]) -> Iterator[None]:
    """``resumable_download`` of the recipe's module (and lhotse.utils) is ``fetch`` meanwhile."""
    lhotse = import_lhotse()
    module = inspect.getmodule(download)
    original = lhotse.utils.resumable_download
    module.resumable_download = fetch  # type: ignore[union-attr]
    lhotse.utils.resumable_download = fetch
    try:
        yield
    finally:
        module.resumable_download = original  # type: ignore[union-attr]
        lhotse.utils.resumable_download = original


def _record(out: Path, fetched: list[FetchedArchive]) -> None:
    path = out / RECORD
    try:
        known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        known = {}
    archives = known.get("archives", {}) if isinstance(known, dict) else {}
    for item in fetched:
        archives[item.file.name] = item.to_dict()
    write_json(path, {"format": "seqkit-downloads", "archives": archives})


def fetch_checked(
    url: str,
    path: Path,
    pins: dict[str, str],
    *,
    mirror: str | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> FetchedArchive:
    """Make ``path`` a complete, checked copy of ``url``'s archive; resume a ``.part``.

    Raises:
        DownloadError: see :func:`download_recipe`.
    """
    if mirror:
        url = mirror.rstrip("/") + "/" + url.rsplit("/", 1)[-1]
    expected = pins.get(path.name)
    if force:
        path.unlink(missing_ok=True)
    if path.is_file():  # complete from an earlier run, or put there by hand
        digest = _check(path, expected, None, url, keep_on_failure=True)
        return FetchedArchive(url, path, digest, expected is not None, "present")
    part = path.with_name(path.name + ".part")
    resumed = part.is_file() and part.stat().st_size > 0
    total = _stream(url, part, progress, path.name)
    digest = _check(part, expected, total, url, keep_on_failure=False)
    os.replace(part, path)
    return FetchedArchive(url, path, digest, expected is not None,
                          "resumed" if resumed else "downloaded")


def _stream(url: str, part: Path, progress: ProgressFn | None, name: str) -> int | None:
    """Append the rest of ``url`` to ``part``; the archive's full length (None: unknown)."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            if offset and response.status != 206:  # the server ignores ranges: start over
                offset = 0
            length = int(response.headers.get("Content-Length") or 0)
            total = offset + length if length else None
            with part.open("r+b" if offset else "wb") as f:
                f.seek(offset)
                f.truncate()
                _copy(response, f, f"{name}: download (MB)", offset, total, progress)
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(f"the connection closed at byte {part.stat().st_size} of {total}")
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing after the end: the .part is whole already
            return offset
        raise DownloadError(
            f"cannot download {url} (HTTP {err.code} {err.reason}): check the URL or --mirror"
        ) from None
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError,
            http.client.HTTPException) as err:
        kept = part.stat().st_size if part.is_file() else 0
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"cannot download {url} ({reason}): {kept >> 20} MB kept in {part}; run this again "
            "to resume, or put the archive into the folder by other means (it is verified)"
        ) from None
    return total


def _copy(src: IO[bytes], dst: IO[bytes], description: str, done: int, total: int | None,
          progress: ProgressFn | None) -> None:
    while chunk := src.read(_CHUNK):
        dst.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(description, done >> 20, max(total or 0, done) >> 20)


def _check(path: Path, expected: str | None, total: int | None, url: str,
           keep_on_failure: bool) -> str:
    """The archive's SHA-256, once it matches the pin (or, unpinned, is whole)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    found = digest.hexdigest()
    problem = None
    if total is not None and path.stat().st_size != total:
        problem = f"{path.stat().st_size} bytes, the server announced {total}"
    elif expected is not None and found != expected:
        problem = f"SHA-256 {found[:16]}... does not match the pinned {expected[:16]}..."
    elif expected is None:
        problem = _integrity(path)
    if problem is None:
        return found
    if not keep_on_failure:
        path.unlink(missing_ok=True)
    action = f"delete {path} and run this again" if keep_on_failure else "deleted; run this again"
    raise DownloadError(f"{url}: {problem} (a truncated or altered archive; {action})")


def _integrity(path: Path) -> str | None:
    """Why an unpinned archive is not whole (None: every member reads through)."""
    name = path.name.removesuffix(".part").lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            return f"zip member {bad} fails its CRC" if bad else None
        if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz")):
            with tarfile.open(path, mode="r:*") as archive:
                for member in archive:
                    stream = archive.extractfile(member) if member.isfile() else None
                    while stream is not None and stream.read(_CHUNK):
                        pass
            return None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        return f"not a whole archive ({type(err).__name__}: {err})"
    return None  # not an archive format seqkit knows: its length was checked
