"""Same as `seqkit bench train`; from the repo root: `.venv/bin/python benchmarks/train.py`."""

import sys

from seqkit.cli.main import app

if __name__ == "__main__":
    app(["bench", "train", *sys.argv[1:]])
