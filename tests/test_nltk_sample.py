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
    assert json.loads((out / "SOURCE.json").read_text()) == {"url": archive.as_uri(),
                                                             "sha256": digest}
    other = tmp_path / "other"
    bad = runner.invoke(app, ["data", "download", "nltk-timit", str(other), "--from-zip",
                              str(archive), "--sha256", "0" * 64])
    assert bad.exit_code == 2 and "does not match" in bad.output
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
