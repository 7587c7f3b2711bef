"""lhotse's manifests (recordings + supervisions, or cuts) as a corpus source.

lhotse (k2/icefall's data layer) describes a corpus as a ``RecordingSet`` (audio files) and a
``SupervisionSet`` (stretches of them with text, speaker and an optional ``alignment``), or as a
``CutSet`` joining the two; a recipe writes them as ``<corpus>_recordings_<part>.jsonl.gz``,
``<corpus>_supervisions_<part>.jsonl.gz`` or ``<corpus>_cuts_<part>.jsonl.gz``. Each supervision
becomes one utterance (a supervision inside a long recording is cut out of it by prepare).

* **Parts.** A part named like a split (``train-clean-100``, ``dev``, ``TEST``) is that split; when
  any part is, the corpus defines its splits, and parts that are none (Common Voice's
  ``validated``, ``other``) are left out and named in the summary. When none is (``all``,
  L2-ARCTIC's ``read`` and ``suitcase``), all parts are pooled and split by the seeded rule.
* **Phones.** A supervision's ``alignment["phone"]`` (lhotse's TIMIT recipe writes one) gives the
  phones, mapped to TIMIT's symbols; otherwise they come from the text.
* **Audio.** Only file sources are read; a recording whose audio is a command, a URL or bytes in
  memory is refused in one line (seqkit runs no commands from a manifest), as is a transform
  other than resampling (prepare resamples itself) and a cut mixing several recordings.

lhotse is imported only when a manifest is read (it takes about a second and a half to import).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqkit.corpora.source import CorpusSource, SourceUtterance, split_of_part
from seqkit.errors import BackendUnavailableError, CorpusError

_MANIFEST = re.compile(
    r"^(?:(?P<prefix>.*?)_)?(?P<kind>recordings|supervisions|cuts)(?:_(?P<part>.+?))?"
    r"\.jsonl(?:\.gz)?$"
)
_ALL = "all"
_RESAMPLE = "Resample"


def import_lhotse() -> Any:
    """The lhotse module (imported on first use).

    Raises:
        BackendUnavailableError: lhotse (or urllib3, which lhotse 1.33 imports without
            declaring it) is not installed.
    """
    try:
        import lhotse
    except ImportError as err:
        raise BackendUnavailableError(
            f"lhotse cannot be imported ({err}): install it with `pip install 'lhotse>=1.33,<1.34' "
            "urllib3` (make install does)"
        ) from None
    return lhotse


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """lhotse's prints and tqdm bars kept off the terminal (seqkit draws its own progress)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def is_lhotse_manifest(path: Path) -> bool:
    """A lhotse manifest file (``*.jsonl.gz``, ``*.jsonl``) or a folder holding recordings /
    supervisions / cuts manifests."""
    if path.is_file():
        return path.name.endswith((".jsonl.gz", ".jsonl"))
    return path.is_dir() and any(_MANIFEST.match(p.name) for p in path.iterdir())


def read_lhotse_manifests(path: str | Path) -> CorpusSource:
    """A lhotse manifest folder or a single CutSet file as a corpus source.

    Raises:
        CorpusError: a file that is not a lhotse manifest, a part with supervisions but no
            recordings, an audio source that is not a file (see the module docstring).
        BackendUnavailableError: lhotse is not installed.
    """
    root = Path(path)
    lhotse = import_lhotse()
    if root.is_file():
        manifest = _load(lhotse, root)
        if not isinstance(manifest, lhotse.CutSet):
            raise CorpusError(
                f"{root} is a lhotse {type(manifest).__name__}, not a CutSet: give the folder "
                "holding its recordings and supervisions manifests together"
            )
        parts: dict[str, Any] = {_part_name(root.name): manifest}
    else:
        parts = _folder_parts(lhotse, root)
    return source_from_parts(parts, root, kind="lhotse manifests")


def _load(lhotse: Any, path: Path) -> Any:
    try:
        with quiet():
            return lhotse.load_manifest(path)
    except Exception as err:  # lhotse raises ValueError, KeyError, OSError, gzip errors
        raise CorpusError(
            f"{path} is not a lhotse manifest ({type(err).__name__}: {err}): expected "
            "recordings, supervisions or cuts in lhotse's JSONL"
        ) from None


def _part_name(name: str) -> str:
    match = _MANIFEST.match(name)
    if match is None:
        return name.split(".")[0]
    return match.group("part") or _ALL


def _folder_parts(lhotse: Any, root: Path) -> dict[str, Any]:
    found: dict[str, dict[str, Path]] = {}
    for file in sorted(root.iterdir()):
        match = _MANIFEST.match(file.name)
        if match is not None:
            found.setdefault(match.group("part") or _ALL, {})[match.group("kind")] = file
    if not found:
        raise CorpusError(
            f"{root} holds no lhotse manifest: expected <corpus>_recordings_<part>.jsonl.gz and "
            "<corpus>_supervisions_<part>.jsonl.gz, or <corpus>_cuts_<part>.jsonl.gz"
        )
    parts: dict[str, Any] = {}
    for part, files in found.items():
        if "cuts" in files:
            parts[part] = _load(lhotse, files["cuts"])
        elif "supervisions" in files and "recordings" in files:
            parts[part] = {"recordings": _load(lhotse, files["recordings"]),
                           "supervisions": _load(lhotse, files["supervisions"])}
        else:
            have = next(iter(files.values()))
            raise CorpusError(
                f"{have}: part {part!r} has {' '.join(files)} but not both recordings and "
                "supervisions: put the matching manifest beside it"
            )
    return parts


def source_from_parts(
    parts: dict[str, Any], root: Path, *, kind: str,
) -> CorpusSource:
    """Utterances of lhotse parts (part name -> CutSet or {recordings, supervisions}).

    See the module docstring for how parts become splits.
    """
    lhotse = import_lhotse()
    splits = {name: split_of_part(name.split(".")[-1]) for name in parts}
    defined = any(split is not None for split in splits.values())
    left_out = [name for name, split in splits.items() if defined and split is None]
    utterances: list[SourceUtterance] = []
    for name, manifests in parts.items():
        if name in left_out:
            continue
        split = splits[name] if defined else None
        if isinstance(manifests, lhotse.CutSet):
            utterances.extend(_cut_utterances(lhotse, manifests, name, split))
        else:
            utterances.extend(_supervision_utterances(
                manifests["recordings"], manifests["supervisions"], name, split))
    notes = (f"parts that are no split, left out: {', '.join(left_out)}",) if left_out else ()
    return CorpusSource(kind, root, utterances, defines_splits=defined, notes=notes)


def _supervision_utterances(
    recordings: Any, supervisions: Any, part: str, split: str | None
) -> Iterator[SourceUtterance]:
    by_id = {r.id: r for r in recordings}
    for sup in supervisions:
        recording = by_id.get(sup.recording_id)
        yield _utterance(sup, recording, sup.start, part, split)


def _cut_utterances(
    lhotse: Any, cuts: Any, part: str, split: str | None
) -> Iterator[SourceUtterance]:
    seen: set[str] = set()
    for cut in cuts:
        if isinstance(cut, lhotse.cut.PaddingCut):
            continue
        if not hasattr(cut, "recording"):
            raise CorpusError(
                f"cut {cut.id} is a {type(cut).__name__}: seqkit prepares cuts of one recording "
                "(MonoCut); prepare the recordings and supervisions it was mixed from"
            )
        if cut.recording is None:
            raise CorpusError(f"cut {cut.id} has no recording (features only): seqkit needs the "
                              "audio; prepare from the recordings manifest")
        for sup in cut.supervisions:
            if sup.id in seen:  # overlapping cuts repeat a supervision
                continue
            seen.add(sup.id)
            yield _utterance(sup, cut.recording, cut.start + sup.start, part, split)


def _utterance(
    sup: Any, recording: Any, start: float, part: str, split: str | None
) -> SourceUtterance:
    """One supervision; ``start`` is where it starts in the recording, in seconds."""
    where = f"supervision {sup.id} of part {part}"
    audio, channel = _audio_file(recording, sup, where) if recording is not None else (None, None)
    phones = None
    alignment = (sup.alignment or {}).get("phone")
    if alignment:
        # Alignment items carry times in the recording's (or the cut's) clock, like sup.start.
        phones = tuple((item.start - sup.start, item.start + item.duration - sup.start,
                        item.symbol) for item in alignment)
    text = (sup.custom or {}).get("normalized_text") or sup.text or ""
    return SourceUtterance(
        id=sup.id, audio=audio, speaker=sup.speaker, text=text, start=start,
        duration=sup.duration, channel=channel, phones=phones,
        phone_source="lhotse phone alignment" if phones else "", split=split, group=part,
        where=where,
    )


def _audio_file(recording: Any, sup: Any, where: str) -> tuple[Path, int | None]:
    """The file a supervision's audio is in, and its channel in that file (None: all)."""
    for transform in recording.transforms or ():
        name = transform.get("name") if isinstance(transform, dict) else type(transform).__name__
        if name != _RESAMPLE:
            raise CorpusError(
                f"{where}: recording {recording.id} applies a {name} transform: seqkit prepares "
                "audio as it is recorded; prepare the untransformed recordings"
            )
    channel = sup.channel if isinstance(sup.channel, int) else None
    sources = recording.sources
    if channel is not None and len(sources) > 1:
        sources = [s for s in sources if channel in s.channels] or sources
    if len(sources) != 1:
        raise CorpusError(
            f"{where}: recording {recording.id} spreads its channels over {len(sources)} files: "
            "seqkit reads one file per utterance; give the supervision one channel"
        )
    source = sources[0]
    if source.type != "file":
        raise CorpusError(
            f"{where}: recording {recording.id}'s audio is a {source.type} source "
            f"({str(source.source)[:80]!r}): seqkit reads audio files and runs no commands "
            "from a manifest; write the audio to files and list those"
        )
    index = source.channels.index(channel) if channel in source.channels else None
    if len(source.channels) <= 1:
        index = None
    return Path(source.source), index
