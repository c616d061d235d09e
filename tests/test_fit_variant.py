"""Variants of Approach 3's law: tied exponents and fixed parameters, as a reparametrisation of the one fitter."""

import numpy as np
import pytest
from synthetic import TRUE, grid_study

from workflow.fit import FitError, fit_approach3
from workflow.fit.approach3 import hoffmann_grid
from workflow.fit.lse import objective_free
from workflow.fit.variant import FREE, Variant, parse_fixed


def test_free_form_is_the_identity():
    assert FREE.reparametrisation() is None and FREE.is_free
    assert FREE.free_parameters == ["E", "A", "B", "alpha", "beta"]
    assert FREE.starts(hoffmann_grid()).shape == (4500, 5)


def test_tied_exponents_share_one_coordinate():
    variant = Variant.of(tie_exponents=True)
    reparam = variant.reparametrisation()
    theta = reparam.theta(np.array([1.0, 2.0, 0.5, 0.3]))
    assert theta.tolist() == [1.0, 2.0, 0.5, 0.3, 0.3]
    assert reparam.free(theta).tolist() == [1.0, 2.0, 0.5, 0.3]
    assert variant.free_parameters == ["E", "A", "B", "alpha"]
    assert variant.starts(hoffmann_grid()).shape == (6 * 6 * 5 * 5, 4)  # the grid's tied rows, once each
    assert variant.form.endswith("with alpha = beta (tied)")


def test_fixed_values_are_held_in_log_space_for_e_a_b():
    variant = Variant.of(fixed={"E": 1.7, "beta": 0.28})
    theta = variant.reparametrisation().theta(np.array([5.0, 7.0, 0.3]))
    assert theta == pytest.approx([5.0, 7.0, np.log(1.7), 0.3, 0.28])
    assert variant.free_parameters == ["A", "B", "alpha"]
    assert "E fixed at 1.7" in variant.form and "beta fixed at 0.28" in variant.form


def test_tie_and_a_fixed_exponent_fix_both():
    variant = Variant.of(tie_exponents=True, fixed={"alpha": 0.33})
    assert dict(variant.fixed) == {"alpha": 0.33, "beta": 0.33}
    assert variant.free_parameters == ["E", "A", "B"]


@pytest.mark.parametrize(
    "tie, fixed, message",
    [
        (False, {"F": 1.0}, "cannot fix 'F'"),
        (False, {"E": -1.0}, "cannot fix E at -1.0"),
        (False, {"E": float("nan")}, "positive, finite"),
        (True, {"alpha": 0.3, "beta": 0.4}, "fixed at different values"),
    ],
)
def test_impossible_variants_are_refused(tie, fixed, message):
    with pytest.raises(FitError, match=message):
        Variant.of(tie, fixed)


def test_fix_option_parsing():
    assert parse_fixed(["E=1.69", " alpha=0.34"]) == {"E": 1.69, "alpha": 0.34}
    for bad in ("E", "E=high"):
        with pytest.raises(FitError, match="NAME=VALUE"):
            parse_fixed([bad])
    with pytest.raises(FitError, match="cannot fix ''"):
        Variant.of(False, parse_fixed(["=1"]))


@pytest.mark.parametrize("variant", [Variant.of(True), Variant.of(False, {"E": 1.7}), Variant.of(True, {"A": 300.0})])
def test_gradient_in_free_coordinates_matches_finite_differences(variant):
    params, tokens, loss = grid_study()
    log_x, log_loss = np.stack([np.log(params), np.log(tokens)]), np.log(loss)
    reparam = variant.reparametrisation()
    free = reparam.free(np.array([6.0, 7.5, 0.4, 0.33, 0.36])) + 0.01
    value, grad = objective_free(free, reparam, log_x, log_loss, 1e-3)
    step = 1e-7
    numeric = [
        (objective_free(free + step * e, reparam, log_x, log_loss, 1e-3)[0] - value) / step for e in np.eye(len(free))
    ]
    assert grad == pytest.approx(numeric, rel=1e-4, abs=1e-7)


def test_fixing_a_parameter_at_the_free_optimum_gives_the_free_fit():
    params, tokens, loss = grid_study()
    free = fit_approach3(params, tokens, loss)
    fixed = fit_approach3(params, tokens, loss, variant=Variant.of(fixed={"E": free["E"]}))
    assert fixed["E"] == free["E"]  # held exactly
    for name in ("A", "B", "alpha", "beta"):
        assert fixed[name] == pytest.approx(free[name], rel=1e-4)
    assert fixed["objective"] == pytest.approx(free["objective"], rel=1e-6)


def test_tied_fit_of_a_tied_law_recovers_it_and_holds_the_tie():
    law = dict(TRUE, beta=TRUE["alpha"])
    params, tokens, loss = grid_study(law=law)
    fit = fit_approach3(params, tokens, loss, variant=Variant.of(True))
    assert fit["alpha"] == fit["beta"] == pytest.approx(law["alpha"], abs=0.02)
    assert fit["a"] == pytest.approx(0.5) and fit["free_parameters"] == ["E", "A", "B", "alpha"]
    assert fit["form"] == "L(N, D) = E + A / N^alpha + B / D^beta, with alpha = beta (tied)"


def test_fixed_e_is_not_reported_as_unidentified():
    params, tokens, loss = grid_study()
    fit = fit_approach3(params, tokens, loss, variant=Variant.of(fixed={"E": 1e-6}))
    assert not any(w.startswith("E is not identified") for w in fit["warnings"])
