"""The NLTK TIMIT sample: download NLTK's zip and unpack it as a corpus ``seqkit data prepare``
reads.

NLTK distributes 160 utterances of 16 TIMIT speakers (``nltk.download('timit')``) under
CC BY-NC-SA. Unpacked, ``OUT`` holds ``<dr>-<speaker>/<sentence>.wav|phn|wrd|txt`` and
``spkrinfo.txt``, the layout :mod:`seqkit.corpora.timit.layout` reads. Its speakers are TIMIT
training speakers: it measures models that were not trained on TIMIT (all of it goes to test).

Integrity: zipfile checks every member's CRC-32 as it is extracted, and the result must hold the
sample's speaker folders. The zip is unpacked into a staged directory beside ``OUT`` and renamed
into place (:func:`seqkit.atomic.staged_dir`), so a failed download or unpack leaves nothing
behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from seqkit.atomic import check_output_dir, staged_dir
from seqkit.corpora.timit.layout import NLTK_SAMPLE_PART, find_utterances
from seqkit.errors import CorpusError
from seqkit.progress import ProgressFn

NLTK_TIMIT_URL = (
    "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/timit.zip"
)
_TOP = "timit"  # every member of NLTK's zip sits under timit/
_CHUNK = 1 << 16


def download_nltk_timit(
    out: str | os.PathLike[str],
    *,
    url: str = NLTK_TIMIT_URL,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> Path:
    """Download NLTK's TIMIT sample zip from ``url`` and unpack it to ``out``.

    Args:
        out: directory to create (the corpus root).
        url: where the zip is; any URL urllib opens (``file://`` too). Default: NLTK's.
        force: replace an existing non-empty ``out``. Default: False.
        progress: called as ``progress("download", bytes done, total bytes)``.

    Returns:
        ``out``, ready for ``seqkit data prepare``.

    Raises:
        OutputExistsError: ``out`` exists and is not empty, and ``force`` is False.
        CorpusError: the download failed, or the file is not NLTK's TIMIT sample zip.
    """
    out = Path(out)
    check_output_dir(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.download-", dir=out.parent) as tmp:
        zip_path = Path(tmp) / "timit.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, zip_path.open("wb") as f:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress("download", done, max(total, done))
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise CorpusError(
                f"could not download {url} ({getattr(err, 'reason', err)}): check the network, "
                "or fetch the zip yourself and pass it with --from-zip"
            ) from None
        return unpack_nltk_timit(zip_path, out, force=force)


def unpack_nltk_timit(
    zip_path: str | os.PathLike[str], out: str | os.PathLike[str], *, force: bool = False
) -> Path:
    """Unpack NLTK's TIMIT sample zip (members under ``timit/``) so that ``out`` is its root.

    Returns:
        ``out``.

    Raises:
        OutputExistsError: ``out`` exists and is not empty, and ``force`` is False.
        CorpusError: not a zip, a damaged member (CRC), a member outside ``timit/``, or no
            sample speaker folder in it.
    """
    zip_path, out = Path(zip_path), Path(out)
    check_output_dir(out, force=force)
    with staged_dir(out) as stage:
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
    return out


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
