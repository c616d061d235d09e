"""An optimum with no finite compute-optimal allocation (G or k_n at 0 or overflowing). The tiny study
with tokenizer.sample_bytes: 800000 stopped its fit with a ZeroDivisionError in eq4_allocation
(``6.0**-b / G``) during the bootstrap (fixed in add302b): such an optimum is a FitError, which a
bootstrap refit counts as a skipped resample, and which the comparison of local optima never meets."""

import math

import numpy as np
import pytest

from workflow.fit.allocation import within_budget
from workflow.fit.approach3 import eq4_allocation, law_of, local_optima_warnings
from workflow.fit.primitives import FitError
from workflow.fit.variant import FREE


@pytest.mark.parametrize(
    ("alpha", "beta", "A", "B"),
    [
        (0.0, 0.3, 400.0, 2000.0),  # alpha at its bound: G = 0
        (0.3, 0.3, 0.0, 2000.0),  # A underflowed to 0: G = 0
        (1e-3, 1e-3, 1e300, 1e-300),  # G overflows
        (1e-3, 1e-3, 1e-300, 1e300),  # G underflows to 0
    ],
)
def test_no_finite_allocation_is_a_fit_error(alpha, beta, A, B):
    with pytest.raises(FitError, match="no finite compute-optimal allocation"):
        eq4_allocation(alpha, beta, A, B)
    with pytest.raises(FitError):
        law_of([math.log(A) if A > 0 else -np.inf, math.log(B), 0.5, alpha, beta])


@pytest.mark.parametrize("k_n", [0.0, np.inf, np.nan])
def test_an_allocation_with_k_n_at_0_or_overflowing_is_a_fit_error(k_n):
    with pytest.raises(FitError, match="no allocation"):
        within_budget(0.5, k_n, 6.0)


def test_a_near_optimum_without_an_allocation_is_compared_not_allocated():
    """The warning that the data do not choose between two laws compares E and the exponents only."""
    best = {"log_params": {"a": 6.0, "b": 7.6, "e": 0.59, "alpha": 0.34, "beta": 0.37}, "objective": 1.0}
    other = {"log_params": {"a": 6.0, "b": 7.6, "e": 0.59, "alpha": 0.0, "beta": 0.37}, "objective": 1.001}
    fit = {**best, "local_optima": [best, other]}
    warnings = local_optima_warnings(fit, FREE)
    assert len(warnings) == 1 and "alpha 0.34 against 0" in warnings[0]
