"""The three splits every corpus is cut into, and the files that name them.

A corpus in TIMIT's layout may name its speakers per split in ``splits.json`` (the synthesized
corpus always does); a prepared folder holds one manifest per split, ``<split>.jsonl``. Writers
(synthesis, the corpus readers) and readers (training, evaluation) meet here, below both.
"""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "dev", "test")
SPLITS_FILE = "splits.json"


def split_manifest(prepared_dir: Path, split: str) -> Path:
    """The manifest of ``split`` in a prepared folder: ``PREPARED/<split>.jsonl``."""
    return prepared_dir / f"{split}.jsonl"
