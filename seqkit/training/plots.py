"""Training curves: train/dev loss and dev PER by epoch, redrawn after every epoch."""

from __future__ import annotations

import math
from pathlib import Path

from seqkit.atomic import write_atomic
from seqkit.training.runlog import EpochRecord


def plot_curves(epochs: list[EpochRecord], path: Path) -> None:
    """Train/dev loss and dev PER by epoch as a PNG (matplotlib Agg), written atomically.

    With no completed epoch the picture says so (a run stopped inside its first epoch).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(fig)
    numbers = [e.epoch for e in epochs]
    ax_loss, ax_per = fig.subplots(1, 2)
    ax_loss.plot(numbers, [e.train_loss for e in epochs], "o-", label="train")
    ax_loss.plot(numbers, [e.dev_loss for e in epochs], "s-", label="dev")
    ax_loss.set(xlabel="epoch", ylabel="NLL per label (nats)", title="loss")
    ax_loss.legend()
    pers = [e.dev_per_pct for e in epochs]
    if any(p is not None for p in pers):
        ax_per.plot(numbers, [p if p is not None else math.nan for p in pers], "o-", color="C2")
    ax_per.set(xlabel="epoch", ylabel="PER % (39 phones)", title="dev PER")
    if not epochs:
        ax_loss.text(0.5, 0.5, "no epoch completed yet", ha="center", transform=ax_loss.transAxes)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
