"""`seqkit data download`: real HTTP from a local server (tests never reach the internet), SHA-256
checks, present data skipped, partial data never taken for complete, offline = one line + exit 2."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
import urllib.request

import pytest
import torchaudio.datasets.librilight_limited as torchaudio_librilight
import torchaudio.datasets.librispeech as torchaudio_librispeech
from typer.testing import CliRunner

from seqkit.cli.main import app
from seqkit.corpora.librispeech.download import ARCHIVES, MARKER, Archive, fetch_archive
from seqkit.errors import DownloadError

runner = CliRunner()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local HTTP server over a folder holding a tiny dev-clean archive."""
    root = tmp_path_factory.mktemp("www")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name, payload in (("LibriSpeech/README.TXT", b"about\n"),
                              ("LibriSpeech/dev-clean/1/2/1-2.trans.txt", b"1-2-0000 HELLO\n"),
                              ("LibriSpeech/dev-clean/1/2/1-2-0000.flac", b"fLaC" + bytes(64))):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    (root / "dev-clean.tar.gz").write_bytes(data.getvalue())
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", hashlib.sha256(data.getvalue()).hexdigest()
    httpd.shutdown()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there now: as good as no network


def _archive(server, sha256: str | None = None) -> Archive:
    base, real = server
    return Archive("dev-clean", "dev-clean.tar.gz", f"{base}/dev-clean.tar.gz",
                   sha256 or real, "LibriSpeech/dev-clean")


def test_archive_table_equals_torchaudios_urls_and_checksums() -> None:
    ours = {a.url.replace("https://www.", "http://www."): a.sha256 for a in ARCHIVES.values()}
    theirs = {**torchaudio_librispeech._CHECKSUMS,
              torchaudio_librilight._URL: torchaudio_librilight._CHECKSUM}
    assert ours == theirs


def test_download_verifies_unpacks_marks_and_then_skips_without_network(server, tmp_path):
    fetched = fetch_archive(_archive(server), tmp_path)
    assert fetched.status == "downloaded"
    folder = tmp_path / "LibriSpeech" / "dev-clean"
    assert (folder / "1" / "2" / "1-2.trans.txt").read_text() == "1-2-0000 HELLO\n"
    assert json.loads((folder / MARKER).read_text())["files"] == 3
    assert (tmp_path / "LibriSpeech" / "README.TXT").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LibriSpeech"]  # no archive, no temp
    # The real table's dev-clean, through the CLI, with no network: present, nothing fetched.
    result = runner.invoke(app, ["data", "download", "librispeech", str(tmp_path),
                                 "--subsets", "dev-clean", "--mirror", _closed_port_url(),
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"subset": "dev-clean", "folder": str(folder), "status": "present"}
    ]


def test_a_download_with_the_wrong_checksum_leaves_nothing(server, tmp_path) -> None:
    with pytest.raises(DownloadError, match="does not match"):
        fetch_archive(_archive(server, sha256="0" * 64), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_archive_already_in_out_is_verified_and_used_offline(server, tmp_path) -> None:
    archive = _archive(server)
    with urllib.request.urlopen(archive.url) as response:
        (tmp_path / archive.file).write_bytes(response.read())
    offline = Archive(archive.name, archive.file, _closed_port_url() + archive.file,
                      archive.sha256, archive.folder)
    assert fetch_archive(offline, tmp_path, keep_archive=True).status == "downloaded"
    assert (tmp_path / archive.folder / MARKER).exists() and (tmp_path / archive.file).exists()


def test_offline_is_one_line_and_exit_2_and_a_partial_folder_is_not_present(tmp_path) -> None:
    partial = tmp_path / "LibriSpeech" / "test-clean" / "1" / "2"
    partial.mkdir(parents=True)  # an interrupted unpack: no marker
    result = runner.invoke(app, ["data", "download", "librispeech", str(tmp_path),
                                 "--subsets", "test-clean", "--mirror", _closed_port_url()])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot download"), result.output
    assert "test-clean.tar.gz" in lines[0] and "check the network connection" in lines[0]
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*partial*"))


def test_unknown_subset_is_one_line_and_exit_2(tmp_path) -> None:
    result = runner.invoke(app, ["data", "download", "librilight", str(tmp_path / "o"),
                                 "--subsets", "train-clean-100"])
    assert result.exit_code == 2
    assert "unknown librilight subset 'train-clean-100': choose from 10min" in result.output
    assert not (tmp_path / "o").exists()


def test_a_failed_download_leaves_no_folder_and_clears_killed_partials(tmp_path) -> None:
    """#20.5: a failed download left an empty OUT; kill -9 left .part files and staging."""
    out = tmp_path / "new"
    result = runner.invoke(app, ["data", "download", "librispeech", str(out),
                                 "--subsets", "test-clean", "--mirror", _closed_port_url()])
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    (kept / ".test-clean.partial-1-abcd").mkdir(parents=True)
    (kept / "test-clean.tar.gz.part").write_bytes(b"half an archive")
    result = runner.invoke(app, ["data", "download", "librispeech", str(kept),
                                 "--subsets", "test-clean", "--mirror", _closed_port_url()])
    assert result.exit_code == 2
    assert kept.is_dir() and list(kept.iterdir()) == []  # it existed before: kept, emptied
