"""Variants of Approach 3's law: exponents tied (alpha = beta) and parameters held at fixed values.

Published studies fit constrained forms of L = E + A/N^alpha + B/D^beta:
Muennighoff et al. 2023 and Gadre et al. 2024 tie alpha = beta, and some
studies fix E. A variant is a linear map from the free parameters to the
fitter's full vector theta = (a, b, e, alpha, beta) (lse.py, m = 2):

    theta = matrix @ free + offset

A tied exponent is one free coordinate feeding both alpha and beta; a fixed
parameter is a zero row of the matrix with its value (in log space for E, A, B)
in the offset. The objective's gradient in the free coordinates is
matrix.T @ gradient, so the same analytic gradient serves every variant.
docs/methods.md, "Variants of the law", states the forms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workflow.fit.primitives import FitError

THETA_NAMES = ("a", "b", "e", "alpha", "beta")
# Law parameter -> (its coordinate in theta, whether theta holds its logarithm).
COORDINATE = {"A": (0, True), "B": (1, True), "E": (2, True), "alpha": (3, False), "beta": (4, False)}
FREE_FORM = "L(N, D) = E + A / N^alpha + B / D^beta"


@dataclass(frozen=True)
class Reparametrisation:
    """theta = free @ matrix.T + offset, for one free vector or rows of them; ``index`` picks the free
    coordinates back out of a full theta (each free coordinate is a copy of one theta entry)."""

    matrix: np.ndarray
    offset: np.ndarray
    index: np.ndarray

    def theta(self, free: np.ndarray) -> np.ndarray:
        return np.asarray(free) @ self.matrix.T + self.offset

    def free(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta)[..., self.index]


@dataclass(frozen=True)
class Variant:
    """Approach 3's form: ``tie_exponents`` (alpha = beta) and ``fixed`` values ((name, value) pairs)."""

    tie_exponents: bool = False
    fixed: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of(cls, tie_exponents: bool = False, fixed: dict | None = None) -> Variant:
        """A checked variant; FitError names a parameter that cannot be fixed, or a contradiction."""
        fixed = dict(fixed or {})
        for name, value in fixed.items():
            if name not in COORDINATE:
                raise FitError(f"cannot fix {name!r}: the parameters of the law are {', '.join(COORDINATE)}")
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise FitError(f"cannot fix {name} at {value!r}: it must be a positive, finite number")
        if tie_exponents and "alpha" in fixed and "beta" in fixed and fixed["alpha"] != fixed["beta"]:
            raise FitError(
                f"alpha = beta is tied, but they are fixed at different values ({fixed['alpha']}, {fixed['beta']})"
            )
        if tie_exponents and ("alpha" in fixed or "beta" in fixed):
            value = fixed.get("alpha", fixed.get("beta"))
            fixed["alpha"] = fixed["beta"] = value
        return cls(bool(tie_exponents), tuple(sorted((k, float(v)) for k, v in fixed.items())))

    @property
    def is_free(self) -> bool:
        return not self.tie_exponents and not self.fixed

    @property
    def form(self) -> str:
        """The law as fitted, in words: the free form, or it with its ties and fixed values."""
        notes = ["alpha = beta (tied)"] if self.tie_exponents else []
        notes += [f"{name} fixed at {value:.10g}" for name, value in self.fixed]
        return FREE_FORM + (", with " + ", ".join(notes) if notes else "")

    @property
    def free_parameters(self) -> list[str]:
        """The law's parameters the fit estimates (a tied pair counts once, as alpha)."""
        fixed = dict(self.fixed)
        names = [n for n in ("E", "A", "B", "alpha", "beta") if n not in fixed]
        return [n for n in names if not (self.tie_exponents and n == "beta")]

    def check_floor(self, loss, run_ids) -> None:
        """A fixed E must lie below every loss fitted: the law is above its floor at every N and D, so
        with E at or above the lowest loss no law of this form fits, and the fit would only report A
        and alpha as not identified. FitError names the floor, the lowest loss and its run."""
        floor = dict(self.fixed).get("E")
        loss = np.asarray(loss, dtype=np.float64)
        if floor is None or loss.size == 0:
            return
        lowest = int(np.nanargmin(loss))
        if floor >= loss[lowest]:
            raise FitError(
                f"--fix E={floor:g} is at or above the lowest loss of the runs, {loss[lowest]:.4g} (run "
                f"{run_ids[lowest]}): no law L = E + A/N^alpha + B/D^beta with this floor fits them; fix E below "
                f"{loss[lowest]:.4g} "
                f"(fit.fix in a study's config), or leave it free"
            )

    def describe(self) -> dict:
        return {"tie_exponents": self.tie_exponents, "fixed": dict(self.fixed)}

    def reparametrisation(self) -> Reparametrisation | None:
        """The map from free coordinates to theta; None for the free form (the identity)."""
        if self.is_free:
            return None
        fixed = dict(self.fixed)
        offset = np.zeros(len(THETA_NAMES))
        columns, index = [], []
        for name in ("A", "B", "E", "alpha", "beta"):
            k, logged = COORDINATE[name]
            if name in fixed:
                offset[k] = math.log(fixed[name]) if logged else fixed[name]
            elif name == "beta" and self.tie_exponents:
                columns[-1][k] = 1.0  # beta follows alpha's free coordinate
            else:
                column = np.zeros(len(THETA_NAMES))
                column[k] = 1.0
                columns.append(column)
                index.append(k)
        matrix = np.stack(columns, axis=1) if columns else np.zeros((len(THETA_NAMES), 0))
        return Reparametrisation(matrix, offset, np.array(index, dtype=int))

    def starts(self, grid: np.ndarray) -> np.ndarray:
        """The grid's starts in free coordinates (duplicates dropped, order kept)."""
        reparam = self.reparametrisation()
        if reparam is None:
            return grid
        free = reparam.free(grid)
        if free.shape[1] == 0:
            return free[:1]  # every parameter fixed: one (empty) start
        _, first = np.unique(free, axis=0, return_index=True)
        return free[np.sort(first)]


FREE = Variant()


def parse_fixed(items: list[str]) -> dict:
    """``["E=1.69", "alpha=0.34"]`` (the CLI's --fix) as {"E": 1.69, "alpha": 0.34}; FitError names a bad item."""
    fixed = {}
    for item in items:
        name, sep, text = item.partition("=")
        try:
            value = float(text)
        except ValueError:
            value = None
        if not sep or value is None:
            raise FitError(f"--fix takes NAME=VALUE (e.g. E=1.69), got {item!r}")
        fixed[name.strip()] = value
    return fixed
