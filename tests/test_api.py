"""The public Python API: ``seqkit.load`` / ``Recognizer`` / ``seqkit.train``, the names it
exports, the docstring examples and the README's Python section (#31).

The examples are run as written, in a folder laid out as they assume: ``runs/ctc`` (a BLSTM-CTC
run), ``runs/ctc_stream`` (a unidirectional one), ``runs/transducer``, ``a.wav`` and ``b.flac``
(test utterances) and ``prepared`` (their prepared corpus), all from the session's tiny models.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

import seqkit
from seqkit.cli.main import app
from seqkit.data.manifest import read_manifest
from seqkit.data.splits import split_manifest
from seqkit.decoding.waveforms import StreamResampler
from seqkit.training.config import load_recipe

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

# The public API. Renaming, adding or removing a name must change this list, the reference
# (docs/api.md) and the CHANGELOG: this test is what makes a rename visible.
PUBLIC = [
    "AudioError", "BackendUnavailableError", "CheckpointError", "ConfigError", "CorpusError",
    "EpochRecord", "EvalReport", "Hypothesis", "LossInputError", "Notice", "OutputExistsError",
    "OutputLockedError", "PhoneSegment", "PhoneStream", "RecognitionResult", "Recognizer",
    "SeqkitError", "StepRecord", "StreamResult", "StreamStats", "TrainSummary", "TrainingError",
    "UtteranceResult", "__version__", "load", "train",
]
SIGNATURES = {
    "load": ["run_or_checkpoint", "device"],
    "train": ["recipe", "data", "out", "overrides", "data_weights", "dev", "init", "resume",
              "force", "max_epochs", "max_minutes", "seed", "progress", "log"],
    "Recognizer.decode": ["self", "inputs", "beam", "lm", "lm_weight", "sample_rate",
                          "batch_size", "insertion_bonus", "transducer_search",
                          "max_symbols_per_frame"],
    "Recognizer.evaluate": ["self", "prepared_dir", "split", "beam", "lm", "lm_weight",
                            "batch_size", "insertion_bonus", "transducer_search",
                            "max_symbols_per_frame", "progress"],
    "Recognizer.stream": ["self", "sample_rate", "beam", "lm", "lm_weight", "insertion_bonus",
                          "chunk_ms"],
    "PhoneStream.accept": ["self", "chunk"],
    "PhoneStream.finish": ["self"],
    "PhoneStream.phones": ["self", "chunks"],
}
# Modules whose docstring examples run here: every module of seqkit/ with a ">>>" in it.
DOCTEST_MODULES = [
    "seqkit", "seqkit.recognizer", "seqkit.training_run", "seqkit.decoding.results",
    "seqkit.decoding.evaluate",
]


@pytest.fixture(scope="module")
def examples(tiny_runs, stream_runs, tmp_path_factory) -> Path:
    """The folder the examples assume (see the module docstring)."""
    root = tmp_path_factory.mktemp("examples")
    (root / "runs").mkdir()
    (root / "runs" / "ctc").symlink_to(tiny_runs["ctc"])
    (root / "runs" / "ctc_stream").mkdir()
    (root / "runs" / "ctc_stream" / "best.pt").symlink_to(stream_runs["ctc_uni"])
    (root / "runs" / "transducer").mkdir()
    (root / "runs" / "transducer" / "best.pt").symlink_to(tiny_runs["transducer"])
    shutil.copytree(tiny_runs["prepared"], root / "prepared")  # training writes beside it
    first, second = read_manifest(split_manifest(tiny_runs["prepared"], "test"))[:2]
    for source, target in ((first.audio, "a.wav"), (second.audio, "b.flac")):
        samples, rate = soundfile.read(source, dtype="float32")
        soundfile.write(root / target, samples, rate)
    return root


def test_the_public_names_are_exactly_these_and_resolve() -> None:
    assert sorted(seqkit.__all__) == sorted(PUBLIC)
    assert set(seqkit._HOMES) | {"__version__"} == set(seqkit.__all__)
    for name in PUBLIC:
        assert getattr(seqkit, name) is not None, name
    assert set(PUBLIC) <= set(dir(seqkit))
    with pytest.raises(AttributeError, match="no attribute 'Recogniser'"):
        _ = seqkit.Recogniser
    for qualified, parameters in SIGNATURES.items():
        owner, _, attr = qualified.partition(".")
        target = getattr(getattr(seqkit, owner), attr) if attr else getattr(seqkit, owner)
        assert list(inspect.signature(target).parameters) == parameters, qualified


def test_result_types_are_frozen_documented_and_fully_hinted() -> None:
    for name in ("Hypothesis", "PhoneSegment", "EvalReport", "UtteranceResult",
                 "RecognitionResult", "StreamResult", "StreamStats", "TrainSummary"):
        cls = getattr(seqkit, name)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, name
        assert "Attributes:" in (cls.__doc__ or ""), name
    segment = seqkit.PhoneSegment("ae", 0.1, 0.2, 0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        segment.phone = "b"  # type: ignore[misc]
    for function in (seqkit.load, seqkit.train, seqkit.Recognizer.decode,
                     seqkit.Recognizer.recognize, seqkit.Recognizer.evaluate,
                     seqkit.Recognizer.stream, seqkit.PhoneStream.accept,
                     seqkit.PhoneStream.finish, seqkit.PhoneStream.phones):
        hints = inspect.get_annotations(function)
        parameters = [p for p in inspect.signature(function).parameters if p != "self"]
        assert set(parameters) | {"return"} == set(hints), function.__qualname__


def test_the_package_ships_its_type_marker() -> None:
    assert (ROOT / "seqkit" / "py.typed").is_file()
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in data["package-data"]["seqkit"]


def test_import_seqkit_stays_light() -> None:
    """The CLI imports seqkit for every command: the API's modules load on first use."""
    code = ("import sys, seqkit; print(json.dumps(sorted(m for m in ('torch', 'numpy', "
            "'seqkit.recognizer') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == []


def test_every_public_name_is_in_the_reference() -> None:
    reference = (ROOT / "docs" / "api.md").read_text()
    for name in PUBLIC:
        if name != "__version__":
            assert f"seqkit.{name}" in reference, name


def test_decode_files_and_samples_alike_with_times_and_as_the_cli_does(examples) -> None:
    recognizer = seqkit.load(examples / "runs" / "ctc")
    assert (recognizer.kind, recognizer.phone_set, recognizer.sample_rate) == ("ctc", 61, 16000)
    assert recognizer.vocab[0] == "<blank>" and recognizer.bidirectional
    wav = str(examples / "a.wav")
    samples, rate = soundfile.read(wav, dtype="float32")
    hyps = recognizer.decode([wav, samples, torch.from_numpy(samples)], sample_rate=rate)
    assert [h.name for h in hyps] == [wav, "<array 1>", "<array 2>"]
    assert len(hyps[0].phones) > 5 and hyps[0].phones == hyps[1].phones == hyps[2].phones
    assert hyps[0].segments == hyps[1].segments
    assert hyps[0].segments[0].start == 0 and hyps[0].segments[-1].end == hyps[0].duration
    # int16 PCM scales as soundfile scales it
    pcm = (samples * 32767).round().astype(np.int16)
    assert recognizer.decode(pcm, sample_rate=rate)[0].phones == hyps[0].phones
    # 8 kHz samples are resampled as an 8 kHz file is
    low = str(examples / "low.wav")
    soundfile.write(low, soundfile.read(wav, dtype="float32")[0][::2], 8000)
    low_samples, _ = soundfile.read(low, dtype="float32")
    from_file, from_samples = recognizer.decode([low, low_samples], sample_rate=8000)
    assert from_file.phones == from_samples.phones and from_file.segments == from_samples.segments
    cli = runner.invoke(app, ["decode", str(examples / "runs" / "ctc"), wav, "--format", "json"])
    assert cli.exit_code == 0, cli.output
    (item,) = json.loads(cli.stdout)
    assert [p["phone"] for p in item["phones"]] == list(hyps[0].phones)
    assert [p["start"] for p in item["phones"]] == [round(s.start, 4) for s in hyps[0].segments]


def test_transducer_beam_search_with_an_lm_and_an_exported_file(examples, tmp_path) -> None:
    recognizer = seqkit.load(examples / "runs" / "transducer")
    assert recognizer.kind == "transducer"
    wav = str(examples / "a.wav")
    (greedy,) = recognizer.decode(wav)
    (beam,) = recognizer.decode([wav], beam=3, lm=examples / "prepared", lm_weight=0.3)
    assert greedy.score is not None and beam.score is not None
    assert all(a.end == b.start for a, b in zip(beam.segments, beam.segments[1:], strict=False))
    exported = tmp_path / "model.ts"
    assert runner.invoke(app, ["export", str(examples / "runs" / "transducer"),
                               str(exported)]).exit_code == 0
    from_file = seqkit.load(exported)
    assert from_file.path == exported and from_file.vocab == recognizer.vocab
    assert from_file.decode([wav])[0] == greedy
    assert from_file.decode([wav], beam=3)[0].phones == recognizer.decode([wav], beam=3)[0].phones


def test_load_refuses_what_is_not_an_acoustic_model_in_one_line(
        examples, tiny_runs, tmp_path) -> None:
    with pytest.raises(seqkit.CheckpointError,
                       match="holds a lm model, expected a ctc or transducer acoustic model"):
        seqkit.load(tiny_runs["lm"])
    with pytest.raises(seqkit.CheckpointError, match=r"checkpoint .*nope not found: pass a run"):
        seqkit.load(tmp_path / "nope")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(seqkit.CheckpointError, match="has no best.pt or last.pt"):
        seqkit.load(tmp_path / "empty_run")
    # a TorchScript file without the checkpoint inside (an older export) says what to do
    old = tmp_path / "old.ts"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(old))
    with pytest.raises(seqkit.CheckpointError, match="without a seqkit checkpoint inside.*"
                       "export the run again"):
        seqkit.load(old)
    assert issubclass(seqkit.CheckpointError, seqkit.SeqkitError)
    assert zipfile.is_zipfile(old)


def test_decode_refuses_bad_inputs_and_recognize_reports_them(examples, tmp_path) -> None:
    recognizer = seqkit.load(examples / "runs" / "ctc")
    wav = str(examples / "a.wav")
    samples, _ = soundfile.read(wav, dtype="float32")
    with pytest.raises(seqkit.ConfigError, match=r"input 1 is samples .*sample_rate=16000"):
        recognizer.decode([wav, samples])
    with pytest.raises(seqkit.AudioError, match=r"<array 0>: expected 1-D mono samples, found "
                       r"shape \(2, \d+\)"):
        recognizer.decode(np.stack([samples, samples]), sample_rate=16000)
    with pytest.raises(seqkit.AudioError, match="found dtype uint8"):
        recognizer.decode(np.zeros(16000, dtype=np.uint8), sample_rate=16000)
    with pytest.raises(seqkit.AudioError, match="<array 0> is 6.2 ms long"):
        recognizer.decode(samples[:100], sample_rate=16000)
    with pytest.raises(seqkit.ConfigError, match="expected sample_rate a positive int"):
        recognizer.decode(samples, sample_rate=0)
    with pytest.raises(seqkit.ConfigError, match="an LM is only used by beam search"):
        recognizer.decode(wav, lm=examples / "prepared")
    missing = str(tmp_path / "missing.wav")
    with pytest.raises(seqkit.AudioError, match="missing.wav does not exist"):
        recognizer.decode([wav, missing])
    result = recognizer.recognize([missing, wav])
    assert [h.name for h in result.hypotheses] == [wav] and result.failures[0][0] == missing
    assert result.audio_seconds > 0 and result.elapsed > 0


def test_evaluate_returns_the_per_the_cli_prints(examples) -> None:
    recognizer = seqkit.load(examples / "runs" / "ctc")
    report = recognizer.evaluate(examples / "prepared")
    assert isinstance(report, seqkit.EvalReport) and 0 <= report.per < 0.3
    assert len(report.utterances) == 2 and not report.failures and report.kind == "ctc"
    cli = runner.invoke(app, ["evaluate", str(examples / "runs" / "ctc"), "--data",
                              str(examples / "prepared"), "--format", "json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["per_pct"] == pytest.approx(100 * report.per)
    with pytest.raises(seqkit.ConfigError, match="unknown split 'eval': choose one of"):
        recognizer.evaluate(examples / "prepared", split="eval")
    with pytest.raises(seqkit.CorpusError, match="not found: expected a directory made by"):
        recognizer.evaluate(examples / "runs")


def test_a_stream_gives_the_phones_of_the_whole_file_at_any_rate(examples) -> None:
    recognizer = seqkit.load(examples / "runs" / "ctc_stream")
    wav = str(examples / "a.wav")
    whole = recognizer.decode([wav])[0].phones
    samples, rate = soundfile.read(wav, dtype="float32")
    stream = recognizer.stream(sample_rate=rate)
    got = [p for i in range(0, len(samples), 700) for p in stream.accept(samples[i:i + 700])]
    got += stream.finish()
    assert tuple(got) == whole == stream.result.phones and len(whole) > 5
    assert stream.result.score is None  # greedy keeps no score
    with pytest.raises(seqkit.ConfigError, match="has finished"):
        stream.accept(samples[:100])
    # 8 kHz chunks, resampled on the fly, decode as the 8 kHz file does
    low = str(examples / "low8k.wav")
    soundfile.write(low, samples[::2], 8000)
    low_samples, _ = soundfile.read(low, dtype="float32")
    stream = recognizer.stream(sample_rate=8000)
    chunks = (low_samples[i:i + 333] for i in range(0, len(low_samples), 333))
    assert tuple(stream.phones(chunks)) == recognizer.decode([low])[0].phones
    assert stream.samples_per_chunk == 800 and stream.latency_ms > 100
    with pytest.raises(seqkit.ConfigError, match="is a bidirectional model: its first output "
                       "needs the whole recording"):
        seqkit.load(examples / "runs" / "ctc").stream()


@pytest.mark.parametrize(("orig", "new"), [(8000, 16000), (44100, 16000), (22050, 16000)])
def test_the_stream_resampler_equals_the_whole_signal_resampler(orig: int, new: int) -> None:
    import torchaudio.functional as AF

    generator = torch.Generator().manual_seed(0)
    signal = torch.randn(orig // 3 + 17, generator=generator) * 0.1
    resampler = StreamResampler(orig, new)
    pieces, at = [], 0
    for size in (1, 50, 333, 4000, 7, len(signal)):  # the last takes the rest
        pieces.append(resampler.accept(signal[at:at + size]))
        at += size
    pieces.append(resampler.finish())
    streamed = torch.cat(pieces)
    whole = AF.resample(signal, orig_freq=orig, new_freq=new)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=0)


def test_train_overrides_are_set_strings_or_a_mapping(examples) -> None:
    from seqkit.training_run import override_strings

    as_strings = load_recipe("synth/ctc_blstm", ["train.lr=3e-4", "model.encoder.hidden=16"])
    as_mapping = load_recipe("synth/ctc_blstm", override_strings(
        {"train": {"lr": 3e-4}, "model.encoder.hidden": 16}))
    assert as_strings == as_mapping
    with pytest.raises(seqkit.ConfigError, match="override train.lr: expected a bool"):
        override_strings({"train.lr": None})
    with pytest.raises(seqkit.ConfigError, match="did you mean"):
        seqkit.train("synth/ctc_blstm", examples / "prepared", examples / "runs" / "x",
                      overrides={"train.lrr": 1e-3})
    with pytest.raises(seqkit.OutputExistsError):
        seqkit.train("synth/ctc_blstm", examples / "prepared", examples / "runs" / "ctc_stream")


def _doctests(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder(exclude_empty=True).find(module) if t.examples]


def test_every_module_with_docstring_examples_is_run_here() -> None:
    with_examples = set()
    for path in (ROOT / "seqkit").rglob("*.py"):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            with_examples.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert with_examples <= set(DOCTEST_MODULES)


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples_run_as_written(name: str, examples, monkeypatch) -> None:
    monkeypatch.chdir(examples)
    tests = _doctests(name)
    assert tests or name == "seqkit", f"{name} has no examples: drop it from DOCTEST_MODULES"
    runner_ = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        test.globs.update({"seqkit": seqkit})
        runner_.run(test, out=lambda text: pytest.fail(text, pytrace=False))
    assert runner_.failures == 0


def readme_python() -> str:
    """The README's Python section: its ```python block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


def test_the_readme_python_example_runs_as_written(examples, monkeypatch, capsys) -> None:
    code = readme_python()
    assert len([line for line in code.splitlines() if line.strip()]) <= 5
    monkeypatch.chdir(examples)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("a.wav ") and out[1].startswith("b.flac ")
    assert re.fullmatch(r"PER \d+\.\d%", out[-1])
