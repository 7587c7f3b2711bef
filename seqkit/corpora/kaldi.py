"""Kaldi data dirs as Kaldi and ESPnet write them: ``wav.scp``, ``text``, ``utt2spk``, segments.

A data dir describes one set of utterances::

    wav.scp    <recording-id> <audio file>       (a file soundfile reads)
    segments   <utterance-id> <recording-id> <start s> <end s>   (optional; end -1 = to the end)
    text       <utterance-id> <words ...>
    utt2spk    <utterance-id> <speaker-id>

Without ``segments`` each recording is one utterance, its id the recording id. Relative audio paths
are resolved as Kaldi resolves them, against the current folder (a recipe's ``s5/``); one not found
there is looked for beside the data dir and two folders up (``s5/`` of ``s5/data/train``).

Refused, in one line each: a ``wav.scp`` entry that is a command (ending in ``|``, e.g.
``sph2pipe -f wav x.sph |``) or an archive offset (``x.ark:123``): seqkit reads audio files, not
pipes (convert them to files first, e.g. with Kaldi's ``wav-copy``); a malformed line; an id listed
twice. Checked per utterance by prepare (one line each, or skipped with ``--skip-bad``): audio that
is missing, an empty transcript, a speaker ``utt2spk`` lacks.

A folder whose subfolders are data dirs named for splits (``data/`` holding ``train``,
``dev_clean``, ``test``, ...) is a corpus that defines its splits; one data dir alone defines none.
"""

from __future__ import annotations

import re
from pathlib import Path

from seqkit.corpora.source import CorpusSource, SourceUtterance, split_of_part
from seqkit.errors import CorpusError

REQUIRED = ("wav.scp", "text")
_ARCHIVE = re.compile(r"\.ark:\d+$")


def is_kaldi_dir(path: Path) -> bool:
    """Whether ``path`` is a Kaldi data dir (it has ``wav.scp`` and ``text``)."""
    return path.is_dir() and all((path / name).is_file() for name in REQUIRED)


def kaldi_split_dirs(path: Path) -> dict[Path, str]:
    """The data dirs under ``path`` that are named for a split, with that split ({} if none)."""
    if not path.is_dir() or is_kaldi_dir(path):
        return {}
    found = {}
    for sub in sorted(p for p in path.iterdir() if is_kaldi_dir(p)):
        split = split_of_part(sub.name)
        if split is not None:
            found[sub] = split
    return found


def read_kaldi(path: str | Path) -> CorpusSource:
    """A Kaldi data dir, or a folder of data dirs named for splits, as a corpus source.

    Raises:
        CorpusError: not a data dir, a command or archive in ``wav.scp``, a malformed line, an
            id listed twice, a segment naming a recording twice.
    """
    root = Path(path)
    if is_kaldi_dir(root):
        return CorpusSource("Kaldi data dir", root, _read_dir(root, None), defines_splits=False)
    parts = kaldi_split_dirs(root)
    if not parts:
        raise CorpusError(
            f"{root} is not a Kaldi data dir: expected wav.scp and text (and utt2spk, optional "
            "segments), or subfolders such as train/ and test/ holding them"
        )
    utterances = [u for sub, split in parts.items() for u in _read_dir(sub, split)]
    names = ", ".join(f"{sub.name} -> {split}" for sub, split in parts.items())
    return CorpusSource("Kaldi data dirs", root, utterances, defines_splits=True,
                        notes=(f"Kaldi data dirs as splits: {names}",))


def _read_dir(directory: Path, split: str | None) -> list[SourceUtterance]:
    recordings = _table(directory / "wav.scp")
    audio = {key: _audio_path(directory, value, where) for key, (value, where) in
             recordings.items()}
    texts = _table(directory / "text", allow_empty=True)
    speakers = _table(directory / "utt2spk") if (directory / "utt2spk").is_file() else {}
    segments_file = directory / "segments"
    spans: dict[str, tuple[str, float, float | None, str]] = {}
    if segments_file.is_file():
        for utt, (value, where) in _table(segments_file).items():
            spans[utt] = _segment(value, where)
    else:
        spans = {rec: (rec, 0.0, None, where) for rec, (_, where) in recordings.items()}
    ids = list(spans) + [u for u in texts if u not in spans] + [
        u for u in speakers if u not in spans and u not in texts]
    out = []
    for utt in ids:
        recording, start, end, where = spans.get(utt, ("", 0.0, None, ""))
        text, text_where = texts.get(utt, ("", ""))
        out.append(SourceUtterance(
            id=utt,
            audio=audio.get(recording),
            speaker=speakers[utt][0] if utt in speakers else None,
            text=text,
            start=start,
            duration=None if end is None else end - start,
            split=split,
            group=directory.name,
            where=where or text_where,
        ))
    return out


def _table(path: Path, allow_empty: bool = False) -> dict[str, tuple[str, str]]:
    """``key -> (rest of the line, "file:line")`` of a Kaldi table file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CorpusError(f"cannot read {path} ({err}): expected a UTF-8 Kaldi table") from None
    table: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.strip().split(maxsplit=1)
        where = f"{path}:{number}"
        if len(fields) < 2 and not allow_empty:
            raise CorpusError(f"{where}: expected '<id> <value>', found {line.strip()!r}: fix "
                              "the line")
        if fields[0] in table:
            raise CorpusError(f"{where}: id {fields[0]!r} is listed twice (first at "
                              f"{table[fields[0]][1]}): keep one line per id")
        table[fields[0]] = (fields[1].strip() if len(fields) > 1 else "", where)
    return table


def _audio_path(directory: Path, value: str, where: str) -> Path:
    if value.endswith("|"):
        raise CorpusError(
            f"{where}: the audio is a command ({value!r}): seqkit reads audio files, not pipes; "
            "write its output to a file (e.g. `wav-copy scp:wav.scp ark,scp:...` or run the "
            "command into a .wav) and list the file"
        )
    if _ARCHIVE.search(value):
        raise CorpusError(
            f"{where}: the audio is an archive offset ({value!r}): seqkit reads audio files; "
            "extract it to a .wav and list the file"
        )
    path = Path(value)
    if path.is_absolute():
        return path
    for base in (Path.cwd(), directory, directory.parent.parent):
        if (base / path).exists():
            return (base / path).resolve()
    return (Path.cwd() / path).resolve()


def _segment(value: str, where: str) -> tuple[str, float, float | None, str]:
    fields = value.split()
    try:
        if len(fields) != 3:
            raise ValueError
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        raise CorpusError(
            f"{where}: expected '<utterance> <recording> <start s> <end s>', found the value "
            f"{value!r}: fix the line"
        ) from None
    if start < 0 or (end != -1 and end <= start):
        raise CorpusError(f"{where}: segment {start} {end} is empty or reversed: fix the times")
    return fields[0], start, None if end == -1 else end, where
