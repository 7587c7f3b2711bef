"""The documentation site: ``make docs`` builds it in strict mode, and a browser shows its API
page listing ``Recognizer.decode`` (#31).

Slow: builds the site (Sphinx, the ``docs`` extra) and opens it in headless Chromium (Debian's
``chromium``; ``.ci/run`` installs it). Both are needed: a missing one fails the test with what to
install, it does not skip.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# The flags of `make docs`: any warning, broken link or unresolved reference fails the build.
STRICT = ["-W", "--keep-going", "-n", "-q", "-b", "html", "-c", "docs"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def _dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts (and a redirect) ran, as headless Chromium renders it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "no chromium: apt-get install chromium (as .ci/run does)"
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_make_docs_builds_strictly_and_the_api_page_lists_recognizer_decode(tmp_path) -> None:
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "sphinx", *STRICT, str(ROOT), str(site)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-4000:]
    assert built.stderr.strip() == ""  # no warning at all
    makefile = (ROOT / "Makefile").read_text()
    assert " ".join(STRICT) in makefile  # the test builds as `make docs` does

    front = _dump_dom(site / "index.html", tmp_path / "profile1")  # redirects to the front page
    assert "<title>seqkit" in front and 'href="api.html"' in front
    assert 'href="_generated/cli.html"' in front and "Command-line reference" in front

    api = _dump_dom(site / "docs" / "api.html", tmp_path / "profile2")
    assert 'id="seqkit.Recognizer.decode"' in api
    text = html.unescape(re.sub(r"<[^>]+>", "", api))
    assert "decode(inputs, *, beam=1, lm=None, lm_weight=None, sample_rate=None" in " ".join(
        text.split())
    for name in ("seqkit.load", "seqkit.train", "seqkit.Hypothesis", "seqkit.EvalReport"):
        assert f'id="{name}"' in api, name

    cli = (site / "docs" / "_generated" / "cli.html").read_text()
    assert "seqkit decode" in cli and "--beam" in cli and "--lm-weight" in cli
