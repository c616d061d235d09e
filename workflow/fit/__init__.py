"""Fit stage: scaling laws fitted to the table of runs (and to the training curves).

One module per approach (approach1, approach2, approach3, frontier, kaplan,
extrapolation), each with an ``APPROACH`` record listed in registry.py; one
log-sum-exp/Huber fitter (lse.py) and one allocation form (allocation.py)
shared by all; the study fit (study.py), the bootstrap (bootstrap.py) and the
layout of fits.json (schema.py). The maths and its sources: docs/methods.md.
CLI: ``python -m workflow.fit`` (__main__.py).
"""

from workflow.fit.approach import Study
from workflow.fit.approach3 import fit_approach3, predict_approach3
from workflow.fit.bootstrap import bootstrap
from workflow.fit.primitives import FitError
from workflow.fit.table_fit import fit_table, read_table, study_of

__all__ = [
    "FitError",
    "Study",
    "bootstrap",
    "fit_approach3",
    "fit_table",
    "predict_approach3",
    "read_table",
    "study_of",
]
