"""Issue #17's peer check: a seqkit model beside pocketsphinx, and the voice screen.

pocketsphinx (the ``peers`` extra, installed by the ``test`` extra) runs for real on the tiny
synthesized corpus of ``tiny_runs``; the missing-extra path blocks its import in a subprocess.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqkit.bench.pocketsphinx import INSTALL_HINT, to_scoring_phones
from seqkit.cli.main import app
from seqkit.data.phones import PHONES_39
from seqkit.errors import ConfigError
from seqkit.metrics import phone_error_counts_without_silence

runner = CliRunner()


def test_pocketsphinx_phones_fold_onto_the_39_phone_scoring() -> None:
    assert to_scoring_phones(["SIL", "+NSN+", "+SPN+", "+BREATH+", "AO", "ZH", "AH", "HH"]) == [
        "sil", "sil", "sil", "sil", "aa", "sh", "ah", "hh"]
    with pytest.raises(ConfigError, match="no 39-phone class"):
        to_scoring_phones(["AX"])  # a TIMIT symbol, but not a 39-phone class


def test_every_phone_of_the_bundled_model_has_a_39_phone_class() -> None:
    pocketsphinx = pytest.importorskip("pocketsphinx")
    model = Path(pocketsphinx.get_model_path("en-us"))
    phones = {"SIL", "+NSN+", "+SPN+"}  # the model's noisedict
    with open(model / "cmudict-en-us.dict", encoding="utf-8") as lexicon:
        for line in lexicon:
            phones.update(line.split()[1:])
    assert len(phones) == 39 + 3  # 39 ARPAbet phones, SIL and two fillers
    assert set(to_scoring_phones(sorted(phones))) == set(PHONES_39) - {"dx"}  # ARPAbet has no flap


def test_per_without_silence_drops_sil_from_both_sides_after_folding() -> None:
    # 39 folding: ref sil b ae sil t sil -> b ae t; hyp sil p ae t -> p ae t: 1 S of 3
    counts = phone_error_counts_without_silence([["h#", "b", "ae", "tcl", "t", "h#"]],
                                                [["sil", "p", "ae", "t"]])
    assert (counts.sub, counts.dels, counts.ins, counts.ref_len) == (1, 0, 0, 3)


def test_bench_peers_prints_both_recognizers_with_and_without_sil(tiny_runs) -> None:
    args = ["bench", "peers", str(tiny_runs["ctc"]), "--data", str(tiny_runs["prepared"])]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    ours, theirs = json.loads(result.stdout)
    assert ours["recognizer"] == "seqkit ctc (greedy)"
    assert theirs["recognizer"] == "pocketsphinx (allphone)"
    assert "lw 2" in theirs["settings"] and "en-us-phone.lm.bin" in theirs["settings"]
    for row in (ours, theirs):
        assert row["utterances"] == 2 and row["failed"] == 0
        assert row["per_pct"] >= 0 and row["per_no_sil_pct"] >= 0 and row["utt_per_s"] > 0
        assert 0 < row["ref_phones_no_sil"] < row["ref_phones"]
    # same utterances, same scoring: the same references
    assert ours["ref_phones"] == theirs["ref_phones"]
    assert ours["ref_phones_no_sil"] == theirs["ref_phones_no_sil"]
    assert ours["per_pct"] < 30  # the tiny model was trained on these two utterances
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    for text in ("seqkit ctc", "pocketsphinx", "PER %", "PER no sil %", "utt/s"):
        assert text in table.stdout


def test_bench_voices_gives_a_per_per_speaker_from_a_corpus_or_its_prepared_folder(
    tiny_runs,
) -> None:
    splits = json.loads((tiny_runs["corpus"] / "splits.json").read_text())
    speakers = sorted(splits["speakers"])
    result = runner.invoke(app, ["bench", "voices", str(tiny_runs["corpus"]), "--format", "json"])
    assert result.exit_code == 0, result.output
    *per_speaker, total = json.loads(result.stdout)
    assert [row["speaker"] for row in per_speaker] == speakers
    assert {row["engine"] for row in per_speaker} == {"espeak"}
    for row in per_speaker:
        fields = splits["speakers"][row["speaker"]]
        assert row["voice"] == f"{fields['accent']}+{fields['variant']}"
        assert row["utterances"] == 2 and math.isfinite(row["per_no_sil_pct"])
    assert total["speaker"] == "all" and total["utterances"] == 2 * len(speakers)
    assert total["ref_phones_no_sil"] == sum(row["ref_phones_no_sil"] for row in per_speaker)

    prepared = runner.invoke(app, ["bench", "voices", str(tiny_runs["prepared"]), "--per-speaker",
                                   "1", "--format", "json"])
    assert prepared.exit_code == 0, prepared.output
    rows = json.loads(prepared.stdout)
    assert [row["speaker"] for row in rows[:-1]] == speakers  # splits.json found beside the audio
    assert {row["engine"] for row in rows} == {"espeak"}
    assert [row["utterances"] for row in rows] == [1] * len(speakers) + [len(speakers)]


def test_bench_voices_groups_speakers_by_the_engine_splits_json_records(tiny_runs, tmp_path
                                                                       ) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_runs["corpus"], corpus)
    splits = json.loads((corpus / "splits.json").read_text())
    first, *others = sorted(splits["speakers"])
    splits["speakers"][first].update(engine="piper", variant="en_US-joe")
    (corpus / "splits.json").write_text(json.dumps(splits))
    result = runner.invoke(app, ["bench", "voices", str(corpus), "--per-speaker", "1",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = [(r["engine"], r["voice"], r["speaker"], r["utterances"])
            for r in json.loads(result.stdout)]
    espeak = [("espeak", "{accent}+{variant}".format(**splits["speakers"][s]), s, 1)
              for s in others]
    assert rows == [*espeak, ("piper", "en_US-joe", first, 1),
                    ("espeak", None, "all", len(others)), ("piper", None, "all", 1)]


# One interpreter for both commands (importing torch is most of the cost): each is invoked as a
# user types it, with pocketsphinx's import blocked.
_WITHOUT_POCKETSPHINX = """
import json, sys
sys.modules["pocketsphinx"] = None
from typer.testing import CliRunner
from seqkit.cli.main import app
results = [CliRunner().invoke(app, args) for args in json.loads(sys.argv[1])]
print(json.dumps([[r.exit_code, r.stdout, r.stderr] for r in results]))
"""


def test_peer_benches_without_pocketsphinx_exit_2_with_the_install_hint(tiny_runs) -> None:
    commands = [["bench", "peers", str(tiny_runs["ctc"]), "--data", str(tiny_runs["prepared"])],
                ["bench", "voices", str(tiny_runs["corpus"])]]
    done = subprocess.run([sys.executable, "-c", _WITHOUT_POCKETSPHINX, json.dumps(commands)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for exit_code, stdout, stderr in json.loads(done.stdout):
        assert exit_code == 2, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and INSTALL_HINT in lines[0]
        assert stdout == ""
