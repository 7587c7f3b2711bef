"""One stage of ``seqkit bench gpu`` in a process of its own: what it returns and how it runs.

A CUDA fault (an illegal address, a kernel that traps, a segfault in a driver) can leave the
process's CUDA context unusable or end the process, so :mod:`seqkit.bench.gpu` runs each stage
as ``python -m seqkit.bench.gpu_stage TARGET KWARGS RESULT``: the child imports
``TARGET`` (``"module:function"``), calls it with the JSON ``KWARGS``, and writes what it
returned, or the exception it raised, to the JSON file ``RESULT`` (atomically). A child that
dies before writing it is recorded by the parent from its exit status and log.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from seqkit.atomic import write_atomic


@dataclass(frozen=True)
class StageOutput:
    """What a stage returns.

    Attributes:
        rows: table rows, one dict per check or measurement; a row with an ``"ok"`` key is a
            check, and the stage holds only if there is at least one check and every one is
            ``True``.
        notes: lines of text for the report (tolerances, commands, what was compared).
        problem: a one-line reason the stage failed beyond its rows (None if none).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problem: str | None = None

    def verdict(self) -> str | None:
        """Why the stage did not hold, on one line, or None if it held.

        A stage that checked nothing did not hold: "ok" is said only of something checked.
        """
        problems = [self.problem] if self.problem else []
        checks = [row for row in self.rows if "ok" in row]
        if not checks:
            problems.append("the stage checked nothing")
        failed = [_row_name(row) for row in checks if row["ok"] is not True]
        if failed:
            problems.append(f"{len(failed)} of {len(checks)} checks failed: "
                            + ", ".join(failed[:8]) + (", ..." if len(failed) > 8 else ""))
        return "; ".join(problems) or None


def _row_name(row: dict[str, Any]) -> str:
    """A row's name for a failure list: its ``check``, else its first two text cells."""
    if "check" in row:
        return str(row["check"])
    names = [v for k, v in row.items() if isinstance(v, str) and k not in _NOT_NAMES]
    return " ".join(names[:2])[:80]


_NOT_NAMES = {"error", "stopped", "tolerance", "required", "peer", "backend"}


def one_line(error: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line, at most ``limit`` characters (CUDA errors run long)."""
    text = f"{type(error).__name__}: {' '.join(str(error).split()) or '(no message)'}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_target(target: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call ``target`` (``"module:function"``) with ``kwargs``; its output or error as JSON data.

    Returns:
        ``{"rows", "notes", "problem"}`` of the :class:`StageOutput` it returned, or
        ``{"error": one line, "traceback": text}`` if it raised.
    """
    module, _, name = target.partition(":")
    try:
        output = getattr(importlib.import_module(module), name)(**kwargs)
        if not isinstance(output, StageOutput):
            raise TypeError(f"stage {target} returned {type(output).__name__}, not StageOutput")
        return asdict(output)
    except Exception as error:  # noqa: BLE001 - the parent records it as the stage's failure
        return {"error": one_line(error), "traceback": traceback.format_exc()}


def main(argv: list[str]) -> int:
    """``TARGET KWARGS_JSON RESULT_PATH``: run one stage, write its result. Exit 0 if written."""
    target, kwargs, result = argv
    data = run_target(target, json.loads(kwargs))
    text = json.dumps(data, default=str)  # a non-JSON cell (a path, a dtype) becomes text
    write_atomic(Path(result), lambda tmp: tmp.write_text(text, "utf-8"))
    return 0


if __name__ == "__main__":
    # through the module's own name, so that the stage's StageOutput is this one's class
    from seqkit.bench.gpu_stage import main as stage_main

    sys.exit(stage_main(sys.argv[1:]))
