"""Options shared by ``seqkit decode`` and ``seqkit evaluate``: the model and how to search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqkit.decoding.recognize import DEFAULT_LM_WEIGHT, DecodeOptions, TransducerSearch
from seqkit.errors import ConfigError

ModelArg = Annotated[
    Path,
    typer.Argument(help="Run directory (uses best.pt, else last.pt), a .pt checkpoint or a file "
                   "written by seqkit export."),
]
BeamOpt = Annotated[
    int,
    typer.Option("--beam", min=1, help="1 = greedy; K > 1 = beam search with K hypotheses.",
                 rich_help_panel="Search"),
]
LmOpt = Annotated[
    Path | None,
    typer.Option("--lm", help="Phone LM for beam search (CTC or transducer): a saved n-gram "
                 "JSON, or a prepared dir / manifest to estimate a trigram from (its train "
                 "transcripts).",
                 rich_help_panel="Search"),
]
LmWeightOpt = Annotated[
    float | None,
    typer.Option("--lm-weight", help="LM weight in beam search (needs --lm; default "
                 f"{DEFAULT_LM_WEIGHT:g} with --lm).", rich_help_panel="Search"),
]
InsertionBonusOpt = Annotated[
    float,
    typer.Option("--insertion-bonus", help="Score added per phone in beam search with an LM "
                 "(offsets the LM's bias to short outputs).", rich_help_panel="Search"),
]
TransducerSearchOpt = Annotated[
    TransducerSearch,
    typer.Option("--transducer-search", help="Transducer beam: graves, batched (all "
                 "hypotheses at once, up to --max-symbols labels per frame, fast on long files) "
                 "or auto (batched above 60 s).",
                 rich_help_panel="Search"),
]
# No min=1: search_options refuses K < 1 in one red line naming the flag, not a usage box.
MaxSymbolsOpt = Annotated[
    int,
    typer.Option("--max-symbols", help="Most labels a transducer may emit per frame, in greedy "
                 "and batched beam search (graves has no cap).", rich_help_panel="Search"),
]


def check_search_flags(*, beam: int, lm: Path | None, lm_weight: float | None,
                       max_symbols: int) -> None:
    """Refuse flags that do not go together, naming the flags (the library then checks the
    values again, in its own words).

    Raises:
        ConfigError: --lm-weight without --lm, --lm without --beam, --max-symbols below 1.
    """
    if lm_weight and lm is None:
        raise ConfigError("--lm-weight needs an LM: pass --lm PATH or drop --lm-weight")
    if lm is not None and beam == 1:
        raise ConfigError("--lm is only used by beam search: add --beam K (e.g. 8)")
    if max_symbols < 1:
        raise ConfigError(f"expected --max-symbols >= 1, found {max_symbols}: use 1 or more "
                          f"(default {DecodeOptions.max_symbols_per_frame})")
