"""Test-wide setup and the shared, session-scoped fixtures.

Without a GPU, our Triton kernels run on CPU tensors through Triton's interpreter; it must be
switched on before any kernel module is imported, so it is set here, first.

Corpora and models that several modules use are built once per session here: ``prepared`` (a
tiny synthesized corpus for training tests) and ``tiny_runs`` (briefly trained models of each
kind for decoding and evaluation tests).
"""

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from seqkit.audio import read_stats  # noqa: E402
from seqkit.audio.features import FeatureConfig, FeatureStats, one_torch_thread  # noqa: E402
from seqkit.corpora.timit.prepare import prepare_corpus  # noqa: E402
from seqkit.data.batching import Batch, load_split  # noqa: E402
from seqkit.data.manifest import read_manifest  # noqa: E402
from seqkit.data.splits import split_manifest  # noqa: E402
from seqkit.models import build_model  # noqa: E402
from seqkit.models.checkpoint import model_payload, save_checkpoint  # noqa: E402
from seqkit.models.config import EncoderConfig, ModelConfig, PredictorConfig  # noqa: E402
from seqkit.synth.corpus import synthesize_corpus  # noqa: E402


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthesized corpus (4 speakers x 3 sentences, seed 3), prepared: for training."""
    root = tmp_path_factory.mktemp("synth_S4x3")
    synthesize_corpus(root / "corpus", speakers=4, sentences=3, seed=3)
    prepare_corpus(root / "corpus", root / "prepared")
    return root / "prepared"


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for a test of many tiny ops (searches, streams): fastest on a shared CPU."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny clean corpus and models of each kind trained briefly on its two test utterances.

    Enough Adam steps for the CTC model to output those utterances' phones, so decoding and
    evaluation can assert a low PER on them. Paths: ``corpus``, ``prepared``, ``ctc`` (a run dir
    holding best.pt), ``transducer`` (a checkpoint file) and ``lm`` (a phone LM checkpoint, not an
    acoustic model).
    """
    with one_torch_thread():  # tiny tensors: one thread is fastest on the shared CPU
        return _build_tiny_runs(tmp_path_factory.mktemp("tiny_runs"))


class _TestSplit(NamedTuple):
    """The front end, statistics, vocabulary and the whole test split as one padded batch."""

    features: FeatureConfig
    stats: FeatureStats
    vocab: list[str]
    phone_set: int
    batch: Batch


def _test_split(prepared: Path, phone_set: int) -> _TestSplit:
    features, stats = read_stats(prepared / "stats.json")
    test = load_split(prepared, "test", phone_set=phone_set, features=features, stats=stats)
    return _TestSplit(features, stats, list(test.vocab), phone_set, test.collate(range(len(test))))


def _train_and_save(config: ModelConfig, data: _TestSplit, steps: int, target: Path) -> None:
    """Train a model of ``config`` for ``steps`` Adam steps on the whole test batch; save it."""
    model = build_model(config, input_dim=data.features.dim, vocab_size=len(data.vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    b = data.batch
    for _ in range(steps):
        optimizer.zero_grad()
        if config.kind == "lm":
            loss = model(b.targets, b.target_lengths).mean()
        else:
            loss = model(b.feats, b.feat_lengths, b.targets, b.target_lengths).mean()
        loss.backward()
        optimizer.step()
    model.eval()
    payload = model_payload(model, vocab=data.vocab, phone_set=data.phone_set,
                            features=data.features, stats=data.stats)
    save_checkpoint(target, payload)


def _tiny_config(kind: str, layers: int = 1, bidirectional: bool = True,
                 joint_stride: int = 1) -> ModelConfig:
    encoder = EncoderConfig(layers=layers, hidden=32, stack=3, bidirectional=bidirectional)
    return ModelConfig(
        kind=kind, encoder=encoder, predictor=PredictorConfig(embed=16, hidden=32), joint_dim=32,
        joint_stride=joint_stride,
    )


def _build_tiny_runs(root: Path, steps: int = 40) -> dict[str, Path]:
    torch.manual_seed(0)
    corpus, prepared = root / "corpus", root / "prepared"
    synthesize_corpus(corpus, speakers=3, sentences=2, clean=True, seed=1)
    prepare_corpus(corpus, prepared)
    data = _test_split(prepared, 61)
    out: dict[str, Path] = {"corpus": corpus, "prepared": prepared}
    for kind in ("ctc", "transducer", "lm"):
        target = root / "runs" / kind / "best.pt" if kind == "ctc" else root / f"{kind}.pt"
        _train_and_save(_tiny_config(kind), data, steps if kind != "lm" else 2, target)
        out[kind] = target.parent if kind == "ctc" else target
    return out


@pytest.fixture(scope="session")
def stream_runs(tiny_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, str]:
    """Unidirectional models on ``tiny_runs``' corpus, for the streaming and export tests.

    Paths by name: ``ctc_uni`` (one layer, 40 Adam steps: it emits the test utterances' phones),
    ``transducer_uni`` (40 steps: barely trained, emits few labels), ``transducer_random`` (two
    layers, untrained: its random joint emits several labels per frame, which exercises the
    multi-label paths of the searches), ``transducer_stride2`` (as ``transducer_random``, its
    joint over 2 encoder outputs per frame: ``model.joint_stride = 2``, 60 ms frames),
    ``ctc_bi`` and ``transducer_bi`` (``tiny_runs``' BLSTM models), ``ctc_uni_cmn``
    (``ctc_uni`` with ``features.cmn``); ``audio``: the test
    utterances' files as a JSON list.
    """
    with one_torch_thread():  # tiny tensors: one thread is fastest on the shared CPU
        return _build_stream_runs(tiny_runs, tmp_path_factory.mktemp("stream_runs"))


def _build_stream_runs(tiny_runs: dict[str, Path], root: Path) -> dict[str, str]:
    torch.manual_seed(0)
    prepared = tiny_runs["prepared"]
    data = _test_split(prepared, 39)
    out = {"audio": json.dumps([u.audio for u in read_manifest(split_manifest(prepared, "test"))]),
           "ctc_bi": str(tiny_runs["ctc"]), "transducer_bi": str(tiny_runs["transducer"])}
    for name, kind, layers, steps, joint_stride in (
        ("ctc_uni", "ctc", 1, 40, 1), ("transducer_uni", "transducer", 1, 40, 1),
        ("transducer_random", "transducer", 2, 0, 1),
        ("transducer_stride2", "transducer", 2, 0, 2),
    ):
        config = _tiny_config(kind, layers, bidirectional=False, joint_stride=joint_stride)
        _train_and_save(config, data, steps, root / f"{name}.pt")
        out[name] = str(root / f"{name}.pt")
    # ctc_uni as if trained on utterance-mean-normalized features (features.cmn): its decode
    # differs, but every front end must compute the same features for it
    saved = torch.load(out["ctc_uni"], weights_only=True)
    saved["features"] = {**saved["features"], "cmn": True}
    torch.save(saved, root / "ctc_uni_cmn.pt")
    out["ctc_uni_cmn"] = str(root / "ctc_uni_cmn.pt")
    return out


@contextlib.contextmanager
def _held(out: Path, command: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``out``'s lock for the block (it waits on its stdin)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from seqkit.locks import output_lock\n"
         f"with output_lock({str(out)!r}, command={command!r}):\n"
         "    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.communicate("", timeout=60)


@pytest.fixture
def hold_lock():
    """``hold_lock(out, command)``: a context in which another process holds ``out``'s lock."""
    return _held
