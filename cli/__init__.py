"""The ``seqkit`` command, installed as ``seqkit.cli``: it parses, calls seqkit and prints."""
