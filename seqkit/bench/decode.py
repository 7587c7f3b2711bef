"""Decoding speed: real-time factor of greedy and beam search, CTC and transducer.

The whole pipeline is timed (load audio → features → model → search → alignment for timings),
on espeak-synthesized speech, as ``seqkit decode`` runs it. Models have the synth recipes' shapes
(built-in ``synth/*`` recipes); without trained checkpoints they are randomly initialized, which is
the pessimistic case for search (flat posteriors keep every beam busy, and an untrained
transducer emits up to its per-frame cap). RTF = processing seconds / audio seconds; the
issue's targets are CTC greedy ≤ 0.02 and CTC beam 8 ≤ 0.2 on a 2-core CPU.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from seqkit.audio import FeatureConfig, FeatureStats, compute_features, load_audio
from seqkit.data.phones import vocabulary
from seqkit.decoding.recognize import DecodeOptions, recognize_files
from seqkit.errors import ConfigError
from seqkit.models import build_model
from seqkit.models.checkpoint import LoadedModel, load_model
from seqkit.models.config import ModelConfig
from seqkit.synth.espeak import Espeak
from seqkit.training.config import load_recipe

TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls."
)
TARGETS = {("ctc", "greedy"): 0.02, ("ctc", "beam 8"): 0.2}


def speech(folder: Path) -> Path:
    """About 10 s of espeak speech as a 22.05 kHz WAV (the loader resamples it)."""
    engine = Espeak()
    engine.set_voice("en-us")
    synthesis = engine.synthesize(TEXT)
    path = folder / "bench.wav"
    soundfile.write(path, synthesis.audio.astype(np.int16), synthesis.sample_rate)
    return path


def random_model(kind: str, recipe: str, audio: Path, seed: int) -> LoadedModel:
    """A randomly initialized model with a synth recipe's shape, wrapped as a LoadedModel."""
    torch.manual_seed(seed)
    resolved = load_recipe(recipe)
    config: ModelConfig = resolved.model
    phone_set = resolved.data.phone_set
    vocab = list(vocabulary(phone_set))
    features = FeatureConfig()
    feats = compute_features(load_audio(audio), features)
    stats = FeatureStats(mean=feats.mean(0), std=feats.std(0), frames=feats.shape[0])
    model = build_model(config, input_dim=features.dim, vocab_size=len(vocab)).eval()
    return LoadedModel(
        model=model, kind=kind, vocab=vocab, phone_set=phone_set, features=features,
        stats=stats, config=config, path=Path(recipe), epoch=None, input_dim=features.dim,
    )


def time_decode(loaded: LoadedModel, audio: Path, options: DecodeOptions, repeats: int) -> dict:
    """Median wall time of decoding ``audio`` whole (after a warm-up), as ms and RTF."""
    recognize_files(loaded, [audio], options=options)  # warm-up
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = recognize_files(loaded, [audio], options=options)
        runs.append((time.perf_counter() - started, result))
    elapsed = statistics.median(seconds for seconds, _ in runs)
    result = runs[0][1]
    return {
        "audio_s": round(result.audio_seconds, 2),
        "phones": len(result.hypotheses[0].phones),
        "ms": elapsed * 1000,
        "rtf": elapsed / result.audio_seconds,
    }


def run(
    repeats: int = 3,
    device: str = "cpu",
    *,
    ctc_checkpoint: str | os.PathLike[str] | None = None,
    transducer_checkpoint: str | os.PathLike[str] | None = None,
    beams: tuple[int, ...] = (4, 8, 16),
    seed: int = 0,
) -> list[dict]:
    """Real-time factor of every search for both model families.

    Args:
        repeats: timed repeats per row; the median is kept. Default 3.
        device: only ``"cpu"`` (decoding is a CPU workload here).
        ctc_checkpoint: a trained CTC run or checkpoint; default a random synth-recipe model.
        transducer_checkpoint: a trained transducer; default a random synth-recipe model.
        beams: beam widths. Default (4, 8, 16).
        seed: seed for the random models.

    Returns:
        One row per (model, search): ``model``, ``search``, ``audio_s``, ``phones``, ``ms``,
        ``rtf`` and ``target_rtf`` (None where the issue sets none).
    """
    if device != "cpu":
        raise ConfigError(
            f"the decode benchmark runs on cpu, found device {device!r}: use --device cpu"
        )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="seqkit-bench-decode-") as tmp:
        audio = speech(Path(tmp))
        models = {
            "ctc": load_model(ctc_checkpoint) if ctc_checkpoint else random_model(
                "ctc", "synth/ctc_blstm", audio, seed),
            "transducer": load_model(transducer_checkpoint) if transducer_checkpoint
            else random_model("transducer", "synth/transducer", audio, seed),
        }
        for kind, loaded in models.items():
            searches = [("greedy", DecodeOptions(beam=1))]
            for k in beams:
                if kind == "ctc":
                    searches.append((f"beam {k}", DecodeOptions(beam=k)))
                else:
                    searches.append((f"beam {k} batched",
                                     DecodeOptions(beam=k, transducer_search="batched")))
                    if k == min(beams):
                        searches.append((f"beam {k} graves",
                                         DecodeOptions(beam=k, transducer_search="graves")))
            for name, options in searches:
                given = ctc_checkpoint if kind == "ctc" else transducer_checkpoint
                row = {"model": kind, "search": name,
                       "weights": "trained" if given else "random"}
                row.update(time_decode(loaded, audio, options, repeats))
                row["target_rtf"] = TARGETS.get((kind, name))
                rows.append(row)
    return rows
