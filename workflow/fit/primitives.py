"""Pieces every fit shares: the error type, closed-form least squares and plain JSON."""

from __future__ import annotations

import math

import numpy as np

HUBER_DELTA = 1e-3


class FitError(ValueError):
    """Data that cannot support the requested fit; the message says what is missing."""


def line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y on x, in closed form.

    Hand-written rather than np.polyfit: polyfit calls LAPACK, whose thread
    pool spins against the bootstrap's worker processes on a small machine."""
    dx = x - x.mean()
    slope = float(np.sum(dx * (y - y.mean())) / np.sum(dx * dx))
    return slope, float(y.mean() - slope * x.mean())


def parabola_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares y = c2 x^2 + c1 x + c0 (normal equations, centred for conditioning)."""
    centre = x.mean()
    u = x - centre
    moments = [np.sum(u**k) for k in range(5)]
    matrix = np.array(
        [
            [moments[4], moments[3], moments[2]],
            [moments[3], moments[2], moments[1]],
            [moments[2], moments[1], moments[0]],
        ]
    )
    rhs = np.array([np.sum(y * u**2), np.sum(y * u), np.sum(y)])
    q2, q1, q0 = np.linalg.solve(matrix, rhs)
    # Back from u = x - centre to x.
    return float(q2), float(q1 - 2 * q2 * centre), float(q0 - q1 * centre + q2 * centre**2)


def power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y = k x^p by least squares in log-log space; returns (k, p)."""
    p, log_k = line_fit(np.log(x), np.log(y))
    return float(np.exp(log_k)), float(p)


def plain_json(value):
    """``value`` with numpy scalars and arrays made Python and non-finite floats made None."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
