"""Registry of the classical despeckling baselines: one place that lists every method.

Each entry maps a name to its function and says where the method comes from and whether
the implementation is an approximation of the published one.  Default parameters live in
the function signatures (:attr:`Baseline.params` reads them back), so there is one source
of truth.  Every function takes a ``uint8`` (0..255) or float (0..1) ``(H, W)`` image and
returns the same shape and dtype.

    >>> from benchmarks.baselines import BASELINES
    >>> out = BASELINES["srad"](frame, steps=50)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.baselines import diffusion, geometric, library, nonlocal_means
from benchmarks.baselines.common import BaselineError

__all__ = ["Baseline", "BASELINES", "PAPER_METHODS", "BaselineError", "get_baseline"]


@dataclass(frozen=True)
class Baseline:
    """One despeckling method: its function, label for tables, source and honesty flag."""

    name: str
    label: str
    func: Callable[..., np.ndarray]
    family: str
    reference: str
    approximation: bool
    note: str = ""

    @property
    def params(self) -> Mapping[str, Any]:
        """The default parameters, read from the function's signature."""
        sig = inspect.signature(self.func)
        return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}

    @property
    def display(self) -> str:
        """Label for tables: ``"RTAD*"`` when the implementation is an approximation."""
        return f"{self.label}*" if self.approximation else self.label

    def __call__(self, image: np.ndarray, **overrides: Any) -> np.ndarray:
        unknown = set(overrides) - set(self.params)
        if unknown:
            raise BaselineError(
                f"{self.name}: unknown parameter(s) {sorted(unknown)}; known: {', '.join(self.params)}"
            )
        return self.func(image, **overrides)


_ENTRIES = (
    Baseline(
        "srad",
        "SRAD",
        diffusion.srad,
        "diffusion",
        "Yu & Acton, IEEE TIP 11(11), 2002",
        False,
        "q0(t) estimated each step as the median local var/mean^2 (no user-marked region)",
    ),
    Baseline(
        "dpad",
        "DPAD",
        diffusion.dpad,
        "diffusion",
        "Aja-Fernandez & Alberola-Lopez, IEEE TIP 15(9), 2006",
        False,
        "noise coefficient = mode of the local C^2 histogram; step/iteration count assumed",
    ),
    Baseline(
        "obnlm",
        "OBNLM",
        nonlocal_means.obnlm,
        "nonlocal",
        "Coupe et al., IEEE TIP 18(10), 2009",
        True,
        "pixelwise (not blockwise) Pearson-distance NLM with mean/variance pre-selection; h scaled by a noise estimate",
    ),
    Baseline(
        "sbf",
        "SBF",
        geometric.sbf,
        "geometric",
        "Tay et al., IEEE TIP 19(7), 2010",
        True,
        "local extrema replaced by the 8-neighbour mean; window and iteration count assumed",
    ),
    Baseline(
        "rtad",
        "RTAD",
        diffusion.rtad,
        "diffusion",
        "Deng, Wang & Shen, Pattern Recognit. Lett. 32(13), 2011",
        True,
        "DPAD coefficient from Rayleigh-trimmed local statistics; coupling not from the paper",
    ),
    Baseline(
        "admss",
        "ADMSS",
        diffusion.admss,
        "diffusion",
        "Ramos-Llorden et al., IEEE TIP 24(1), 2015",
        True,
        "scalar coefficient = speckle probability from local C^2 with temporal memory; no tensor, no Gamma mixture",
    ),
    Baseline(
        "eagf",
        "EAGF",
        geometric.eagf,
        "geometric",
        "Mishra et al., MIUA 2017",
        True,
        "Crimmins geometric filter with a per-pixel step damped by a soft edge map",
    ),
    Baseline(
        "epprsrad",
        "EPPRSRAD",
        diffusion.epprsrad,
        "diffusion",
        "Mishra et al., IEEE TIP 2017",
        True,
        "SRAD coefficient x (1 - edge probability) x (1 - relative echogenicity^2)",
    ),
    Baseline("median", "Median", library.median, "library", "cv2.medianBlur", False),
    Baseline("bilateral", "Bilateral", library.bilateral, "library", "cv2.bilateralFilter", False),
    Baseline("nlm", "NLM", library.nlm, "library", "cv2.fastNlMeansDenoising (Buades et al. 2005)", False),
)

#: name -> :class:`Baseline`, in table order (the paper's seven, SRAD, then the library filters).
BASELINES: dict[str, Baseline] = {b.name: b for b in _ENTRIES}

#: the seven methods of the paper's Table I, in its order.
PAPER_METHODS: tuple[str, ...] = ("dpad", "obnlm", "sbf", "rtad", "admss", "eagf", "epprsrad")


def get_baseline(name: str) -> Baseline:
    """The registered baseline called ``name`` (case-insensitive)."""
    try:
        return BASELINES[name.lower()]
    except KeyError:
        raise BaselineError(f"unknown baseline {name!r}; choose from: {', '.join(BASELINES)}") from None
