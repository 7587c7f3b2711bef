"""Phone error rate side by side with a recognizer of people: a seqkit model vs pocketsphinx.

Issue #17's peer check. A trained seqkit model (greedy search, as ``seqkit evaluate`` runs it) and
pocketsphinx in allphone mode (:mod:`seqkit.bench.pocketsphinx`) decode the same utterances of a
prepared split and are scored the same way: 39 folded phones, PER = (S + D + I) / N over the
split, once as ``seqkit evaluate`` scores (``sil`` included) and once on the spoken phones only
(``sil`` dropped from reference and hypothesis), which neither recognizer's silence convention
sways. On real speech pocketsphinx's figure is the bar a model trained on synthesized voices is
measured against.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from seqkit.bench.pocketsphinx import AllphoneRecognizer, AllphoneSettings
from seqkit.data.checksums import verify_prepared
from seqkit.data.manifest import read_manifest
from seqkit.data.splits import SPLITS, split_manifest
from seqkit.decoding.evaluate import EvalReport, evaluate
from seqkit.decoding.recognize import check_acoustic_model
from seqkit.errors import ConfigError, CorpusError
from seqkit.metrics import phone_error_counts_without_silence
from seqkit.models.checkpoint import load_model
from seqkit.progress import ProgressFn


def report_row(recognizer: str, report: EvalReport) -> dict[str, Any]:
    """One row of the peer table: PER with and without ``sil`` (percent), counts, speed."""
    without_sil = phone_error_counts_without_silence(
        [u.ref for u in report.utterances], [u.hyp for u in report.utterances]
    )
    return {
        "recognizer": recognizer,
        "settings": report.checkpoint,
        "utterances": len(report.utterances),
        "failed": len(report.failures),
        "ref_phones": report.ref_phones,
        "per_pct": 100.0 * report.per,
        "ref_phones_no_sil": without_sil.ref_len,
        "per_no_sil_pct": 100.0 * without_sil.rate,
        "utt_per_s": report.utterances_per_second,
    }


def run(
    checkpoint: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    split: str = "test",
    settings: AllphoneSettings = AllphoneSettings(),
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Score a seqkit model and pocketsphinx on the same utterances of a prepared split.

    pocketsphinx decodes exactly the utterances the model decoded (one whose audio fails is
    left out of both).

    Args:
        checkpoint: a trained CTC or transducer run directory or checkpoint file.
        data_dir: a prepared folder (``seqkit data prepare``).
        split: which manifest to score. Default ``"test"``.
        settings: pocketsphinx's settings. Default: the issue's.
        progress: optional ``progress(description, done, total)`` callback.

    Returns:
        Two rows (seqkit, then pocketsphinx), each from :func:`report_row`.

    Raises:
        BackendUnavailableError: pocketsphinx is not installed (checked before decoding).
        ConfigError: an unknown split.
        CorpusError: no manifest for the split, or it is empty.
        CheckpointError: not a trained acoustic model.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    manifest = split_manifest(Path(data_dir), split)
    if not manifest.is_file():
        raise CorpusError(f"{manifest} not found: expected a folder made by seqkit data prepare")
    verify_prepared(manifest.parent, [manifest.name])
    peer = AllphoneRecognizer(settings)  # first: a missing extra fails before any decoding
    loaded = load_model(checkpoint)
    check_acoustic_model(loaded)
    utterances = read_manifest(manifest)
    ours = evaluate(loaded, utterances, beam=1, progress=progress)
    decoded = {u.id for u in ours.utterances}
    theirs = peer.evaluate([u for u in utterances if u.id in decoded], progress=progress)
    return [report_row(f"seqkit {loaded.kind} (greedy)", ours),
            report_row("pocketsphinx (allphone)", theirs)]
