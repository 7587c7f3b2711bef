"""The cheap screen of #17: how human a corpus's voices sound to a recognizer of people.

pocketsphinx (allphone, the peer check's settings: :mod:`seqkit.bench.pocketsphinx`) decodes every
utterance of a TIMIT-layout corpus and is scored against the phones the speaker was asked to say
(the corpus's labels), on 39 folded phones with ``sil`` dropped from both sides. Its model was
trained on people, so the closer a voice's figure comes to real speakers', the more its phones
sound like people's. Per the issue: espeak-ng voices ~71%, real TIMIT speakers 48-52%. It costs
seconds per speaker and no training, so a voice engine can be judged before a corpus is made
from it.

Rows are per speaker, grouped by the engine and voice the corpus's ``splits.json`` records for
each speaker: ``engine`` as ``seqkit data synth --engines`` spells it (a corpus written before
speakers recorded it is all ``espeak``); the voice is an espeak speaker's ``accent+variant`` and
another engine's ``variant`` (its voice). A corpus without ``splits.json`` (real TIMIT, the NLTK
sample) has no engine.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from seqkit.bench.pocketsphinx import AllphoneRecognizer, AllphoneSettings
from seqkit.corpora.timit.layout import find_utterances, read_utterance, split_utterances
from seqkit.data.checksums import verify_prepared
from seqkit.data.manifest import Utterance, read_manifest
from seqkit.data.splits import SPLITS, SPLITS_FILE, split_manifest
from seqkit.decoding.evaluate import UtteranceResult
from seqkit.errors import CorpusError
from seqkit.metrics import phone_error_counts_without_silence
from seqkit.progress import ProgressFn

Voice = tuple[str | None, str | None]  # (engine, voice); None where the corpus does not say
_UNNAMED: Voice = (None, None)
_ESPEAK = "espeak"  # espeak-ng's name in `seqkit data synth --engines` and splits.json


class _BySpeaker(Protocol):
    @property
    def speaker(self) -> str: ...


_S = TypeVar("_S", bound=_BySpeaker)


def _first_per_speaker(items: Sequence[_S], limit: int | None) -> list[_S]:
    """Each speaker's first ``limit`` items (utterances or their files), in order; all for None."""
    if limit is None:
        return list(items)
    counts: Counter[str] = Counter()
    kept = []
    for item in items:
        counts[item.speaker] += 1
        if counts[item.speaker] <= limit:
            kept.append(item)
    return kept


def read_corpus(
    path: str | os.PathLike[str], *, per_speaker: int | None = None
) -> tuple[list[Utterance], Path | None]:
    """The utterances (all splits, SA sentences left out) of a corpus or a prepared folder.

    Args:
        path: a TIMIT-layout corpus (synthesized, TIMIT, the NLTK sample) or a folder made from
            one by ``seqkit data prepare``.
        per_speaker: keep each speaker's first this many (split order), read no others.
            Default all.

    Returns:
        The utterances and the corpus's ``splits.json`` (for a prepared folder: the one beside
        the audio's corpus), or None where there is none.

    Raises:
        CorpusError, AudioError: not a corpus or prepared folder, or an utterance fails its checks.
    """
    root = Path(path)
    manifests = [split_manifest(root, s) for s in SPLITS if split_manifest(root, s).is_file()]
    if manifests:
        verify_prepared(root, [m.name for m in manifests])
        utterances = _first_per_speaker(
            [u for manifest in manifests for u in read_manifest(manifest)], per_speaker)
        corpus_dirs = Path(utterances[0].audio).parents if utterances else ()
    else:
        splits = split_utterances(root, find_utterances(root))
        kept = _first_per_speaker([files for s in SPLITS for files in splits[s]], per_speaker)
        utterances = [read_utterance(files)[0] for files in kept]
        corpus_dirs = (root,)
    # the audio lies at CORPUS/PART/DR/SPEAKER/ (CORPUS/dr-speaker/ for the NLTK sample)
    for folder in list(corpus_dirs)[:4]:
        for candidate in folder.iterdir() if folder.is_dir() else ():
            if candidate.name.lower() == SPLITS_FILE and candidate.is_file():
                return utterances, candidate
    return utterances, None


def speaker_voices(splits_file: Path | None) -> dict[str, Voice]:
    """Engine and voice of each speaker a ``splits.json`` describes (upper-case ids).

    Raises:
        CorpusError: the file is not JSON.
    """
    if splits_file is None:
        return {}
    try:
        meta = json.loads(splits_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CorpusError(f"cannot read {splits_file} ({err}): expected the corpus's JSON "
                          "split file; fix it or synthesize the corpus again") from None
    speakers = meta.get("speakers") if isinstance(meta, dict) else None
    if not isinstance(speakers, dict):
        return {}
    voices: dict[str, Voice] = {}
    for speaker, fields in speakers.items():
        fields = fields if isinstance(fields, dict) else {}
        engine = str(fields.get("engine") or _ESPEAK)
        parts = ("accent", "variant") if engine == _ESPEAK else ("variant",)
        voice = "+".join(str(fields[k]) for k in parts if fields.get(k))
        voices[speaker.upper()] = (engine, voice or None)
    return voices


def _row(voice: Voice, speaker: str, results: Sequence[UtteranceResult], failed: int
         ) -> dict[str, Any]:
    spoken = phone_error_counts_without_silence([r.ref for r in results],
                                                [r.hyp for r in results])
    ref_phones = sum(r.ref_phones for r in results)
    errors = sum(r.sub + r.dels + r.ins for r in results)
    return {
        "engine": voice[0],
        "voice": voice[1],
        "speaker": speaker,
        "utterances": len(results),
        "failed": failed,
        "ref_phones_no_sil": spoken.ref_len,
        "per_no_sil_pct": 100.0 * spoken.rate,
        "per_pct": 100.0 * errors / ref_phones if ref_phones else 0.0,
    }


def run(
    path: str | os.PathLike[str],
    *,
    per_speaker: int | None = None,
    settings: AllphoneSettings = AllphoneSettings(),
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """pocketsphinx's phone error without ``sil`` per speaker of a corpus (see the module doc).

    Args:
        path: a TIMIT-layout corpus or a prepared folder (every split is read).
        per_speaker: decode at most this many utterances per speaker (corpus order). Default all.
        settings: pocketsphinx's settings. Default: the peer check's.
        progress: optional ``progress(description, done, total)`` callback.

    Returns:
        One row per speaker, ordered by engine and speaker, then one ``speaker = "all"`` row per
        engine: ``engine``, ``voice``, ``speaker``, ``utterances``, ``failed``,
        ``ref_phones_no_sil``, ``per_no_sil_pct`` and ``per_pct`` (with ``sil``).

    Raises:
        BackendUnavailableError: pocketsphinx is not installed (checked before reading).
        CorpusError: no utterances, or as :func:`read_corpus`.
    """
    peer = AllphoneRecognizer(settings)
    utterances, splits_file = read_corpus(path, per_speaker=per_speaker)
    if not utterances:
        raise CorpusError(f"{path}: no utterances to screen: expected a TIMIT-layout corpus or "
                          "a prepared folder with utterances")
    report = peer.evaluate(utterances, progress=progress)
    voices = speaker_voices(splits_file)
    speaker_of = {u.id: u.speaker for u in utterances}
    results: dict[str, list[UtteranceResult]] = {u.speaker: [] for u in utterances}
    for result in report.utterances:
        results[speaker_of[result.id]].append(result)
    failed = {speaker: 0 for speaker in results}
    for uid, _ in report.failures:
        failed[speaker_of[uid]] += 1
    rows = [_row(voices.get(s, _UNNAMED), s, results[s], failed[s])
            for s in sorted(results, key=lambda s: (voices.get(s, _UNNAMED)[0] or "", s))]
    for engine in dict.fromkeys(row["engine"] for row in rows):
        mine = [s for s in results if voices.get(s, _UNNAMED)[0] == engine]
        rows.append(_row((engine, None), "all", [r for s in mine for r in results[s]],
                         sum(failed[s] for s in mine)))
    return rows
