"""Several prepared corpora in one run (#29.5): union statistics, weighted mixing, the dev set,
the record of what was read, and a resume that is bit-exact and refuses changed corpora."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seqkit.audio.features import compute_stats, read_stats
from seqkit.cli.main import app
from seqkit.corpora.timit.prepare import prepare_corpus
from seqkit.data.batching import BucketBatchSampler, load_split
from seqkit.data.checksums import CHECKSUMS_FILE, write_checksums
from seqkit.data.corpus_set import merge_stats, parse_data_weights, resolve_corpora
from seqkit.data.pipeline import TrainingPipeline
from seqkit.errors import CheckpointError, ConfigError, CorpusError
from seqkit.synth.corpus import synthesize_corpus
from seqkit.training import load_recipe, read_run_log, train
from seqkit.training.runlog import Notice

TINY = """
[model]
kind = "ctc"
[model.encoder]
layers = 1
hidden = 32
stack = 3
[train]
lr = 3e-3
max_frames = 900
threads = 1
log_every = 1
[data]
phone_set = 39
"""
AUGMENTED = ("train.weight_noise=0.01", "train.spec_augment=true", "train.vtlp=0.1",
             "train.speed_perturb=0.1", "train.channel_db=6", "train.lowpass_probability=0.5",
             "model.encoder.dropout=0.0")


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny synthesized corpus (4 speakers x 2 sentences, seed 5: other voices and
    sentences than ``prepared``), prepared: 4 train, 2 dev utterances."""
    root = tmp_path_factory.mktemp("synth_S4x2")
    synthesize_corpus(root / "corpus", speakers=4, sentences=2, seed=5)
    prepare_corpus(root / "corpus", root / "prepared")
    return root / "prepared"


def _recipe(tmp_path: Path, *overrides: str):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return load_recipe(path, list(overrides))


def test_merged_statistics_equal_the_statistics_of_the_union() -> None:
    gen = torch.Generator().manual_seed(0)
    a = [torch.randn(n, 5, generator=gen) * 2 + 1 for n in (30, 7)]
    b = [torch.randn(n, 5, generator=gen) * 0.5 - 3 for n in (90, 11, 40)]
    merged = merge_stats([compute_stats(a), compute_stats(b)])
    union = compute_stats(a + b)
    assert merged.frames == union.frames == 178
    torch.testing.assert_close(merged.mean, union.mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(merged.std, union.std, rtol=0, atol=1e-5)
    # by frame counts, not an average of the means: the 141-frame corpus dominates
    assert float(merged.mean[0]) < (float(compute_stats(a).mean[0])
                                    + float(compute_stats(b).mean[0])) / 2
    assert merge_stats([compute_stats(a)]) is not None


def test_weights_set_each_corpus_s_utterances_per_epoch_seeded_by_the_epoch(
    prepared: Path, second: Path
) -> None:
    train = [load_split(p, "train", phone_set=39, features=None, stats=None)
             for p in (prepared, second)]
    sizes = [len(d) for d in train]  # 6 and 4

    def pipeline(weights, **kw):
        return TrainingPipeline(train, weights=weights, stats=None, features=None,
                                max_frames=400, seed=3, **kw)

    assert pipeline([1.0, 1.0]).epoch_items(0) is None  # each once: the sampler's own order
    half = pipeline([1.0, 0.5])
    draws = []
    for epoch in range(6):
        items = half.epoch_items(epoch)
        assert sorted(items[: sizes[0]]) == list(range(sizes[0]))  # corpus 0: each once
        picked = items[sizes[0]:]
        assert len(picked) == 2 and len(set(picked)) == 2
        assert all(sizes[0] <= i < sizes[0] + sizes[1] for i in picked)
        assert pipeline([1.0, 0.5]).epoch_items(epoch) == items  # by seed and epoch alone
        draws.append(tuple(sorted(picked)))
        batches = half.global_batches(epoch)
        assert sorted(i for b in batches for i in b) == sorted(items)
    assert len(set(draws)) > 1  # a fresh subset per epoch
    more = pipeline([2.5, 1.0]).epoch_items(0)
    counts = [more.count(i) for i in range(sizes[0])]
    assert len(more) == 15 + 4 and set(counts) <= {2, 3} and sum(counts) == 15
    # two workers share every global batch of the mixed epoch between them
    shares = [pipeline([1.0, 0.5], rank=r, world_size=2) for r in (0, 1)]
    for batch in shares[0].global_batches(1):
        parts = [s.local_share(batch) for s in shares]
        assert sorted(parts[0] + parts[1]) == sorted(batch) and all(parts)
    # one corpus: the very batches the sampler alone cuts (single-corpus runs are unchanged)
    one = TrainingPipeline(train[:1], stats=None, features=None, max_frames=400, seed=3)
    alone = BucketBatchSampler(train[0].lengths, 400, seed=3)
    assert all(one.global_batches(e) == alone.global_batches(e) for e in range(3))


def test_two_corpora_train_resume_bit_exactly_and_are_recorded(
    prepared: Path, second: Path, tmp_path: Path
) -> None:
    data = [prepared, second]
    kw = {"data_weights": {str(prepared): 1.0, str(second): 0.5}, "dev": "all", "max_epochs": 2}
    notices: list[str] = []

    def log(record):
        if isinstance(record, Notice):
            notices.append(record.text)

    recipe = _recipe(tmp_path, *AUGMENTED)
    full = train(recipe, data, tmp_path / "full", log=log, **kw)
    steps_per_epoch = full.steps // 2
    assert full.stopped == "max_epochs" and steps_per_epoch >= 2
    assert all(e.dev_per_pct is not None for e in full.epochs)
    assert any("training on 2 corpora" in n and "weight 0.5: 2 per epoch" in n
               and "every corpus's dev split, pooled" in n and "5 utterances" in n
               for n in notices), notices
    assert any("statistics of" in n and "2 corpora" in n for n in notices), notices
    # stopped in the middle of epoch 2, then resumed: the same weights as the uninterrupted run
    stop_at = steps_per_epoch + 1
    part = train(_recipe(tmp_path, *AUGMENTED, f"train.max_steps={stop_at}"), data,
                 tmp_path / "part", **kw)
    assert part.stopped == "max_steps" and part.steps == stop_at
    resumed = train(recipe, data, tmp_path / "part", resume=True, **kw)
    assert resumed.steps == full.steps
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    for name, value in a["model"].items():
        torch.testing.assert_close(b["model"][name], value, rtol=0, atol=0, msg=name)
    assert [e.dev_loss for e in resumed.epochs] == [e.dev_loss for e in full.epochs]
    # both corpora recorded: config.toml, metrics.jsonl, the checkpoints
    run = tmp_path / "part"
    table = tomllib.loads((run / "config.toml").read_text())["run"]
    assert table["dev"] == "all" and [c["weight"] for c in table["corpora"]] == [1.0, 0.5]
    assert [c["path"] for c in table["corpora"]] == [str(p.resolve()) for p in data]
    for corpus, folder in zip(table["corpora"], data, strict=True):
        assert sorted(corpus["sha256"]) == ["dev.jsonl", "stats.json", "train.jsonl"]
        assert corpus["dev"] is True
        assert corpus["sha256"]["train.jsonl"] in (folder / CHECKSUMS_FILE).read_text()
    assert load_recipe(run / "config.toml") == recipe  # the [run] table is not a setting
    log_record = read_run_log(run).run
    assert log_record is not None and log_record.dev_set == "all"
    assert [c["sha256"] for c in log_record.corpora] == [c["sha256"] for c in table["corpora"]]
    assert b["corpora"] == log_record.corpora and b["dev_set"] == "all"
    # the statistics are the union's, merged from both folders' stats.json by frame count
    union = merge_stats([read_stats(p / "stats.json")[1] for p in data])
    assert b["stats"]["frames"] == union.frames > read_stats(prepared / "stats.json")[1].frames


def _reprepared(second: Path, tmp_path: Path) -> Path:
    """``second`` prepared again with one train utterance fewer: consistent checksums, other
    content (what `seqkit data prepare --force` after a corpus change writes)."""
    other = tmp_path / "other"
    shutil.copytree(second, other, ignore=shutil.ignore_patterns("cache"))
    lines = (other / "train.jsonl").read_text().splitlines(keepends=True)
    (other / "train.jsonl").write_text("".join(lines[:-1]))
    write_checksums(other, ["train.jsonl", "dev.jsonl", "test.jsonl", "stats.json"])
    return other


def test_resume_refuses_corpora_that_changed_in_one_line(
    prepared: Path, second: Path, tmp_path: Path
) -> None:
    recipe = _recipe(tmp_path, "train.max_steps=1")
    run = tmp_path / "run"
    train(recipe, [prepared, second], run, max_epochs=1)
    assert (run / "last.pt").exists()
    other = _reprepared(second, tmp_path)
    for data, weights, dev, why in (
        ([prepared], None, "first", "trained on 2 corpora"),
        ([prepared, other], None, "first", "train.jsonl is not the file it trained on"),
        ([second, prepared], None, "first", "is not the file it trained on"),
        ([prepared, second], {str(prepared): 0.5}, "first", "weight 0.5, it trained with 1"),
        ([prepared, second], None, "all", "dev split is in the dev set now"),
    ):
        with pytest.raises(CheckpointError, match=why):
            train(_recipe(tmp_path), data, run, data_weights=weights, dev=dev, resume=True)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "tiny.toml"), "--data",
                                      str(prepared), "--data", str(other), "--out", str(run),
                                      "--resume"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "its corpora changed" in lines[0] and "--force" in lines[0]
    # the same corpora resume
    again = train(_recipe(tmp_path, "train.max_steps=2"), [prepared, second], run, resume=True,
                  max_epochs=1)
    assert again.steps == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--data-weight", "0.3"], "expected CORPUS=WEIGHT"),
    (["--data-weight", "{prepared}=abc"], "must be a number"),
    (["--data-weight", "{prepared}=0"], "must be a number in (0, 100]"),
    (["--data-weight", "{prepared}=-1"], "must be a number in (0, 100]"),
    (["--data-weight", "{prepared}=nan"], "must be a number in (0, 100]"),
    (["--data-weight", "nope=0.5"], "no --data is nope"),
    (["--data-weight", "prepared=0.5"], "several corpora are folders named prepared"),
    (["--data-weight", "{prepared}=1", "--data-weight", "{prepared}=2"], "twice"),
    (["--data", "{prepared}"], "is given twice"),
])
def test_a_bad_data_weight_or_corpus_list_is_one_line_and_exit_2(
    prepared: Path, second: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "runs" / "x"
    args = [a.format(prepared=prepared) for a in args]
    result = CliRunner().invoke(app, ["train", str(tmp_path / "tiny.toml"), "--data",
                                      str(prepared), "--data", str(second), "--out", str(out),
                                      *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_corpus_names_are_the_data_value_the_path_or_an_unambiguous_folder_name(
    tmp_path: Path
) -> None:
    a, b = tmp_path / "x" / "prepared", tmp_path / "y" / "prepared"
    assert [c.weight for c in resolve_corpora([a, b], {str(b): 0.3})] == [1.0, 0.3]
    assert [c.weight for c in resolve_corpora([a, tmp_path / "z"], {"z": 2})] == [1.0, 2.0]
    with pytest.raises(ConfigError, match="several corpora are folders named prepared"):
        resolve_corpora([a, b], {"prepared": 0.3})
    with pytest.raises(ConfigError, match="no --data given"):
        resolve_corpora([], None)
    assert parse_data_weights(["a=b=0.5"]) == {"a=b": 0.5}  # the last '=' splits


def _dev_only(corpus: Path, tmp_path: Path) -> Path:
    """``corpus``'s utterances as ``seqkit data prepare --all-to dev`` lays them out: all in
    dev, empty train and test, no stats.json (nothing to train on)."""
    out = tmp_path / "held_out"
    out.mkdir()
    lines = "".join((corpus / f"{s}.jsonl").read_text() for s in ("train", "dev", "test"))
    (out / "dev.jsonl").write_text(lines)
    for split in ("train", "test"):
        (out / f"{split}.jsonl").write_text("")
    write_checksums(out, ["train.jsonl", "dev.jsonl", "test.jsonl"])
    return out


def test_a_dev_only_corpus_first_is_the_dev_set_of_a_run_on_the_others(
    prepared: Path, second: Path, tmp_path: Path
) -> None:
    """Someone's held-out recordings (prepared --all-to dev) score a run on their others."""
    held_out = _dev_only(second, tmp_path)
    notices: list[str] = []
    summary = train(_recipe(tmp_path), [held_out, prepared], tmp_path / "run", max_epochs=1,
                    log=lambda r: notices.append(r.text) if isinstance(r, Notice) else None)
    assert summary.epochs[0].dev_per_pct is not None
    assert any("dev only, no train utterances" in n and "8 utterances" in n for n in notices)
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert [c["utterances"] for c in saved["corpora"]] == [0, 6]
    assert saved["stats"]["frames"] == read_stats(prepared / "stats.json")[1].frames
    with pytest.raises(CorpusError, match="no --data has train utterances"):
        train(_recipe(tmp_path), held_out, tmp_path / "none")
    with pytest.raises(CorpusError, match="dev.jsonl has no utterances: the first --data"):
        train(_recipe(tmp_path), [_train_only(second, tmp_path), prepared], tmp_path / "none")


def _train_only(corpus: Path, tmp_path: Path) -> Path:
    """``corpus`` as ``--all-to train`` lays it out: no dev utterances."""
    out = tmp_path / "extra"
    shutil.copytree(corpus, out, ignore=shutil.ignore_patterns("cache"))
    (out / "dev.jsonl").write_text("")
    write_checksums(out, ["train.jsonl", "dev.jsonl", "test.jsonl", "stats.json"])
    return out


@pytest.mark.slow  # ~1 min on 2 shared cores: three train processes import torch
def test_two_corpora_killed_mid_epoch_resume_to_the_uninterrupted_weights(
    prepared: Path, second: Path, tmp_path: Path
) -> None:
    """The kill hook (SEQKIT_TEST_KILL_AT_STEP) stops a real `seqkit train --data A --data B`
    process; --resume ends where an uninterrupted run ends, bit for bit."""
    import os
    import signal
    import subprocess
    import sys

    from seqkit.training.trainer import KILL_HOOK

    (tmp_path / "tiny.toml").write_text(TINY)

    def run(out: Path, *extra: str, kill: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != KILL_HOOK}
        if kill is not None:
            env[KILL_HOOK] = kill
        cmd = [sys.executable, "-m", "seqkit.cli.main", "train", str(tmp_path / "tiny.toml"),
               "--data", str(prepared), "--data", str(second), "--data-weight",
               f"{second}=0.5", "--out", str(out), "--max-epochs", "2",
               *[a for s in AUGMENTED for a in ("--set", s)], *extra]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    assert run(tmp_path / "full").returncode == 0
    killed = run(tmp_path / "cut", kill="4:SIGKILL")  # in epoch 2 (3 steps per epoch, seed 0)
    assert killed.returncode == -signal.SIGKILL and (tmp_path / "cut" / "last.pt").exists()
    resumed = run(tmp_path / "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["step"] == b["step"]
    for name, value in a["model"].items():
        torch.testing.assert_close(b["model"][name], value, rtol=0, atol=0, msg=name)
    assert read_run_log(tmp_path / "cut").run.corpora == read_run_log(tmp_path / "full").run.corpora
