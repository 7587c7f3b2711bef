"""``seqkit data``: synthesize the embedded corpus and prepare manifests from a corpus."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Make and prepare speech corpora (the embedded synthesized corpus, TIMIT).",
    no_args_is_help=True,
)

# --- synth (owned by the corpus-synthesis work) -----------------------------------------------


# --- prepare (owned by the corpus-reading work) -----------------------------------------------
