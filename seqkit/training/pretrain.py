"""Graves, Mohamed & Hinton 2013's pretrained transducer (PreTrans) as one budgeted job.

Three runs, each feeding the next: a CTC model with the transducer's encoder, a phone language
model on the training transcripts with the prediction network's shape, then the transducer
with both copied in (``train.init_encoder`` / ``train.init_predictor``). One time budget covers
all three: the CTC run gets ``ctc_share`` of it, the LM its few epochs, the transducer the rest
(an early-stopped stage leaves its unused time to the next). On the synthesized corpus this is
what lets the transducer beat CTC within the demo's ten minutes: the CTC encoder learns the
acoustics at CTC's lower cost per frame, and the transducer starts from it instead of from a
model that emits only blanks.

The pretraining runs live inside the transducer's run directory (``RUN/pretrain/ctc``,
``RUN/pretrain/lm``); ``RUN/pretrain/stages.json`` records the finished stages, so an
interrupted job resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqkit.atomic import write_json
from seqkit.errors import ConfigError, OutputExistsError
from seqkit.progress import ProgressFn
from seqkit.training.config import RecipeConfig
from seqkit.training.runlog import read_run_log
from seqkit.training.trainer import LogFn, TrainSummary, train

STAGES = ("ctc", "lm", "transducer")


@dataclass(frozen=True)
class PretrainedTransducerRecipes:
    """The three recipes of a pretrained transducer and how the budget is shared.

    Attributes:
        ctc: the CTC recipe whose encoder initializes the transducer's (same encoder settings,
            features and phone set).
        lm: the phone LM recipe whose network initializes the prediction network (same
            predictor settings and phone set).
        transducer: the transducer recipe (its ``init_encoder`` / ``init_predictor`` are set
            to the pretraining runs).
        ctc_share: fraction of the time budget for the CTC run, in (0, 1).
    """

    ctc: RecipeConfig
    lm: RecipeConfig
    transducer: RecipeConfig
    ctc_share: float = 0.5

    def __post_init__(self) -> None:
        kinds = (self.ctc.model.kind, self.lm.model.kind, self.transducer.model.kind)
        if kinds != STAGES:
            raise ConfigError(
                f"pretrained transducer needs ctc, lm and transducer recipes, found "
                f"{', '.join(kinds)}: pass them in that order"
            )
        if self.ctc.model.encoder != self.transducer.model.encoder:
            raise ConfigError(
                f"the CTC recipe's encoder ({self.ctc.model.encoder}) differs from the "
                f"transducer's ({self.transducer.model.encoder}): use the same [model.encoder]"
            )
        if self.lm.model.predictor != self.transducer.model.predictor:
            raise ConfigError(
                f"the LM recipe's network ({self.lm.model.predictor}) differs from the "
                f"transducer's prediction network ({self.transducer.model.predictor}): use the "
                "same [model.predictor]"
            )
        phone_sets = {r.data.phone_set for r in (self.ctc, self.lm, self.transducer)}
        if len(phone_sets) != 1:
            raise ConfigError(
                f"the three recipes use phone sets {sorted(phone_sets)}: set one data.phone_set"
            )
        if self.ctc.data.features != self.transducer.data.features:
            raise ConfigError("the CTC and transducer recipes use other features: use one "
                              "[data.features]")
        if not 0.0 < self.ctc_share < 1.0:
            raise ConfigError(f"ctc_share must be in (0, 1), found {self.ctc_share}")


def epoch_seconds(run_dir: str | os.PathLike[str]) -> float:
    """Seconds of every logged epoch of the three runs (the time their budget counts)."""
    run_dir = Path(run_dir)
    dirs = (run_dir / "pretrain" / "ctc", run_dir / "pretrain" / "lm", run_dir)
    return sum(read_run_log(d).epoch_seconds for d in dirs)


def _read_stages(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def train_pretrained_transducer(
    recipes: PretrainedTransducerRecipes,
    data_dir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    max_minutes: float,
    resume: bool = False,
    force: bool = False,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
    stage: Callable[[str], None] | None = None,
) -> TrainSummary:
    """Train CTC encoder, phone LM and transducer in order within ``max_minutes``.

    Args:
        recipes: the three recipes and the CTC share of the budget.
        data_dir: a ``seqkit data prepare`` output.
        run_dir: the transducer's run directory (the pretraining runs go to ``RUN/pretrain``).
        max_minutes: the budget of all three runs together (across resumed invocations).
        resume: skip finished pretraining stages and resume the interrupted one; the
            transducer resumes even when finished (it trains on if the budget allows).
        force: start over in an existing run directory.
        progress, log: as for :func:`seqkit.training.train` (every stage reports through them).
        stage: called with a one-line description as each stage starts or is skipped.

    Returns:
        The transducer run's summary (``stopped="interrupted"`` if any stage was interrupted).

    Raises:
        OutputExistsError: ``run_dir`` is not empty and neither ``resume`` nor ``force`` is set.
        ConfigError: a non-positive budget; as :func:`seqkit.training.train` otherwise.
    """
    if not (math.isfinite(max_minutes) and max_minutes > 0):
        raise ConfigError(f"max_minutes must be positive, found {max_minutes}")
    say = stage or (lambda _message: None)
    run_dir = Path(run_dir)
    if not resume and run_dir.exists() and any(run_dir.iterdir()) and not force:
        raise OutputExistsError(
            f"run directory {run_dir} exists and is not empty: resume it, force a new run, or "
            "choose another directory"
        )
    pretrain = run_dir / "pretrain"
    dirs = {"ctc": pretrain / "ctc", "lm": pretrain / "lm", "transducer": run_dir}
    stages_path = pretrain / "stages.json"
    done = _read_stages(stages_path) if resume else {}
    pretrain.mkdir(parents=True, exist_ok=True)
    transducer = RecipeConfig(
        model=recipes.transducer.model,
        train=dataclasses.replace(recipes.transducer.train, init_encoder=str(dirs["ctc"]),
                                  init_predictor=str(dirs["lm"])),
        data=recipes.transducer.data,
    )
    plan = {"ctc": recipes.ctc, "lm": recipes.lm, "transducer": transducer}
    summary: TrainSummary | None = None
    for name in STAGES:
        # a finished pretraining stage is reused; the transducer always resumes (with a larger
        # budget than before it trains on, as a resumed CTC run does)
        if name in done and name != "transducer":
            say(f"reusing the {name} stage in {dirs[name]}")
            continue
        spent = sum(done.get(s, {}).get("seconds", 0.0) for s in STAGES if s != name)
        again = resume and (dirs[name] / "last.pt").exists()
        spent_here = read_run_log(dirs[name]).epoch_seconds if again else 0.0
        total = recipes.ctc_share * max_minutes * 60 if name == "ctc" else max_minutes * 60
        budget = max(total - spent - spent_here, 3.0) / 60
        say(f"{'resuming' if again else 'training'} the {name} stage → {dirs[name]} "
            f"({budget:.1f} min budget)")
        started = time.monotonic()
        summary = train(plan[name], data_dir, dirs[name], resume=again, force=not again,
                        max_minutes=budget, progress=progress, log=log)
        if summary.stopped == "interrupted":
            return summary
        done[name] = {"seconds": spent_here + time.monotonic() - started,
                      "best_epoch": summary.best_epoch, "best_score": summary.best_score,
                      "stopped": summary.stopped}
        write_json(stages_path, done, indent=2)
    assert summary is not None  # the transducer stage always runs
    return summary
