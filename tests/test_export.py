"""``seqkit export``: one TorchScript file that loads with torch alone and gives the greedy phones
of ``seqkit decode`` for the same samples (CTC and transducer, bi- and unidirectional, with and
without ``model.joint_stride``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seqkit.audio import load_audio
from seqkit.cli.main import app
from seqkit.decoding.export import export_model
from seqkit.decoding.recognize import recognize_files
from seqkit.models.checkpoint import load_model

runner = CliRunner()

# Runs in a fresh interpreter where importing seqkit or torchaudio fails: the file must need
# torch only.
_LOAD_WITHOUT_SEQKIT = """
import importlib.abc, json, sys

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("seqkit", "torchaudio"):
            raise ImportError(name + " is hidden")
        return None

sys.meta_path.insert(0, Hide())
import torch
waves = torch.load(sys.argv[1])
recognizers = [torch.jit.load(path) for path in sys.argv[2:]]
print(json.dumps([[recognizer(w) for w in waves] for recognizer in recognizers]))
assert not any(m.split(".")[0] in ("seqkit", "torchaudio") for m in sys.modules)
"""


def _whole_file_phones(path: str, audio: list[str]) -> list[list[str]]:
    return [list(h.phones) for h in recognize_files(load_model(path), audio).hypotheses]


def test_exported_file_runs_with_torch_only_and_matches_decode(stream_runs, tmp_path) -> None:
    audio = json.loads(stream_runs["audio"])
    waves = tmp_path / "waves.pt"
    torch.save([load_audio(a) for a in audio], waves)
    # CTC + BLSTM, transducer + 2-layer LSTM, and one whose joint sees 2 encoder outputs a frame
    names = ("ctc_bi", "transducer_random", "transducer_stride2")
    for name in names:
        out = runner.invoke(app, ["export", stream_runs[name], str(tmp_path / f"{name}.ts"),
                                  "--format", "json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["bytes"] > 0
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_SEQKIT, str(waves),
         *(str(tmp_path / f"{name}.ts") for name in names)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for name, phones in zip(names, json.loads(done.stdout), strict=True):
        expected = _whole_file_phones(stream_runs[name], audio)
        assert phones == expected, name
        assert sum(len(p) for p in expected) > 10  # a decode with phones, not an empty one


def test_export_normalizes_by_the_utterance_mean_when_the_model_was_trained_so(
    stream_runs, tmp_path
) -> None:
    audio = json.loads(stream_runs["audio"])
    recognizer = torch.jit.load(str(export_model(load_model(stream_runs["ctc_uni_cmn"]),
                                                 tmp_path / "m.ts")))
    got = [recognizer(load_audio(a)) for a in audio]
    assert got == _whole_file_phones(stream_runs["ctc_uni_cmn"], audio)
    # the same weights without features.cmn decode otherwise: the exported front end applied it
    assert got != _whole_file_phones(stream_runs["ctc_uni"], audio)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ctc_uni", "transducer_uni", "transducer_bi"])
def test_every_model_kind_exports_with_the_greedy_phones(stream_runs, tmp_path, name) -> None:
    audio = json.loads(stream_runs["audio"])
    recognizer = torch.jit.load(str(export_model(load_model(stream_runs[name]),
                                                 tmp_path / "m.ts")))
    assert [recognizer(load_audio(a)) for a in audio] == _whole_file_phones(stream_runs[name],
                                                                           audio)


def test_export_refuses_to_overwrite_and_reports_bad_runs(stream_runs, tmp_path) -> None:
    target = tmp_path / "model.ts"
    target.write_text("keep me")
    result = runner.invoke(app, ["export", stream_runs["ctc_uni"], str(target)])
    assert result.exit_code == 2 and "--force" in result.stderr
    assert target.read_text() == "keep me"
    result = runner.invoke(app, ["export", str(tmp_path / "missing"), str(tmp_path / "m.ts")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not Path(tmp_path / "m.ts").exists()


def test_export_removes_debris_of_killed_exports_and_refuses_a_held_target(
    stream_runs, tmp_path, hold_lock
) -> None:
    """#20: a killed export left a hidden .m.ts.*.ts beside the target; two exports raced."""

    from seqkit.decoding.export import export_model
    from seqkit.errors import OutputLockedError
    from seqkit.models.checkpoint import load_model

    target = tmp_path / "m.ts"
    (tmp_path / ".m.ts.x1y2z3w4.ts").write_bytes(b"half a model")
    loaded = load_model(stream_runs["ctc_uni"])
    export_model(loaded, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ts"]
    with hold_lock(target, "seqkit export") as holder, pytest.raises(
            OutputLockedError, match=f"pid {holder.pid}"):
        export_model(loaded, target)
