"""The main job in one call (``seqkit demo``, ``make demo``).

Synthesize the default corpus → prepare it → train the ``recipes/synth`` CTC recipe (or the
pretrained transducer: CTC encoder, phone LM, then the transducer initialized from both) for a
bounded time → evaluate PER on the held-out test voices → decode a sentence no model
has seen, spoken by a test voice, with an alignment picture. Every stage is cached in the output
directory, so running the demo again reuses the corpus and resumes an interrupted training run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import seqkit
from seqkit.atomic import write_json
from seqkit.corpora.timit.prepare import prepare_corpus
from seqkit.data.checksums import verify_prepared
from seqkit.data.manifest import Utterance, read_manifest
from seqkit.data.phones import fold_for_scoring
from seqkit.data.splits import SPLITS_FILE, split_manifest
from seqkit.decoding.evaluate import EvalReport, evaluate, write_report
from seqkit.decoding.ngram import load_lm_source
from seqkit.decoding.plots import plot_alignment
from seqkit.decoding.recognize import DecodeOptions, recognize_files
from seqkit.errors import CheckpointError, ConfigError
from seqkit.models.checkpoint import LoadedModel, load_model
from seqkit.progress import ProgressFn
from seqkit.seeds import STREAM_PRIME, stream_seed
from seqkit.synth.corpus import (
    CORPUS_FORMAT,
    DEFAULT_SENTENCES,
    DEFAULT_SPEAKERS,
    DEFAULT_VOICE_SPEAKERS,
    read_speakers,
    synthesize_corpus,
    synthesize_utterance,
)
from seqkit.synth.engines import available_engines, engine_status
from seqkit.synth.sentences import SentenceGenerator
from seqkit.training import TrainSummary, load_recipe, read_run_log, train
from seqkit.training.pretrain import (
    PretrainedTransducerRecipes,
    epoch_seconds,
    train_pretrained_transducer,
)
from seqkit.training.trainer import LogFn, interruption_of


class DemoModel(StrEnum):
    """Which recognizer the demo trains."""

    ctc = "ctc"
    transducer = "transducer"


MODELS = {DemoModel.ctc: "synth/ctc_blstm", DemoModel.transducer: "synth/transducer"}  # built-in
# The transducer is Graves 2013's PreTrans: this share of the budget trains the CTC recipe (its
# encoder initializes the transducer's), a phone LM (synth/lm) initializes the prediction
# network, and the transducer trains for the rest of the budget.
PRETRAIN_CTC_SHARE = 0.5
# The demo's budget covers synthesis and training (what `make demo` takes beyond it: preparing the
# manifests, evaluating, decoding the sample, about a minute and a half on 2 cores).
DEFAULT_MINUTES = 13.0
# Training's least share of the budget, however long synthesis took.
MIN_TRAIN_SHARE = 0.25
# How the demo searches for its headline PER (greedy is reported beside it). The CTC LM weight
# and insertion bonus were chosen on the dev voices: greedy CTC deletes phones the LM restores.
SEARCH: dict[str, dict[str, Any]] = {
    "ctc": {
        "name": "beam 4 + phone trigram LM (weight 0.5, insertion bonus 0.5)",
        "beam": 4,
        "lm_weight": 0.5,
        "insertion_bonus": 0.5,
    },
    # shallow fusion with the trigram raised the pretrained transducer's dev PER (32.4% -> 34.4%
    # at weight 0.3, recipes/synth/README.md): its prediction network is already a phone LM
    "transducer": {"name": "batched beam 4", "beam": 4, "lm_weight": 0.0, "insertion_bonus": 0.0},
}


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does.

    Attributes:
        out: directory for the corpus, prepared data, run, reports and pictures.
        minutes: budget in minutes for synthesizing the corpus and training (across resumed
            runs): training gets what synthesis left (as long as when the corpus was made, if
            it is reused), at least :data:`MIN_TRAIN_SHARE` of it; early stopping may end it
            sooner.
        model: ``ctc`` (built-in recipe synth/ctc_blstm) or ``transducer``.
        seed: one seed for corpus, training and the unseen sample.
        speakers, sentences: corpus size (the synth defaults: about 0.8 h of training audio).
        engines: voice engines for the train split; None: every engine installed here.
        voice_speakers: training speakers made from each voice of people.
        jobs: synthesis worker processes.
    """

    out: Path = Path("demo")
    minutes: float = DEFAULT_MINUTES
    model: DemoModel = DemoModel.ctc
    seed: int = 0
    speakers: int = DEFAULT_SPEAKERS
    sentences: int = DEFAULT_SENTENCES
    engines: tuple[str, ...] | None = None
    voice_speakers: int = DEFAULT_VOICE_SPEAKERS
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"unknown demo model {self.model!r}: choose ctc or transducer")
        object.__setattr__(self, "model", DemoModel(self.model))
        if self.minutes <= 0:
            raise ConfigError(f"--minutes must be positive, found {self.minutes}")
        if self.engines is None:
            object.__setattr__(self, "engines", available_engines())


@dataclass(frozen=True)
class TrainingFacts:
    """What training the demo's model did (kept in ``OUT/state.json`` for reuse).

    Attributes:
        minutes: the training budget it was given (the demo's budget less synthesis).
        train_seconds: wall-clock seconds of training. CTC: this invocation's (a last epoch cut
            short by the budget included) plus the completed epochs of those it resumed; the
            pretrained transducer: the epochs of its three stages.
        epochs: epochs completed.
        best_epoch: epoch of ``best.pt``.
        best_dev_per_pct: dev PER of ``best.pt`` in %.
        stopped: why training ended (see :class:`seqkit.training.TrainSummary`).
        frames_per_s: mean training throughput over the epochs.
    """

    minutes: float
    train_seconds: float
    epochs: int
    best_epoch: int | None
    best_dev_per_pct: float | None
    stopped: str
    frames_per_s: float


@dataclass(frozen=True)
class DemoSample:
    """A sentence no model has seen, spoken by a test voice, and what the model heard.

    ``reference`` and ``hypothesis`` are 39-phone sequences with repeated silences merged.
    """

    text: str
    speaker: str
    audio: str
    reference: list[str]
    hypothesis: list[str]


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo put its pictures, reports and run."""

    curves: str
    confusion: str
    alignment: str
    report_dir: str
    run_dir: str
    report: str  # OUT/report.json


@dataclass(frozen=True)
class DemoReport:
    """What the demo measured; :meth:`to_dict` is ``OUT/report.json``.

    PERs are percents on the held-out test voices, after 39-phone folding unless named 61.

    Attributes:
        model: the recognizer trained.
        search: the headline search (``per_pct``); ``per_greedy_pct`` is greedy decoding.
        per_pct, per61_pct, per_greedy_pct: test PERs (61 phones: None unless trained on 61).
        sub, dels, ins, ref_phones: the headline search's 39-phone error counts.
        training: what training did.
        test_utterances, test_speakers: size of the test set.
        eval_rtf: real-time factor of the headline evaluation.
        decode_rtf: real-time factor of decoding the unseen sample.
        seed, seqkit_version: how to reproduce it.
        engines: the voice engines of the training corpus.
        synth_seconds: wall-clock seconds synthesizing the corpus (0 when it was reused).
        sample, paths: the unseen sentence and the files written.
    """

    model: str
    search: str
    per_pct: float
    per61_pct: float | None
    per_greedy_pct: float
    sub: int
    dels: int
    ins: int
    ref_phones: int
    training: TrainingFacts
    test_utterances: int
    test_speakers: int
    eval_rtf: float | None
    decode_rtf: float
    seed: int
    seqkit_version: str
    engines: list[str]
    synth_seconds: float
    sample: DemoSample
    paths: DemoPaths

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the fields, with ``training`` flattened (``train_seconds``, ...)."""
        data = asdict(self)
        training = data.pop("training")
        data["train_minutes_budget"] = training.pop("minutes")
        data.update(training)
        data["del"] = data.pop("dels")
        return data


def _pct(fraction: float | None) -> float | None:
    """Evaluation reports hold fractions; the demo report holds percents."""
    return None if fraction is None else 100.0 * fraction


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _corpus_matches(corpus: Path, options: DemoOptions) -> bool:
    try:
        meta = json.loads((corpus / SPLITS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (
        meta.get("seed") == options.seed
        and meta.get("sentences_per_speaker") == options.sentences
        and meta.get("espeak_speakers") == options.speakers
        and meta.get("clean") is True
        and meta.get("seqkit_version") == seqkit.__version__
        and meta.get("corpus_format") == CORPUS_FORMAT
        and list(meta.get("engines", {})) == list(options.engines or ())
        and meta.get("voice_speakers") == options.voice_speakers
    )


def run_demo(
    options: DemoOptions,
    *,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
    stage: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the whole demo; see the module docstring.

    Args:
        options: what to run.
        progress: ``progress(description, done, total)`` for every long stage.
        log: called with every training run-log record.
        stage: called with a one-line description as each stage starts (or is reused).

    Returns:
        The report (also written to ``OUT/report.json``).

    Raises:
        SeqkitError subclasses from the stages (corpus, config, training, checkpoint errors).
    """
    say = stage or (lambda _message: None)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    state = _ensure_data(options, say, progress)
    run_dir = out / f"run-{options.model}"
    training = _ensure_trained(options, state, run_dir, say, progress, log)

    say(f"evaluating {run_dir / 'best.pt'} on the held-out test voices")
    loaded = load_model(run_dir)
    verify_prepared(out / "prepared", ["test.jsonl"])
    test = read_manifest(split_manifest(out / "prepared", "test"))
    greedy = evaluate(loaded, test, progress=progress)
    search = SEARCH[options.model]
    say(f"evaluating again with {search['name']}")
    report = _evaluate_headline(loaded, test, out / "prepared", options.model, progress)
    report_dir = out / f"report-{options.model}"
    files = write_report(report, report_dir)

    say("decoding a sentence no model has seen, spoken by a test voice")
    sample, decode_rtf, picture = _decode_sample(loaded, options)
    result = DemoReport(
        model=str(options.model), search=search["name"], per_pct=100.0 * report.per,
        per61_pct=_pct(report.per61), per_greedy_pct=100.0 * greedy.per, sub=report.sub,
        dels=report.dels, ins=report.ins, ref_phones=report.ref_phones, training=training,
        test_utterances=len(report.utterances), test_speakers=len({u.speaker for u in test}),
        eval_rtf=report.elapsed / report.audio_seconds if report.audio_seconds else None,
        decode_rtf=decode_rtf, seed=options.seed, seqkit_version=seqkit.__version__,
        engines=list(options.engines or ()), synth_seconds=state.get("synth_seconds", 0.0),
        sample=sample,
        paths=DemoPaths(
            curves=str(run_dir / "curves.png"),
            confusion=str(files.get("confusion", report_dir / "confusion.png")),
            alignment=str(picture), report_dir=str(report_dir), run_dir=str(run_dir),
            report=str(out / "report.json")),
    )
    write_json(out / "report.json", result.to_dict(), indent=2)
    return result


def _ensure_data(
    options: DemoOptions, say: Callable[[str], None], progress: ProgressFn | None
) -> dict[str, Any]:
    """Synthesize and prepare the corpus unless ``OUT`` holds them; returns the demo state."""
    out = Path(options.out)
    state_path = out / "state.json"
    state = _read_state(state_path)
    corpus, prepared = out / "corpus", out / "prepared"
    if _corpus_matches(corpus, options):
        say(f"reusing corpus {corpus}")
    else:
        engines = options.engines or ()
        for line in left_out(engines, engine_status()):
            say(line)
        say(f"synthesizing {options.speakers} speakers x {options.sentences} sentences with "
            f"{', '.join(engines)} → {corpus}")
        start = time.monotonic()
        synthesize_corpus(corpus, speakers=options.speakers, sentences=options.sentences,
                          seed=options.seed, engines=engines,
                          voice_speakers=options.voice_speakers, jobs=options.jobs, force=True,
                          progress=progress)
        # a new corpus invalidates the prepared data and every run
        state = {"synth_seconds": time.monotonic() - start}
        write_json(state_path, state, indent=2)
    if state.get("prepared") and (prepared / "stats.json").exists():
        say(f"reusing prepared data {prepared}")
    else:
        say(f"preparing manifests and feature statistics → {prepared}")
        prepare_corpus(corpus, prepared, force=True, progress=progress)
        state["prepared"] = True
        write_json(state_path, state, indent=2)
    return state


def _ensure_trained(
    options: DemoOptions, state: dict[str, Any], run_dir: Path, say: Callable[[str], None],
    progress: ProgressFn | None, log: LogFn | None,
) -> TrainingFacts:
    """Train (or resume) the model within the budget unless a finished run is there."""
    state_path = Path(options.out) / "state.json"
    try:
        cached = TrainingFacts(**state.get("trained", {})[options.model])
    except (KeyError, TypeError):  # not trained yet, or by an older demo
        cached = None
    # best.pt, or last.pt when the budget ran out inside the first epoch
    trained = any((run_dir / name).exists() for name in ("best.pt", "last.pt"))
    minutes = training_minutes(options.minutes, state.get("synth_seconds", 0.0))
    if cached and cached.minutes >= minutes and trained:
        say(f"reusing trained model {run_dir}")
        return cached
    # resume only a run this demo started on this corpus; anything else starts over
    started = run_dir / ("pretrain" if options.model == DemoModel.transducer else "last.pt")
    resume = options.model in state.get("started", []) and started.exists()
    state["started"] = sorted({*state.get("started", []), options.model})
    write_json(state_path, state, indent=2)
    try:
        summary, train_seconds = _train(options, minutes, run_dir, resume, say, progress, log)
    except CheckpointError as err:  # e.g. a run left by an older seqkit: a demo starts over
        if not resume:
            raise
        say(f"cannot resume ({err}); training from the start")
        summary, train_seconds = _train(options, minutes, run_dir, False, say, progress, log)
    if summary.stopped == "interrupted":  # last.pt is written: the next demo resumes it
        raise interruption_of(summary.stop_signal)
    epochs = summary.epochs
    facts = TrainingFacts(
        minutes=minutes,
        train_seconds=train_seconds,
        epochs=len(epochs),
        best_epoch=summary.best_epoch,
        best_dev_per_pct=summary.best_score,  # a CTC / transducer run: best_metric is dev PER %
        stopped=summary.stopped,
        frames_per_s=sum(e.frames_per_s for e in epochs) / max(len(epochs), 1),
    )
    state.setdefault("trained", {})[options.model] = asdict(facts)
    write_json(state_path, state, indent=2)
    return facts


def left_out(engines: Sequence[str], status: dict[str, str | None]) -> list[str]:
    """A line for each voice engine not working here (``status``, from
    :func:`~seqkit.synth.engines.engine_status`) and so not among ``engines``: the README's
    results use every engine, and a demo without some of them trains on fewer voices of people."""
    return [f"leaving out {name}'s voices of people: {why}" for name, why in status.items()
            if why is not None and name not in engines]


def training_minutes(minutes: float, synth_seconds: float) -> float:
    """The demo's training budget: ``minutes`` less the corpus's synthesis time, at least
    :data:`MIN_TRAIN_SHARE` of ``minutes``."""
    return max(minutes - synth_seconds / 60.0, minutes * MIN_TRAIN_SHARE)


def _train(
    options: DemoOptions, minutes: float, run_dir: Path, resume: bool,
    say: Callable[[str], None], progress: ProgressFn | None, log: LogFn | None,
) -> tuple[TrainSummary, float]:
    """Train the demo's model within ``minutes``: the summary and the training seconds spent."""
    prepared = Path(options.out) / "prepared"
    seed = [f"train.seed={options.seed}"]
    if options.model == DemoModel.transducer:
        recipes = PretrainedTransducerRecipes(
            ctc=load_recipe(MODELS[DemoModel.ctc], seed), lm=load_recipe("synth/lm", seed),
            transducer=load_recipe(MODELS[DemoModel.transducer], seed),
            ctc_share=PRETRAIN_CTC_SHARE)
        summary = train_pretrained_transducer(
            recipes, prepared, run_dir, max_minutes=minutes, resume=resume,
            force=not resume, progress=progress, log=log, stage=say)
        return summary, epoch_seconds(run_dir)
    spent = read_run_log(run_dir).epoch_seconds if resume else 0.0  # earlier invocations
    budget = minutes - spent / 60.0
    say(f"{'resuming' if resume else 'training'} {options.model} → {run_dir} "
        f"({max(budget, 0.0):.1f} min budget)")
    summary = train(load_recipe(MODELS[options.model], seed), prepared, run_dir, resume=resume,
                    force=not resume, max_minutes=max(budget, 0.05), progress=progress, log=log)
    # this invocation's wall clock: a last epoch cut short by the budget counts too
    return summary, spent + summary.seconds


def _evaluate_headline(
    loaded: LoadedModel, test: list[Utterance], prepared: Path, model: DemoModel,
    progress: ProgressFn | None,
) -> EvalReport:
    """Test PER with the demo's headline search (:data:`SEARCH`)."""
    search = SEARCH[model]
    lm = load_lm_source(prepared, loaded.phone_set) if search["lm_weight"] else None
    return evaluate(
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


def _decode_sample(loaded: LoadedModel, options: DemoOptions) -> tuple[DemoSample, float, Path]:
    """Synthesize a new sentence in a test voice, decode it and draw its alignment."""
    out = Path(options.out)
    speaker = next(s for s in read_speakers(out / "corpus") if s.split == "test")
    # a sentence stream apart from the corpus's (seeded with options.seed itself)
    text = SentenceGenerator(stream_seed(options.seed, STREAM_PRIME, multiplier=1)).sentence()
    wav = synthesize_utterance(out / "sample", "SAMPLE", text, speaker, seed=options.seed)
    reference = [line.split()[2] for line in wav.with_suffix(".PHN").read_text().splitlines()]
    decoded = recognize_files(loaded, [wav], keep_features=True)
    hypothesis = decoded.hypotheses[0]
    picture = plot_alignment(
        hypothesis, out / f"alignment-{options.model}.png", title=f"{options.model}: {text}"
    )

    sample = DemoSample(text=text, speaker=speaker.id, audio=str(wav),
                        reference=fold_for_scoring(reference),
                        hypothesis=fold_for_scoring(hypothesis.phones))
    return sample, decoded.rtf, picture
