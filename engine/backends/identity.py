"""The identity backend: returns a copy of the frame.

Not a despeckler: it exists so that benchmarks and tests can measure and exercise the
transport (protocol, sockets, queues) with the inference cost removed.
"""

from __future__ import annotations

import numpy as np

from engine.base import Despeckler, InputSpec

__all__ = ["IdentityDespeckler"]


class IdentityDespeckler(Despeckler):
    name = "identity"
    has_model = False

    def __init__(self, spec: InputSpec | None = None, in_flight: int = 2) -> None:
        super().__init__(spec, in_flight)

    def _infer(self, frame: np.ndarray) -> np.ndarray:
        return frame.copy()
