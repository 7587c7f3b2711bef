"""Brute-force references: the definition of correctness for every loss backend.

Each function enumerates every alignment explicitly, so it is only usable on tiny inputs
(a handful of frames and labels). Tests compare every backend against these.
"""

from __future__ import annotations

# --- CTC (owned by the CTC loss work) ---------------------------------------------------------


# --- Transducer (owned by the transducer loss work) -------------------------------------------
