"""`seqkit data download NAME` for lhotse's recipes (#29): real HTTP from a local server that
honours range requests (tests never reach the internet); archives checked before lhotse unpacks
them, pinned SHA-256 where published, resumed after an interrupted transfer."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import socket
import tarfile
import threading
from pathlib import Path

import pytest
import torchaudio.datasets.cmuarctic as torchaudio_cmuarctic
import torchaudio.datasets.libritts as torchaudio_libritts
import torchaudio.datasets.ljspeech as torchaudio_ljspeech
import torchaudio.datasets.speechcommands as torchaudio_speechcommands
import torchaudio.datasets.tedlium as torchaudio_tedlium
import torchaudio.datasets.vctk as torchaudio_vctk
import torchaudio.datasets.yesno as torchaudio_yesno
from corpus_layouts import write_cmu_arctic
from typer.testing import CliRunner

from seqkit.cli.main import app
from seqkit.corpora.lhotse_download import PINNED_SHA256, RECORD, fetch_checked
from seqkit.data.manifest import read_manifest
from seqkit.errors import DownloadError

runner = CliRunner()
ARCHIVE = "cmu_us_aew_arctic.tar.bz2"


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files whole or from a ``Range: bytes=N-`` offset; the first request for a name in
    ``server.cut`` is cut off after that many bytes (a dropped connection)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        requested = self.headers.get("Range")
        self.server.ranges.append(requested)  # type: ignore[attr-defined]
        start = int(requested.split("=")[1].split("-")[0]) if requested else 0
        if start >= len(data) and requested:
            self.send_error(416)
            return
        body = data[start:]
        self.send_response(206 if requested else 200)
        self.send_header("Content-Length", str(len(body)))
        if requested:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = self.server.cut.pop(path.name, None)  # type: ignore[attr-defined]
        self.wfile.write(body[:cut] if cut is not None else body)
        if cut is not None:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local server over a folder holding a CMU ARCTIC speaker archive spoken by espeak-ng."""
    root = tmp_path_factory.mktemp("www")
    corpus = tmp_path_factory.mktemp("arctic")
    write_cmu_arctic(corpus, {"aew": 3})
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:bz2") as tar:
        tar.add(corpus / "cmu_us_aew_arctic", arcname="cmu_us_aew_arctic")
    (root / ARCHIVE).write_bytes(data.getvalue())
    broken = bytearray(data.getvalue())
    broken[len(broken) // 2: len(broken) // 2 + 64] = bytes(64)  # same length, damaged inside
    (root / "damaged.tar.bz2").write_bytes(bytes(broken))
    handler = functools.partial(_RangeHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.ranges, httpd.cut = [], {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_port}", hashlib.sha256(
        data.getvalue()).hexdigest()
    httpd.shutdown()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _one_error_line(result) -> str:
    """The one error line (after any progress bar drawn before the error)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert "Traceback" not in result.output
    return errors[0]


def test_pinned_checksums_equal_torchaudios_tables() -> None:
    def by_file(table: dict[str, str]) -> dict[str, str]:
        return {url.rsplit("/", 1)[1]: sha for url, sha in table.items()}

    def release(config: dict) -> dict[str, str]:
        return {config["url"].rsplit("/", 1)[1]: config["checksum"]}

    assert PINNED_SHA256["cmu_arctic"] == by_file(torchaudio_cmuarctic._CHECKSUMS)
    assert PINNED_SHA256["libritts"] == by_file(torchaudio_libritts._CHECKSUMS)
    assert PINNED_SHA256["vctk"] == by_file(torchaudio_vctk._CHECKSUMS)
    assert PINNED_SHA256["speechcommands"] == by_file(torchaudio_speechcommands._CHECKSUMS)
    assert PINNED_SHA256["ljspeech"] == release(torchaudio_ljspeech._RELEASE_CONFIGS["release1"])
    assert PINNED_SHA256["yesno"] == release(torchaudio_yesno._RELEASE_CONFIGS["release1"])
    assert PINNED_SHA256["tedlium"] == release(torchaudio_tedlium._RELEASE_CONFIGS["release3"])
    assert PINNED_SHA256["tedlium2"] == release(torchaudio_tedlium._RELEASE_CONFIGS["release2"])


def test_a_download_that_differs_from_the_pinned_sha256_is_never_unpacked(server, tmp_path):
    _, base, _ = server  # the archive here is ours, not CMU's: its SHA-256 differs
    result = runner.invoke(app, ["data", "download", "cmu_arctic", str(tmp_path / "d"),
                                 "--mirror", base, "--lhotse-option", 'speakers=["aew"]'])
    line = _one_error_line(result)
    assert "does not match the pinned" in line and ARCHIVE in line
    assert not (tmp_path / "d").exists()  # no archive, no unpacked folder


def test_a_pinned_download_unpacks_records_and_prepares(server, tmp_path) -> None:
    _, base, sha256 = server
    result = runner.invoke(app, ["data", "download", "cmu_arctic", str(tmp_path / "d"),
                                 "--mirror", base, "--lhotse-option", 'speakers=["aew"]',
                                 "--pin", f"{ARCHIVE}={sha256}", "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [(a["status"], a["check"], a["sha256"]) for a in summary["archives"]] == [
        ("downloaded", "pinned SHA-256", sha256)]
    assert (tmp_path / "d" / "cmu_us_aew_arctic" / ".completed").is_file()
    record = json.loads((tmp_path / "d" / RECORD).read_text())
    assert record["archives"][ARCHIVE]["sha256"] == sha256
    result = runner.invoke(app, ["data", "prepare", str(tmp_path / "d"), str(tmp_path / "p"),
                                 "--corpus", "cmu_arctic", "--all-to", "train"])
    assert result.exit_code == 0, result.output
    assert len(read_manifest(tmp_path / "p" / "train.jsonl")) == 3


def test_an_interrupted_download_resumes_where_it_stopped(server, tmp_path) -> None:
    httpd, base, sha256 = server
    httpd.cut[ARCHIVE] = 5000
    httpd.ranges.clear()
    target = tmp_path / ARCHIVE
    with pytest.raises(DownloadError, match="run this again to resume"):
        fetch_checked(f"{base}/{ARCHIVE}", target, {ARCHIVE: sha256})
    assert (tmp_path / f"{ARCHIVE}.part").stat().st_size == 5000 and not target.exists()
    fetched = fetch_checked(f"{base}/{ARCHIVE}", target, {ARCHIVE: sha256})
    assert fetched.status == "resumed" and fetched.sha256 == sha256
    assert httpd.ranges == [None, "bytes=5000-"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sha256
    again = fetch_checked(_closed_port_url() + f"/{ARCHIVE}", target, {ARCHIVE: sha256})
    assert again.status == "present"  # verified in place, nothing fetched


def test_an_unpinned_archive_is_named_and_checked_for_integrity(server, tmp_path) -> None:
    _, base, sha256 = server
    fetched = fetch_checked(f"{base}/{ARCHIVE}", tmp_path / ARCHIVE, {})
    assert not fetched.pinned and fetched.sha256 == sha256
    assert fetched.to_dict()["check"].startswith("no published checksum")
    with pytest.raises(DownloadError, match="not a whole archive"):
        fetch_checked(f"{base}/damaged.tar.bz2", tmp_path / "damaged.tar.bz2", {})
    assert sorted(os.listdir(tmp_path)) == [ARCHIVE]  # the damaged one is deleted


@pytest.mark.parametrize("args, expected", [
    (["timit"], "licensed by the LDC"),
    (["l2_arctic"], "downloads nothing"),
    (["fleurs"], "which seqkit cannot check"),
    (["cmu_artic"], "did you mean cmu_arctic"),
    (["cmu_arctic", "--lhotse-option", "colour=1"], "takes no option 'colour'"),
    (["cmu_arctic", "--subsets", "x"], "--subsets"),
    (["librispeech", "--pin", "a=b"], "--pin are for lhotse"),
])
def test_bad_downloads_are_one_line_and_exit_2(tmp_path, args, expected) -> None:
    result = runner.invoke(app, ["data", "download", args[0], str(tmp_path / "d"), *args[1:]])
    assert expected in _one_error_line(result)
    assert not (tmp_path / "d").exists()


def test_offline_is_one_line_and_keeps_nothing(tmp_path) -> None:
    result = runner.invoke(app, ["data", "download", "yesno", str(tmp_path / "d"),
                                 "--mirror", _closed_port_url()])
    line = _one_error_line(result)
    assert "cannot download" in line and "waves_yesno.tar.gz" in line
    assert not (tmp_path / "d").exists()
