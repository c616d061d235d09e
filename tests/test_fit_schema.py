"""fits.json's layout (workflow/fit/schema.py) holds for real outputs, and catches broken ones."""

import copy

import jsonschema
import polars as pl
import pytest
from synthetic import curves_of, isoflop_study

from workflow.fit import fit_table
from workflow.fit.schema import FITS_SCHEMA, LAYOUT, layout_problem


@pytest.fixture(scope="module")
def outputs():
    """A study with every approach fitted and bootstrapped, and one where the optional ones are skipped."""
    study = isoflop_study(budgets=(1e18, 1e19, 1e20))
    full = fit_table(study, curves=curves_of(study), bootstrap_samples=20, seed=0, predict=[1e21], workers=1)
    bare = fit_table(study.with_columns(compute_budget=pl.lit(None, dtype=pl.Float64)), predict=[1e21])
    return full, bare


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(FITS_SCHEMA)


def test_real_outputs_follow_the_layout(outputs):
    full, bare = outputs
    for fits in outputs:
        jsonschema.validate(fits, FITS_SCHEMA)
        assert fits["layout"] == LAYOUT and fits["data"]["warnings"] == []
    assert {"approach1", "approach2", "approach3"} <= set(full["bootstrap"]["intervals"])
    assert {k for k in ("approach1", "approach2", "bootstrap") if "skipped" in bare[k]} == {
        "approach1",
        "approach2",
        "bootstrap",
    }


def test_schema_rejects_broken_outputs(outputs):
    full, bare = outputs
    for path, value in (
        (("layout",), 1),  # another layout version
        (("approach3",), {"skipped": "required approaches are never skipped"}),
        (("approach2",), {"skipped": "why", "a": 0.5}),  # skipped means nothing else
        (("approach2", "k_n"), None),  # allocation keys are numbers
        (("bootstrap", "intervals", "approach3", "alpha"), [0.3]),  # an interval has two ends
        (("data", "warnings"), "one line"),  # the data's warnings are a list of lines
    ):
        broken = copy.deepcopy(full)
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, FITS_SCHEMA)
    missing = copy.deepcopy(bare)
    del missing["kaplan"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, FITS_SCHEMA)


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (("data",), "data is missing"),
        (("frontier",), "frontier is missing"),
        (("approach3", "alpha"), "approach3.alpha is missing"),
        (("bootstrap", "intervals"), "bootstrap.intervals is missing"),  # inside a section skipped or fitted
    ],
)
def test_a_missing_key_is_named(outputs, path, named):
    """What the report says before writing anything (it was a KeyError traceback after some charts)."""
    full, _ = outputs
    assert layout_problem(full) is None
    broken = copy.deepcopy(full)
    target = broken
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    assert layout_problem(broken) == named
