"""Same as `seqkit bench losses`; from the repo root: `.venv/bin/python benchmarks/losses.py`."""

import sys

from seqkit.cli.main import app

if __name__ == "__main__":
    app(["bench", "losses", *sys.argv[1:]])
