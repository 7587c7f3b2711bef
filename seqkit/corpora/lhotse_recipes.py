"""Any of lhotse's corpus recipes as a corpus source: ``seqkit data prepare SRC OUT --corpus NAME``.

lhotse 1.33 has about a hundred recipes; ``prepare_<name>(corpus_dir, output_dir, ...)`` reads a
corpus as its download unpacks and returns its manifests, per part. Every recipe that yields
recordings and supervisions (or cuts) can be prepared: its manifests go through
:func:`seqkit.corpora.lhotse_manifests.source_from_parts`. A recipe's own options (Common Voice's
``languages``, VCTK's ``mic_id``) are passed as ``options``; one it requires and is not given is
named.

Two recipes are read with more than lhotse gives:

* ``timit``: called with ``num_phones=60`` (TIMIT's own labels, unfolded), so the phones are the
  ``.PHN`` files'. lhotse reads ``<corpus>/data/TRAIN|TEST/...``, as the zip it downloads unpacks;
  a tree with ``TRAIN/`` at its root (real TIMIT from the LDC, ``seqkit data synth`` output) is
  handed to it through a temporary ``data`` link. Where the corpus has a ``splits.json`` (the
  synthesized corpus), its dev and test speakers replace lhotse's fixed lists.
* ``l2_arctic``: lhotse reads no phones (its docstring says so); the utterances people annotated
  take theirs from ``annotation/`` (:mod:`seqkit.corpora.l2_arctic`).

``--corpus timit`` and ``--corpus librispeech`` keep seqkit's own readers, which are checked against
TIMIT's files; ``lhotse:timit`` names lhotse's (see docs/corpora.md for where they differ).
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from seqkit.corpora.l2_arctic import annotated_phones, annotation_file
from seqkit.corpora.lhotse_manifests import import_lhotse, quiet, source_from_parts
from seqkit.corpora.source import CorpusSource
from seqkit.corpora.timit.layout import read_splits_file
from seqkit.data.splits import SPLITS_FILE
from seqkit.errors import ConfigError, CorpusError, SeqkitError

LHOTSE_PREFIX = "lhotse:"
# Names --corpus reads with seqkit's own reader (lhotse:NAME reads them with lhotse's).
OWN_READERS = ("timit", "librispeech")
_CORPUS_ARGUMENTS = ("corpus_dir", "tedlium_root", "data_dir", "audio_dir", "speech_dir")


def recipe_names() -> list[str]:
    """The names of lhotse's recipes that prepare a corpus, sorted (``cmu_arctic``, ...)."""
    recipes = import_lhotse().recipes
    return sorted(name[len("prepare_"):] for name in dir(recipes) if name.startswith("prepare_"))


def normalize_recipe(name: str) -> str:
    """A recipe name as lhotse writes it: ``lhotse:CMU-Arctic`` -> ``cmu_arctic``."""
    bare = name[len(LHOTSE_PREFIX):] if name.startswith(LHOTSE_PREFIX) else name
    return bare.strip().lower().replace("-", "_")


def find_recipe_function(name: str, kind: str) -> Callable[..., Any]:
    """lhotse's ``<kind>_<name>`` function (kind: prepare or download).

    Raises:
        ConfigError: no such recipe; the message names the closest ones.
    """
    recipes = import_lhotse().recipes
    function = getattr(recipes, f"{kind}_{name}", None)
    if function is None and hasattr(recipes, f"prepare_{name}"):
        raise ConfigError(
            f"lhotse's {name} recipe downloads nothing (the corpus is licensed or fetched by "
            f"hand): get it as its page says, then `seqkit data prepare CORPUS OUT --corpus {name}`"
        )
    if function is None:
        names = recipe_names()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else (
            f"lhotse has {len(names)}: {', '.join(names[:12])}, ... (docs/corpora.md)")
        what = "corpus recipe" if kind == "prepare" else "recipe that downloads"
        raise ConfigError(f"lhotse has no {what} {name!r}: {hint}")
    return function


def read_recipe(
    name: str, corpus_dir: str | Path, *, options: dict[str, Any] | None = None, jobs: int = 1
) -> CorpusSource:
    """A corpus read by lhotse's recipe ``name`` (see the module docstring).

    Args:
        name: a lhotse recipe (``cmu_arctic``, ``lhotse:timit``, ``CMU-Arctic``).
        corpus_dir: the corpus as its download unpacks.
        options: further keyword arguments of the recipe's ``prepare_<name>``.
        jobs: passed as ``num_jobs`` to recipes that take it.

    Raises:
        ConfigError: no such recipe, an option it does not take, a required one missing.
        CorpusError: the recipe cannot read ``corpus_dir`` (lhotse's own message, in one line).
    """
    recipe = normalize_recipe(name)
    corpus = Path(corpus_dir)
    if not corpus.is_dir():
        raise CorpusError(f"corpus directory {corpus} does not exist: check the path")
    prepare = find_recipe_function(recipe, "prepare")
    kwargs = _arguments(prepare, recipe, dict(options or {}), jobs)
    kind = f"lhotse recipe {recipe}"
    if recipe == "timit":
        return _read_timit(prepare, corpus, kwargs, kind)
    source = source_from_parts(_run(prepare, recipe, corpus, kwargs), corpus, kind=kind)
    if recipe == "l2_arctic":
        source = _with_l2_arctic_annotations(source, corpus)
    return source


def _arguments(prepare: Callable[..., Any], recipe: str, options: dict[str, Any],
               jobs: int) -> dict[str, Any]:
    parameters = inspect.signature(prepare).parameters
    names = list(parameters)
    for key in options:
        if key not in parameters or key == names[0]:
            raise ConfigError(
                f"lhotse's prepare_{recipe} takes no option {key!r}: it takes "
                f"{', '.join(n for n in names[1:] if n != 'output_dir') or 'none'}"
            )
    if "num_jobs" in parameters and "num_jobs" not in options:
        options["num_jobs"] = jobs
    missing = [n for n, p in list(parameters.items())[1:]
               if p.default is inspect.Parameter.empty and n not in options and n != "output_dir"]
    if missing:
        raise ConfigError(
            f"lhotse's prepare_{recipe} needs {', '.join(missing)}: give each with "
            f"--lhotse-option {missing[0]}=VALUE"
        )
    return options


def _run(prepare: Callable[..., Any], recipe: str, corpus: Path,
         kwargs: dict[str, Any]) -> dict[str, Any]:
    """The recipe's manifests by part, its files written to a temporary folder and dropped."""
    with tempfile.TemporaryDirectory(prefix="seqkit-lhotse-") as scratch, quiet():
        try:
            result = prepare(corpus, output_dir=scratch, **kwargs)
        except SeqkitError:
            raise
        except Exception as err:  # lhotse asserts, raises and fails in many ways
            message = str(err).splitlines()[0] if str(err) else ""
            raise CorpusError(
                f"lhotse's {recipe} recipe cannot read {corpus} ({type(err).__name__}"
                f"{': ' + message if message else ''}): expected the corpus as its download "
                "unpacks; check the path"
            ) from None
    return _parts(result, recipe)


def _parts(result: Any, recipe: str) -> dict[str, Any]:
    """Part name -> CutSet or {recordings, supervisions}, from the shapes recipes return:
    one part, a dict of parts, or a dict of languages of parts (Common Voice)."""
    lhotse = import_lhotse()
    parts: dict[str, Any] = {}

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, lhotse.CutSet):
            parts[".".join(path) or "all"] = value
        elif isinstance(value, dict) and "supervisions" in value and "recordings" in value:
            parts[".".join(path) or "all"] = value
        elif isinstance(value, dict) and "cuts" in value:
            walk(value["cuts"], path)
        elif isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, (*path, str(key)))
    walk(result, ())
    if not parts:
        raise CorpusError(
            f"lhotse's {recipe} recipe yields no recordings and supervisions: seqkit prepares "
            "speech with transcripts; this recipe is not one of those corpora"
        )
    return parts


@contextlib.contextmanager
def _timit_root(corpus: Path) -> Iterator[Path]:
    """A folder with ``data/`` holding the corpus's TRAIN and TEST, as lhotse reads TIMIT."""
    if (corpus / "data").is_dir():
        yield corpus
        return
    with tempfile.TemporaryDirectory(prefix="seqkit-lhotse-timit-") as root:
        os.symlink(corpus.resolve(), Path(root) / "data")
        yield Path(root)


def _read_timit(prepare: Callable[..., Any], corpus: Path, kwargs: dict[str, Any],
                kind: str) -> CorpusSource:
    timit = import_lhotse().recipes.timit
    kwargs = {**kwargs, "num_phones": 60}  # TIMIT's own labels: seqkit folds them itself
    splits_file = corpus / SPLITS_FILE
    speakers = read_splits_file(splits_file) if splits_file.is_file() else None
    original = timit.get_speakers
    with _timit_root(corpus) as root:
        if speakers is not None:  # the corpus's own dev and test speakers
            timit.get_speakers = lambda: ([s.lower() for s in speakers["dev"]],
                                          [s.lower() for s in speakers["test"]])
        try:
            source = source_from_parts(_run(prepare, "timit", root, kwargs), corpus, kind=kind)
        finally:
            timit.get_speakers = original
        # Paths through the temporary link, made real while it exists.
        utterances = [replace(u, audio=u.audio.resolve() if u.audio else None,
                               phone_source="TIMIT .PHN (lhotse)") for u in source.utterances]
    note = ("dev and test speakers from splits.json" if speakers is not None
            else "dev and test speakers from lhotse's lists")
    return CorpusSource(kind, corpus, utterances, source.defines_splits,
                        notes=(*source.notes, note))


def _with_l2_arctic_annotations(source: CorpusSource, corpus: Path) -> CorpusSource:
    utterances = []
    annotated = 0
    for utt in source.utterances:
        speaker, _, stem = utt.id.partition("-")
        path = annotation_file(corpus, speaker, stem)
        if path is not None:
            utt = replace(utt, phones=tuple(annotated_phones(path)),
                           phone_source="L2-ARCTIC annotation")
            annotated += 1
        utterances.append(utt)
    note = f"{annotated} utterance(s) with hand-annotated phones (annotation/), the rest from words"
    return CorpusSource(source.kind, source.root, utterances, source.defines_splits,
                        notes=(*source.notes, note))


