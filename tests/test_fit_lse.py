"""The shared log-sum-exp/Huber fitter: exact gradients for m = 2 (Approach 3) and m = 1 (Kaplan laws),
and the vectorised objective at many starts agreeing with the single-point one."""

import numpy as np
import pytest
from scipy.optimize import approx_fprime
from synthetic import grid_study

from workflow.fit.lse import fit_lse, objective, objective_at_starts


def test_gradient_is_exact():
    n, d, loss = grid_study()
    log_x, log_loss = np.stack([np.log(n), np.log(d)]), np.log(loss)
    for theta in (np.array([6.0, 7.5, 0.6, 0.3, 0.35]), np.array([2.0, 3.0, -0.5, 0.1, 0.2])):
        _, grad = objective(theta, log_x, log_loss, 1e-3)
        numeric = approx_fprime(theta, lambda t: objective(t, log_x, log_loss, 1e-3)[0], 1e-7)
        assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-7)
        at_starts = objective_at_starts(theta[None], log_x, log_loss, 1e-3)[0]
        assert at_starts == pytest.approx(objective(theta, log_x, log_loss, 1e-3)[0])


def test_saturating_gradient_is_exact():
    log_x = np.log(np.geomspace(1e6, 1e10, 9))[None]
    log_loss = np.log(1.5 + 300.0 * np.exp(log_x[0]) ** -0.3) + 0.01 * np.sin(np.arange(9))
    for theta in (np.array([5.0, 0.3, 0.25]), np.array([2.0, -0.5, 0.1])):
        _, grad = objective(theta, log_x, log_loss, 1e-3)
        numeric = approx_fprime(theta, lambda t: objective(t, log_x, log_loss, 1e-3)[0], 1e-7)
        assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-7)
        at_starts = objective_at_starts(theta[None], log_x, log_loss, 1e-3)[0]
        assert at_starts == pytest.approx(objective(theta, log_x, log_loss, 1e-3)[0])


def test_fit_lse_ranks_starts_and_keeps_distinct_optima_best_first():
    x = np.geomspace(1e6, 1e10, 12)
    log_x, log_loss = np.log(x)[None], np.log(1.5 + 300.0 * x**-0.3)
    starts = np.array([[a, e, alpha] for a in (0.0, 5.0, 10.0) for e in (-1.0, 0.0, 1.0) for alpha in (0.1, 0.5, 1.0)])
    optima, refined = fit_lse(log_x, log_loss, starts, refine=5, delta=1e-3)
    assert refined == 5
    assert [r.fun for r in optima] == sorted(r.fun for r in optima)
    a, e, alpha = optima[0].x
    assert alpha == pytest.approx(0.3, abs=0.01) and np.exp(e) == pytest.approx(1.5, abs=0.01)
    _, every = fit_lse(log_x, log_loss, starts, refine=None, delta=1e-3)
    assert every == len(starts)
