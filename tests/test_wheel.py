"""The wheel as a user installs it: only the seqkit namespace, a demo that runs from any folder,
and the Python API on the demo's model (#31).

Slow: builds the wheel, installs it into a new venv and runs a short demo there; the API then
decodes, evaluates and trains with the demo's run and corpus, so nothing else is built. The new venv
borrows this interpreter's dependencies (torch and the rest) through a .pth file, so nothing is
downloaded; seqkit itself must come from the installed wheel, never from this checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from seqkit.data.splits import split_manifest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# What the wheel is built from: pyproject's package-dir mapping plus its metadata files.
SOURCES = ("pyproject.toml", "README.md", "seqkit", "cli", "recipes")


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"  # a copy, so that building leaves no build/ or egg-info in the repo
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    # Build isolation: pip brings the setuptools pyproject.toml asks for, as for any user.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(src)], check=True)
    (wheel,) = dist.glob("seqkit-*.whl")
    return wheel


def _venv_with_our_dependencies(path: Path) -> Path:
    venv.create(path, with_pip=False)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    # Lines of a .pth are appended to sys.path, after the venv's own site-packages, and the .pth
    # files inside them are not run: the dev checkout's editable finder cannot leak in.
    Path(site, "_deps.pth").write_text("\n".join(ours) + "\n")
    return python


def test_wheel_holds_only_seqkit_and_runs_the_demo_from_another_folder(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = wheel.name.split("-py3")[0] + ".dist-info"
    assert {n.split("/")[0] for n in names} == {"seqkit", dist_info}
    assert "seqkit/cli/main.py" in names and "seqkit/recipes/synth/ctc_blstm.toml" in names
    assert "seqkit/py.typed" in names  # type checkers read the installed package's hints

    python = _venv_with_our_dependencies(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--ignore-installed", str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(python), "-c", "import seqkit, seqkit.cli.main, seqkit.recipes; "
         "print(seqkit.__file__, seqkit.cli.main.__file__, seqkit.recipes.__file__)"],
        cwd=elsewhere, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where), where

    demo = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "seqkit"), "demo", "--minutes", "0.2", "--speakers", "8",
         "--sentences", "4", "--voice-speakers", "1", "--out", "demo", "--format", "json"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stderr[-3000:]
    report = json.loads((elsewhere / "demo" / "report.json").read_text())
    assert report["model"] == "ctc"
    assert split_manifest(elsewhere / "demo" / "prepared", "train").is_file()
    _python_api_matches_the_cli(tmp_path / "venv", elsewhere, env)


# Run in the wheel's venv, from another folder, on the demo's run and corpus.
_API = """
import json, sys
import soundfile
import seqkit
from seqkit.data.manifest import read_manifest

recognizer = seqkit.load("demo/run-ctc")
files = [u.audio for u in read_manifest("demo/prepared/test.jsonl")]
wav = max(recognizer.decode(files), key=lambda h: len(h.phones)).name  # a file with phones
samples, rate = soundfile.read(wav, dtype="float32")
from_file, from_samples = recognizer.decode([wav, samples], sample_rate=rate)
assert from_file.phones == from_samples.phones and from_file.phones, from_file
assert len(from_file.segments) == len(from_file.phones)
assert from_file.segments[0].start == 0 and from_file.segments[-1].end == from_file.duration
report = recognizer.evaluate("demo/prepared")
summary = seqkit.train("synth/ctc_blstm", "demo/prepared", "tiny-run", max_epochs=1,
                       overrides={"model.encoder.layers": 1, "model.encoder.hidden": 16})
print(json.dumps({"file": seqkit.__file__, "wav": wav, "phones": list(from_file.phones),
                  "per": report.per, "stopped": summary.stopped,
                  "trained": seqkit.load("tiny-run").kind}))
"""


def _python_api_matches_the_cli(venv_dir: Path, elsewhere: Path, env: dict[str, str]) -> None:
    """seqkit.load(run).decode([file, samples]) gives timed phones, .evaluate a PER,
    seqkit.train a run, and `seqkit decode` the same phones for the same file."""
    done = subprocess.run([str(venv_dir / "bin" / "python"), "-c", _API], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    api = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(api["file"]).is_relative_to(venv_dir), api["file"]
    assert 0 <= api["per"] <= 1 and api["stopped"] == "max_epochs" and api["trained"] == "ctc"
    cli = subprocess.run([str(venv_dir / "bin" / "seqkit"), "decode", "demo/run-ctc", api["wav"],
                          "--format", "json"], cwd=elsewhere, env=env, capture_output=True,
                         text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert [p["phone"] for p in json.loads(cli.stdout)[0]["phones"]] == api["phones"]
