"""The learning rate: linear warmup, reduce-on-plateau of the dev score, and budget annealing.

The LR is a pure function of the optimizer step and of a few numbers of state, so that a
resumed run sees exactly the LR an uninterrupted one would (the bit-exact resume test checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

BUDGET_ANNEAL_FLOOR = 0.05  # train.budget_anneal ends at this fraction of the scheduled LR


@dataclass
class PlateauSchedule:
    """Linear warmup, then reduce-on-plateau of the dev score (lower is better).

    The LR is a pure function of the step and of ``scale``, which :meth:`update` lowers by
    ``factor`` after ``patience`` epochs without improvement; the whole state is five numbers.
    Epochs before the score first improves do not count: a CTC or transducer model emits only
    blanks for its first epochs (dev PER stuck near 100%) and needs its full LR to leave them.
    """

    base_lr: float
    warmup_steps: int
    factor: float
    patience: int
    min_lr: float
    scale: float = 1.0
    best: float = math.inf
    bad_epochs: int = 0
    moved: bool = False  # has the score improved on its first value yet?

    def lr(self, step: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return max(self.base_lr * self.scale, self.min_lr) * warm

    def update(self, score: float) -> None:
        """Record an epoch's dev score."""
        if score < self.best:
            self.moved = self.moved or math.isfinite(self.best)
            self.best, self.bad_epochs = score, 0
            return
        if not self.moved:
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.scale *= self.factor
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, float]:
        """The mutable state."""
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs,
                "moved": float(self.moved)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.scale = float(state["scale"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.moved = bool(state.get("moved", True))


def budget_factor(budget_left: float) -> float:
    """LR multiplier for ``train.budget_anneal``: the fraction of the time budget left.

    Falls linearly from 1 to :data:`BUDGET_ANNEAL_FLOOR` (Li et al. 2020, "Budgeted Training":
    for a fixed budget this beats a constant LR).

    Args:
        budget_left: time left over the budget when training started (1 = all of it).
    """
    return min(max(budget_left, BUDGET_ANNEAL_FLOOR), 1.0)
