"""The main job in one call (``seqkit demo``, ``make demo``).

Synthesize the default corpus → prepare it → train the ``recipes/synth`` CTC (or transducer)
recipe for a bounded time → evaluate PER on the held-out test voices → decode a sentence no model
has seen, spoken by a test voice, with an alignment picture. Every stage is cached in the output
directory, so running the demo again reuses the corpus and resumes an interrupted training run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import seqkit
from seqkit.atomic import write_atomic
from seqkit.data.manifest import read_manifest
from seqkit.data.phones import fold_for_scoring
from seqkit.data.prepare import prepare_corpus
from seqkit.data.sentences import SentenceGenerator
from seqkit.data.synth import (
    DEFAULT_SENTENCES,
    DEFAULT_SPEAKERS,
    read_speakers,
    synthesize_corpus,
    synthesize_utterance,
)
from seqkit.decoding.evaluate import evaluate, write_report
from seqkit.decoding.ngram import load_lm_source
from seqkit.decoding.plots import plot_alignment
from seqkit.decoding.recognize import DecodeOptions, recognize_files
from seqkit.errors import ConfigError
from seqkit.models.checkpoint import load_model
from seqkit.progress import ProgressFn
from seqkit.training import load_recipe, read_run_log, train
from seqkit.training.trainer import LogFn

MODELS = {"ctc": "synth/ctc_blstm", "transducer": "synth/transducer"}  # built-in recipes
# How the demo searches for its headline PER (greedy is reported beside it). The CTC LM weight
# and insertion bonus were chosen on the dev voices: greedy CTC deletes phones the LM restores.
SEARCH: dict[str, dict[str, Any]] = {
    "ctc": {
        "name": "beam 4 + phone trigram LM (weight 0.5, insertion bonus 0.5)",
        "beam": 4,
        "lm_weight": 0.5,
        "insertion_bonus": 0.5,
    },
    "transducer": {"name": "batched beam 4", "beam": 4, "lm_weight": 0.0, "insertion_bonus": 0.0},
}


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does.

    Attributes:
        out: directory for the corpus, prepared data, run, reports and pictures.
        minutes: training budget in minutes (across resumed runs); early stopping may end sooner.
        model: ``"ctc"`` (built-in recipe synth/ctc_blstm) or ``"transducer"``.
        seed: one seed for corpus, training and the unseen sample.
        speakers, sentences: corpus size (the synth defaults: about 0.8 h of training audio).
        jobs: synthesis worker processes.
    """

    out: Path = Path("demo")
    minutes: float = 10.0
    model: str = "ctc"
    seed: int = 0
    speakers: int = DEFAULT_SPEAKERS
    sentences: int = DEFAULT_SENTENCES
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"unknown demo model {self.model!r}: choose ctc or transducer")
        if self.minutes <= 0:
            raise ConfigError(f"--minutes must be positive, found {self.minutes}")


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured (``report`` is what ``OUT/report.json`` holds)."""

    report: dict[str, Any]
    path: Path


def _write_json(path: Path, data: Any) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _corpus_matches(corpus: Path, options: DemoOptions) -> bool:
    try:
        meta = json.loads((corpus / "splits.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        meta.get("seed") == options.seed
        and meta.get("sentences_per_speaker") == options.sentences
        and len(meta.get("speakers", {})) == options.speakers
        and meta.get("clean") is False
        and meta.get("seqkit_version") == seqkit.__version__
    )


def run_demo(
    options: DemoOptions,
    *,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
    stage: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the whole demo; see the module docstring.

    Args:
        options: what to run.
        progress: ``progress(description, done, total)`` for every long stage.
        log: called with every training ``metrics.jsonl`` record.
        stage: called with a one-line description as each stage starts (or is reused).

    Returns:
        The report (also written to ``OUT/report.json``).

    Raises:
        SeqkitError subclasses from the stages (corpus, config, training, checkpoint errors).
    """
    say = stage or (lambda _message: None)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    state = _read_state(state_path)

    corpus, prepared = out / "corpus", out / "prepared"
    if _corpus_matches(corpus, options):
        say(f"reusing corpus {corpus}")
    else:
        say(f"synthesizing {options.speakers} speakers x {options.sentences} sentences → {corpus}")
        synthesize_corpus(
            corpus,
            speakers=options.speakers,
            sentences=options.sentences,
            seed=options.seed,
            jobs=options.jobs,
            force=True,
            progress=progress,
        )
        state = {}  # a new corpus invalidates the prepared data and every run
        _write_json(state_path, state)
    if state.get("prepared") and (prepared / "stats.json").exists():
        say(f"reusing prepared data {prepared}")
    else:
        say(f"preparing manifests and feature statistics → {prepared}")
        prepare_corpus(corpus, prepared, force=True, progress=progress)
        state["prepared"] = True
        _write_json(state_path, state)

    run_dir = out / f"run-{options.model}"
    trained = state.get("trained", {}).get(options.model)
    if trained and trained["minutes"] >= options.minutes and (run_dir / "best.pt").exists():
        say(f"reusing trained model {run_dir}")
    else:
        recipe = load_recipe(MODELS[options.model], [f"train.seed={options.seed}"])
        # resume only a run this demo started on this corpus; anything else starts over
        resume = options.model in state.get("started", []) and (run_dir / "last.pt").exists()
        budget = options.minutes - (read_run_log(run_dir).epoch_seconds / 60.0 if resume else 0.0)
        say(
            f"{'resuming' if resume else 'training'} {options.model} → {run_dir} "
            f"({max(budget, 0.0):.1f} min budget)"
        )
        state["started"] = sorted({*state.get("started", []), options.model})
        _write_json(state_path, state)
        summary = train(
            recipe,
            prepared,
            run_dir,
            resume=resume,
            force=not resume,
            max_minutes=max(budget, 0.05),
            progress=progress,
            log=log,
        )
        if summary.stopped == "interrupted":
            raise KeyboardInterrupt
        epochs = summary.epochs
        trained = {
            "minutes": options.minutes,
            "train_seconds": sum(e.seconds for e in epochs),
            "epochs": len(epochs),
            "best_epoch": summary.best_epoch,
            "best_dev_per": summary.best_score,
            "stopped": summary.stopped,
            "frames_per_s": sum(e.frames_per_s for e in epochs) / max(len(epochs), 1),
        }
        state.setdefault("trained", {})[options.model] = trained
        _write_json(state_path, state)

    say(f"evaluating {run_dir / 'best.pt'} on the held-out test voices")
    loaded = load_model(run_dir)
    test = read_manifest(prepared / "test.jsonl")
    greedy = evaluate(loaded, test, progress=progress)
    search = SEARCH[options.model]
    say(f"evaluating again with {search['name']}")
    lm = load_lm_source(prepared, loaded.phone_set) if search["lm_weight"] else None
    report = evaluate(
        loaded,
        test,
        progress=progress,
        options=DecodeOptions(
            beam=search["beam"],
            lm=lm,
            lm_weight=search["lm_weight"],
            insertion_bonus=search["insertion_bonus"],
            transducer_search="batched",
        ),
    )
    report_dir = out / f"report-{options.model}"
    files = write_report(report, report_dir)

    say("decoding a sentence no model has seen, spoken by a test voice")
    speaker = next(s for s in read_speakers(corpus) if s.split == "test")
    text = SentenceGenerator(options.seed + 1_000_003).sentence()
    wav = synthesize_utterance(out / "sample", "SAMPLE", text, speaker, seed=options.seed)
    reference = [line.split()[2] for line in wav.with_suffix(".PHN").read_text().splitlines()]
    decoded = recognize_files(loaded, [wav], keep_features=True)
    hypothesis = decoded.hypotheses[0]
    picture = plot_alignment(
        hypothesis, out / f"alignment-{options.model}.png", title=f"{options.model}: {text}"
    )

    def folded(phones: list[str] | tuple[str, ...]) -> list[str]:
        return fold_for_scoring(phones)

    result = {
        "per": report.per,
        "per61": report.per61,
        "per_greedy": greedy.per,
        "search": search["name"],
        "sub": report.sub,
        "del": report.dels,
        "ins": report.ins,
        "ref_phones": report.ref_phones,
        "model": options.model,
        "train_seconds": trained["train_seconds"],
        "train_minutes_budget": options.minutes,
        "epochs": trained["epochs"],
        "best_epoch": trained["best_epoch"],
        "best_dev_per": trained["best_dev_per"],
        "stopped": trained["stopped"],
        "frames_per_s": trained["frames_per_s"],
        "test_utterances": len(report.utterances),
        "test_speakers": len({u.speaker for u in test}),
        "eval_rtf": report.elapsed / report.audio_seconds if report.audio_seconds else None,
        "decode_rtf": decoded.rtf,
        "seed": options.seed,
        "seqkit_version": seqkit.__version__,
        "sample": {
            "text": text,
            "speaker": speaker.id,
            "audio": str(wav),
            "reference": folded(reference),
            "hypothesis": folded(hypothesis.phones),
        },
        "paths": {
            "curves": str(run_dir / "curves.png"),
            "confusion": str(files.get("confusion", report_dir / "confusion.png")),
            "alignment": str(picture),
            "report_dir": str(report_dir),
            "run_dir": str(run_dir),
        },
    }
    _write_json(out / "report.json", result)
    return DemoResult(report=result, path=out / "report.json")
