"""The NLTK TIMIT sample as `nltk.download('timit')` unpacks it: prepare puts it all in test,
clamps a last boundary just past the audio, refuses worse; download unpacks NLTK's zip."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from seqkit.audio import SAMPLE_RATE
from seqkit.cli.main import app
from seqkit.corpora.timit import nltk_sample
from seqkit.corpora.timit.nltk_sample import unpack_nltk_timit
from seqkit.corpora.timit.prepare import prepare_corpus
from seqkit.data.manifest import read_manifest
from seqkit.data.splits import split_manifest
from seqkit.errors import CorpusError

runner = CliRunner()
SR = SAMPLE_RATE
N = 4800
PHN = ((0, 800, "h#"), (800, 2000, "sh"), (2000, 4000, "iy"), (4000, N, "h#"))
# folder -> audio format: the sample circulates with SPHERE and with RIFF audio
SPEAKERS = {"dr1-fvmh0": "NIST", "dr8-mbcg0": "WAV"}
SENTENCES = ("sa1", "sx13", "si943")


def _wave(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(N) / SR
    return (0.1 * np.sin(2 * np.pi * 150 * t) + 0.01 * rng.standard_normal(N)).astype(np.float32)


def make_sample(root: Path, last_end: int = N) -> Path:
    """A two-speaker NLTK-layout sample; every .phn/.wrd ends at ``last_end``."""
    for i, (folder, audio_format) in enumerate(SPEAKERS.items()):
        speaker = root / folder
        speaker.mkdir(parents=True)
        for j, sentence in enumerate(SENTENCES):
            soundfile.write(speaker / f"{sentence}.wav", _wave(10 * i + j), SR,
                            format=audio_format, subtype="PCM_16")
            rows = [*PHN[:-1], (PHN[-1][0], last_end, "h#")]
            (speaker / f"{sentence}.phn").write_text("".join(f"{s} {e} {p}\n" for s, e, p in rows))
            (speaker / f"{sentence}.wrd").write_text(f"800 {last_end} she\n")
            (speaker / f"{sentence}.txt").write_text(f"0 {N} She.\n")
    (root / "spkrinfo.txt").write_text("; ID  Sex DR Use\nVMH  F   1  TRN\nBCG  M   8  TRN\n")
    return root


def test_prepare_puts_the_whole_sample_in_test_without_sa(tmp_path):
    summary = prepare_corpus(make_sample(tmp_path / "timit"), tmp_path / "out")
    out = tmp_path / "out"
    assert all(read_manifest(split_manifest(out, split)) == [] for split in ("train", "dev"))
    test = read_manifest(split_manifest(out, "test"))
    assert sorted(u.id for u in test) == [
        "FVMH0_SI943", "FVMH0_SX13", "MBCG0_SI943", "MBCG0_SX13",
    ]
    assert {u.dialect for u in test} == {"DR1", "DR8"}
    assert test[0].phone_labels == ["h#", "sh", "iy", "h#"] and test[0].samples == N
    assert "every utterance is in test" in summary.note and summary.clamped == 0
    assert not (out / "stats.json").exists()  # nothing to train on


def test_last_boundary_two_samples_past_the_end_is_clamped_and_counted(tmp_path):
    summary = prepare_corpus(make_sample(tmp_path / "timit", last_end=N + 2), tmp_path / "out")
    test = read_manifest(split_manifest(tmp_path / "out", "test"))
    assert all(u.phones[-1][1] == N and u.words[-1][1] == N for u in test)
    assert summary.clamped == 2 * len(test)  # .phn and .wrd of each utterance
    assert summary.to_dict()["clamped_boundaries"] == 8


def test_boundary_far_past_the_end_is_refused_with_one_line_and_exit_2(tmp_path):
    corpus = make_sample(tmp_path / "timit", last_end=N + 2000)
    with pytest.raises(CorpusError, match=r"si943\.phn:4: segment ends at sample 6800"):
        prepare_corpus(corpus, tmp_path / "out")
    result = runner.invoke(app, ["data", "prepare", str(corpus), str(tmp_path / "out")])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "past the end" in errors[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def _zip(sample: Path, path: Path, extra: str | None = None) -> Path:
    """NLTK's zip: every member under timit/."""
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(sample.rglob("*")):
            archive.write(file, f"timit/{file.relative_to(sample).as_posix()}")
        if extra is not None:
            archive.writestr(extra, "x")
    return path


def test_download_command_unpacks_nltks_zip_for_prepare(tmp_path):
    archive = _zip(make_sample(tmp_path / "made"), tmp_path / "timit.zip")
    out = tmp_path / "nltk_timit"
    result = runner.invoke(app, ["data", "download", "nltk-timit", str(out),
                                 "--url", archive.as_uri()])
    assert result.exit_code == 0, result.output
    assert (out / "spkrinfo.txt").exists() and (out / "dr8-mbcg0" / "sx13.phn").exists()
    result = runner.invoke(app, ["data", "prepare", str(out), str(tmp_path / "p"),
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    splits = {s["split"]: s["utterances"] for s in json.loads(result.output)["splits"]}
    assert splits == {"train": 0, "dev": 0, "test": 4}
    again = runner.invoke(app, ["data", "download", "nltk-timit", str(out),
                                "--from-zip", str(archive)])
    assert again.exit_code == 2 and "--force" in again.output


def test_zip_with_a_member_outside_timit_is_refused_and_leaves_nothing(tmp_path):
    archive = _zip(make_sample(tmp_path / "made"), tmp_path / "bad.zip", extra="../evil.txt")
    with pytest.raises(CorpusError, match="outside timit/"):
        unpack_nltk_timit(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "made"]


def test_damaged_zip_is_refused(tmp_path):
    archive = _zip(make_sample(tmp_path / "made"), tmp_path / "timit.zip")
    data = bytearray(archive.read_bytes())
    data[200:260] = bytes(60)  # inside the first member's stored bytes
    archive.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match="not a readable zip"):
        unpack_nltk_timit(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_download_records_the_zips_sha256_and_refuses_another(tmp_path):
    """#20.8: the download had no checksum, only the members' CRCs."""
    import hashlib

    archive = _zip(make_sample(tmp_path / "made"), tmp_path / "timit.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    out = tmp_path / "nltk_timit"
    ok = runner.invoke(app, ["data", "download", "nltk-timit", str(out), "--url",
                             archive.as_uri(), "--sha256", digest])
    assert ok.exit_code == 0, ok.output
    assert json.loads((out / "SOURCE.json").read_text()) == {
        "url": archive.as_uri(), "bytes": archive.stat().st_size,
        "md5": hashlib.md5(archive.read_bytes()).hexdigest(), "sha256": digest}
    other = tmp_path / "other"
    bad = runner.invoke(app, ["data", "download", "nltk-timit", str(other), "--from-zip",
                              str(archive), "--sha256", "0" * 64])
    message = " ".join(bad.output.split())
    assert bad.exit_code == 2 and f"expected SHA-256 {'0' * 64} (--sha256), got {digest}" in message
    assert not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made", "nltk_timit", "timit.zip"]


def test_a_failed_download_leaves_no_folder_and_clears_killed_downloads(tmp_path):
    """#20.5: a failed download left the empty folders it had made."""
    (tmp_path / ".x.download-k1lled00").mkdir()  # a download killed with kill -9
    (tmp_path / ".x.download-k1lled00" / "timit.zip").write_bytes(b"half")
    result = runner.invoke(app, ["data", "download", "nltk-timit", str(tmp_path / "x"),
                                 "--url", (tmp_path / "missing.zip").as_uri()])
    assert result.exit_code == 2 and "could not download" in result.output
    assert list(tmp_path.iterdir()) == []
    nested = tmp_path / "a" / "b" / "c"
    result = runner.invoke(app, ["data", "download", "nltk-timit", str(nested),
                                 "--url", (tmp_path / "missing.zip").as_uri()])
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def _published_at(archive: Path, *, size: int | None = None, md5: str | None = None):
    """NLTK's published values as if NLTK's index listed ``archive`` at its file:// URL."""
    import hashlib

    return nltk_sample.PublishedZip(
        url=archive.as_uri(), size=archive.stat().st_size if size is None else size,
        md5=hashlib.md5(archive.read_bytes()).hexdigest() if md5 is None else md5,
        where="a test's index")


@pytest.mark.parametrize("wrong", ["md5", "size"])
def test_download_from_nltks_url_is_refused_when_size_or_md5_differ_from_its_index(
    tmp_path, monkeypatch, wrong):
    """#20: the default download had no pinned checksum; NLTK's index publishes its size and
    MD5, and a zip that differs is refused before anything is unpacked."""
    archive = _zip(make_sample(tmp_path / "made"), tmp_path / "timit.zip")
    bad = ({"md5": "0" * 32} if wrong == "md5" else {"size": archive.stat().st_size + 1})
    monkeypatch.setattr(nltk_sample, "NLTK_TIMIT", _published_at(archive, **bad))
    expected = r"expected .* bytes with MD5 .* \(a test's index\), got "
    with pytest.raises(CorpusError, match=expected) as refused:
        nltk_sample.download_nltk_timit(tmp_path / "out", url=archive.as_uri())
    assert "\n" not in str(refused.value) and "fetch it again" in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made", "timit.zip"]


def test_download_from_nltks_url_passes_when_size_and_md5_match_its_index(
    tmp_path, monkeypatch):
    archive = _zip(make_sample(tmp_path / "made"), tmp_path / "timit.zip")
    monkeypatch.setattr(nltk_sample, "NLTK_TIMIT", _published_at(archive))
    out = nltk_sample.download_nltk_timit(tmp_path / "out", url=archive.as_uri())
    assert (out / "dr8-mbcg0" / "sx13.phn").exists()
    assert json.loads((out / "SOURCE.json").read_text())["bytes"] == archive.stat().st_size


def test_another_url_is_checked_against_nltks_index_only_when_asked(tmp_path):
    """A mirror or a local zip is not NLTK's URL: its values are not assumed; --nltk-index
    asks for them (a test zip then fails them)."""
    archive = _zip(make_sample(tmp_path / "made"), tmp_path / "timit.zip")
    plain = runner.invoke(app, ["data", "download", "nltk-timit", str(tmp_path / "a"),
                                "--url", archive.as_uri()])
    assert plain.exit_code == 0, plain.output
    asked = runner.invoke(app, ["data", "download", "nltk-timit", str(tmp_path / "b"),
                                "--url", archive.as_uri(), "--nltk-index"])
    assert asked.exit_code == 2 and "22251869 bytes" in asked.output
    from_zip = runner.invoke(app, ["data", "download", "nltk-timit", str(tmp_path / "c"),
                                   "--from-zip", str(archive), "--nltk-index"])
    assert from_zip.exit_code == 2 and "34c047c4749a811287f2c652104d7849" in from_zip.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "made", "timit.zip"]


def test_nltks_published_values_are_those_of_its_index():
    """nltk/nltk_data, gh-pages, index.xml (commit 5db857e), package id="timit"."""
    assert nltk_sample.NLTK_TIMIT.url == nltk_sample.NLTK_TIMIT_URL == (
        "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/timit.zip")
    assert (nltk_sample.NLTK_TIMIT.size, nltk_sample.NLTK_TIMIT.md5) == (
        22251869, "34c047c4749a811287f2c652104d7849")
