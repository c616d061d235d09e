"""Closed-form least squares and plain JSON (workflow/fit/primitives.py)."""

import numpy as np
import pytest

from workflow.fit.primitives import line_fit, parabola_fit, plain_json


def test_closed_form_fits_match_least_squares():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.5])
    y = 2 * x**2 - 3 * x + 1 + np.array([0.01, -0.02, 0.0, 0.01, 0.0])
    assert parabola_fit(x, y) == pytest.approx(tuple(np.polyfit(x, y, 2)), rel=1e-9)
    assert line_fit(x, y) == pytest.approx(tuple(np.polyfit(x, y, 1)), rel=1e-9)


def test_plain_json_turns_non_finite_numbers_into_null():
    assert plain_json({"a": np.float64("nan"), "b": [np.inf, np.int64(3)], "c": np.array([1.5])}) == {
        "a": None,
        "b": [None, 3],
        "c": [1.5],
    }
