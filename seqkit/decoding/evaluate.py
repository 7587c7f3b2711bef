"""Phone error rate of a model on a manifest split, with a report a person can read.

Scoring follows the TIMIT literature (see :mod:`seqkit.metrics`): reference and hypothesis are
folded to 39 phones (``q`` deleted, ``sil`` runs merged), PER = (S + D + I) / N over the whole
split. The 61-phone PER is reported too when the model outputs 61 phones.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from seqkit.atomic import write_atomic, write_json
from seqkit.data.manifest import Utterance
from seqkit.data.phones import PHONES_39, fold_for_scoring
from seqkit.decoding.recognize import DecodeOptions, recognize_utterances
from seqkit.errors import CorpusError
from seqkit.metrics import (
    CORRECT,
    DELETION,
    INSERTION,
    SUBSTITUTION,
    confusion_counts,
    edit_alignment,
    error_counts,
    phone_error_counts,
)
from seqkit.models.checkpoint import LoadedModel
from seqkit.progress import ProgressFn


@dataclass(frozen=True)
class UtteranceResult:
    """Scoring of one utterance (39-phone folding; public: ``seqkit.UtteranceResult``).

    Attributes:
        id: utterance id.
        ref: folded reference phones.
        hyp: folded hypothesis phones.
        sub: substitutions.
        dels: deletions.
        ins: insertions.
        ref_phones: N, folded reference length.
        per: (S + D + I) / N for this utterance.
    """

    id: str
    ref: tuple[str, ...]
    hyp: tuple[str, ...]
    sub: int
    dels: int
    ins: int
    ref_phones: int
    per: float


@dataclass(frozen=True)
class EvalReport:
    """Everything ``seqkit evaluate`` reports (public: ``seqkit.EvalReport``).

    What :meth:`seqkit.Recognizer.evaluate` returns. Error rates are fractions here and
    percents in :meth:`to_dict` (``per_pct``), as ``seqkit evaluate --format json`` prints them.

    Example:
        >>> report = seqkit.load("runs/ctc").evaluate("prepared", split="test")
        >>> 0.0 <= report.per <= 1.0, report.ref_phones == sum(u.ref_phones
        ...                                                     for u in report.utterances)
        (True, True)
        >>> round(report.to_dict()["per_pct"], 6) == round(100 * report.per, 6)
        True

    Attributes:
        per: PER on 39 folded phones, a fraction.
        per61: PER on the 61 phones (None when the model's phone set is not 61).
        sub: substitutions, summed over the utterances (39 phones).
        dels: deletions, summed.
        ins: insertions, summed.
        ref_phones: N, the reference phones, summed.
        per_phone: 39-phone symbol -> {"ref": count, "errors": S + D, "rate": errors / ref}.
        confusions: most frequent substitutions ``(ref, hyp, count)``, most frequent first.
        confusion_matrix: 39 × 39 counts, rows reference, columns hypothesis (PHONES_39 order).
        utterances: per-utterance results.
        failures: ``(utterance id, message)`` for utterances that could not be decoded.
        audio_seconds: seconds of audio decoded.
        elapsed: wall-clock seconds spent.
        checkpoint: the file evaluated.
        beam: the beam (1 = greedy).
        kind: ``"ctc"`` or ``"transducer"`` (or the peer's name in ``seqkit bench peers``).
    """

    per: float
    per61: float | None
    sub: int
    dels: int
    ins: int
    ref_phones: int
    per_phone: dict[str, dict[str, float]]
    confusions: tuple[tuple[str, str, int], ...]
    confusion_matrix: tuple[tuple[int, ...], ...]
    utterances: tuple[UtteranceResult, ...]
    failures: tuple[tuple[str, str], ...] = ()
    audio_seconds: float = 0.0
    elapsed: float = 0.0
    checkpoint: str = ""
    beam: int = 1
    kind: str = ""

    @property
    def utterances_per_second(self) -> float:
        """Decoded utterances per wall-clock second."""
        return len(self.utterances) / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``per_pct``, ``per61_pct``, ``sub``, ``del``, ``ins``, ...

        Every error rate in it is a percent and its key ends in ``_pct`` (the attributes hold
        fractions).
        """
        return {
            "per_pct": _pct(self.per),
            "per61_pct": None if self.per61 is None else _pct(self.per61),
            "sub": self.sub,
            "del": self.dels,
            "ins": self.ins,
            "ref_phones": self.ref_phones,
            "per_phone": {
                phone: {"ref": row["ref"], "errors": row["errors"], "rate_pct": _pct(row["rate"])}
                for phone, row in self.per_phone.items()
            },
            "confusions": [list(c) for c in self.confusions],
            "confusion_phones": list(PHONES_39),
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "utterances": [_utterance_dict(u) for u in self.utterances],
            "failures": [list(f) for f in self.failures],
            "audio_seconds": self.audio_seconds,
            "elapsed": self.elapsed,
            "utterances_per_second": self.utterances_per_second,
            "checkpoint": self.checkpoint,
            "beam": self.beam,
            "kind": self.kind,
        }


def _pct(fraction: float) -> float:
    return 100.0 * fraction


def _utterance_dict(u: UtteranceResult) -> dict[str, Any]:
    return {"id": u.id, "ref": list(u.ref), "hyp": list(u.hyp), "sub": u.sub, "del": u.dels,
            "ins": u.ins, "ref_phones": u.ref_phones, "per_pct": _pct(u.per)}


def score_hypotheses(
    refs: Sequence[Sequence[str]],
    hyps: Sequence[Sequence[str]],
    ids: Sequence[str],
    *,
    phone_set: int | None = 61,
    top_confusions: int = 10,
) -> EvalReport:
    """Score hypotheses against references (no model involved).

    Args:
        refs: reference phones per utterance (61-phone TIMIT symbols).
        hyps: hypothesis phones per utterance (61, 48 or 39 set).
        ids: utterance ids.
        phone_set: the hypotheses' phone set; the 61-phone PER is computed only for 61.
        top_confusions: substitutions listed in :attr:`EvalReport.confusions`. Default 10.

    Returns:
        The report, without timing figures.

    Raises:
        CorpusError: the three sequences differ in length.
        ConfigError: a phone is not a TIMIT symbol.
    """
    if not len(refs) == len(hyps) == len(ids):
        raise CorpusError(
            f"expected as many references, hypotheses and ids, found {len(refs)}, {len(hyps)}, "
            f"{len(ids)}"
        )
    utterances = []
    folded_pairs = []
    for uid, ref, hyp in zip(ids, refs, hyps, strict=True):
        fref, fhyp = fold_for_scoring(ref), fold_for_scoring(hyp)
        folded_pairs.append((fref, fhyp))
        counts = error_counts(fref, fhyp)
        utterances.append(
            UtteranceResult(
                uid, tuple(fref), tuple(fhyp), counts.sub, counts.dels, counts.ins,
                counts.ref_len, counts.rate
            )
        )
    total = phone_error_counts(refs, hyps, fold=39)
    per61 = phone_error_counts(refs, hyps, fold=61).rate if phone_set == 61 else None
    confusion = confusion_counts(folded_pairs)
    per_phone: dict[str, dict[str, float]] = {}
    for phone in PHONES_39:
        ref_count = sum(n for (r, _), n in confusion.items() if r == phone)
        if ref_count == 0:
            continue
        errors = ref_count - confusion.get((phone, phone), 0)
        per_phone[phone] = {"ref": ref_count, "errors": errors, "rate": errors / ref_count}
    substitutions = Counter(
        {(r, h): n for (r, h), n in confusion.items() if r is not None and h is not None and r != h}
    )
    confusions = [(r, h, n) for (r, h), n in substitutions.most_common(top_confusions)]
    index = {p: i for i, p in enumerate(PHONES_39)}
    matrix = [[0] * len(PHONES_39) for _ in PHONES_39]
    for (r, h), n in confusion.items():
        if r in index and h in index:
            matrix[index[r]][index[h]] += n
    return EvalReport(
        per=total.rate,
        per61=per61,
        sub=total.sub,
        dels=total.dels,
        ins=total.ins,
        ref_phones=total.ref_len,
        per_phone=per_phone,
        confusions=tuple(confusions),
        confusion_matrix=tuple(tuple(row) for row in matrix),
        utterances=tuple(utterances),
    )


def evaluate(
    loaded: LoadedModel,
    utterances: Sequence[Utterance],
    *,
    beam: int = 1,
    options: DecodeOptions | None = None,
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Decode manifest utterances and score them.

    Args:
        loaded: a CTC or transducer model (:func:`seqkit.models.checkpoint.load_model`).
        utterances: manifest entries (:func:`seqkit.data.manifest.read_manifest`).
        beam: 1 = greedy, K > 1 = beam search (ignored when ``options`` is given).
        options: full search options. Default ``DecodeOptions(beam=beam)``.
        progress: optional ``progress(description, done, total)`` callback.

    Returns:
        The report; utterances whose audio fails are listed in ``failures`` and not scored.

    Raises:
        CheckpointError: not an acoustic model.
        CorpusError: no utterances.
    """
    if not utterances:
        raise CorpusError("no utterances to evaluate: the manifest split is empty")
    options = options or DecodeOptions(beam=beam)
    result = recognize_utterances(loaded, utterances, options=options, progress=progress)
    by_id = {u.id: u for u in utterances}
    refs = [by_id[h.name].phone_labels for h in result.hypotheses]
    hyps = [list(h.phones) for h in result.hypotheses]
    report = score_hypotheses(
        refs, hyps, [h.name for h in result.hypotheses], phone_set=loaded.phone_set
    )
    return replace(report, failures=result.failures, audio_seconds=result.audio_seconds,
                   elapsed=result.elapsed, checkpoint=str(loaded.path), beam=options.beam,
                   kind=str(loaded.kind))


def format_alignments(report: EvalReport) -> str:
    """sclite-like per-utterance text: aligned REF / HYP lines, an EVAL line of S/D/I marks."""
    blocks = []
    for u in report.utterances:
        ref_row, hyp_row, eval_row = ["REF: "], ["HYP: "], ["EVAL:"]
        for op, r, h in edit_alignment(u.ref, u.hyp):
            ref_tok = r if r is not None else "*" * len(h or "")
            hyp_tok = h if h is not None else "*" * len(r or "")
            if op == CORRECT:
                ref_tok, hyp_tok = ref_tok.lower(), hyp_tok.lower()
            else:
                ref_tok, hyp_tok = ref_tok.upper(), hyp_tok.upper()
            mark = {CORRECT: "", SUBSTITUTION: "S", DELETION: "D", INSERTION: "I"}[op]
            width = max(len(ref_tok), len(hyp_tok), len(mark))
            ref_row.append(ref_tok.ljust(width))
            hyp_row.append(hyp_tok.ljust(width))
            eval_row.append(mark.ljust(width))
        correct = u.ref_phones - u.sub - u.dels
        blocks.append(
            "\n".join(
                [
                    f"id: ({u.id})",
                    f"Scores: (#C #S #D #I) {correct} {u.sub} {u.dels} {u.ins}"
                    f"  PER {100 * u.per:.1f}%",
                    " ".join(ref_row).rstrip(),
                    " ".join(hyp_row).rstrip(),
                    " ".join(eval_row).rstrip(),
                ]
            )
        )
    header = (
        f"# seqkit evaluate: PER {100 * report.per:.2f}% on {report.ref_phones} reference phones "
        f"(39-phone folding); correct phones lower case, errors upper case, *** a gap\n"
    )
    return header + "\n\n".join(blocks) + "\n"


def plot_confusion(report: EvalReport, path: Path) -> None:
    """Draw the 39 × 39 confusion matrix (row-normalized) as a PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(report.confusion_matrix, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    fig, ax = plt.subplots(figsize=(10, 9), dpi=100)
    image = ax.imshow(share, cmap="viridis", vmin=0.0, vmax=1.0)
    ticks = range(len(PHONES_39))
    ax.set_xticks(ticks, PHONES_39, rotation=90, fontsize=7)
    ax.set_yticks(ticks, PHONES_39, fontsize=7)
    ax.set_xlabel("hypothesis")
    ax.set_ylabel("reference")
    ax.set_title(f"Phone confusions (39 phones, row-normalized), PER {100 * report.per:.1f}%")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_report(report: EvalReport, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.json``, ``alignments.txt`` (sclite-like) and ``confusion.png``, atomically.

    Args:
        report: from :func:`evaluate`.
        directory: created if missing; files in it with these names are replaced.

    Returns:
        The written paths by name (``"json"``, ``"alignments"``, ``"confusion"``).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "report.json",
        "alignments": out / "alignments.txt",
        "confusion": out / "confusion.png",
    }
    write_json(paths["json"], report.to_dict(), indent=2)
    aligned = format_alignments(report)
    write_atomic(paths["alignments"], lambda p: p.write_text(aligned, encoding="utf-8"))
    write_atomic(paths["confusion"], lambda p: plot_confusion(report, p))
    return paths
