"""Same as `seqkit bench decode`; from the repo root: `.venv/bin/python benchmarks/decode.py`."""

import sys

from seqkit.cli.main import app

if __name__ == "__main__":
    app(["bench", "decode", *sys.argv[1:]])
