"""Seeds derived from a run's ``--seed``: one rule for every random stream that must replay.

A resumed run must draw what an uninterrupted one draws (shuffles, perturbations, masks, weight
noise), and two streams of one run must not draw the same numbers. So every stream seeds its own
generator from the run's seed, a counter (the epoch or the optimizer step) and the worker's
rank, each stream with its own ``multiplier`` / ``salt`` pair: the seed is
``(seed * multiplier + counter) * salt + rank``. A large prime multiplier keeps the counters of
neighbouring seeds apart (seed 1's epoch 0 is not seed 0's epoch 1).
"""

from __future__ import annotations

STREAM_PRIME = 1_000_003  # the default multiplier: a prime far above any epoch or step count


def stream_seed(
    seed: int, counter: int, *, multiplier: int = STREAM_PRIME, salt: int = 1, rank: int = 0
) -> int:
    """The seed of one random stream at one epoch or step of a seeded run.

    Args:
        seed: the run's seed (``train.seed``, ``--seed``).
        counter: the epoch, optimizer step or other position in the run (>= 0).
        multiplier: spreads seeds apart; give each stream of a run its own (multiplier, salt).
        salt: a second per-stream factor, applied after the counter.
        rank: the worker's rank, so that workers draw different numbers. Default 0.

    Returns:
        ``(seed * multiplier + counter) * salt + rank``, for ``torch.Generator().manual_seed``.
    """
    return (seed * multiplier + counter) * salt + rank
