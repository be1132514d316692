"""Shared helper of the simulator's beam tests (points and array models)."""

from __future__ import annotations

import numpy as np


def side_lobe_db(db: np.ndarray) -> float:
    """Highest level (dB) of a symmetric beam profile beyond its main lobe's first minimum, read
    on the right half; ``-inf`` when the profile falls monotonically (no null, no side lobe)."""
    c = len(db) // 2
    rising = np.flatnonzero(np.diff(db[c:]) > 0)
    return float(db[c + rising[0]:].max()) if len(rising) else -np.inf
