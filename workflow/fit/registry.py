"""Every approach, in the order it is fitted, bootstrapped, summarised and reported: one line each.

The order matters twice: an approach may use the sections fitted before it
(the extrapolation check uses Approach 3's), and approaches that draw their
own bootstrap resamples draw them in this order, after the run rows.
"""

from workflow.fit import (
    approach1,
    approach2,
    approach3,
    backtest,
    data_constrained,
    extrapolation,
    frontier,
    kaplan,
    lack_of_fit,
    seed_noise,
    sensitivity,
)

APPROACHES = (
    approach3.APPROACH,
    data_constrained.APPROACH,
    seed_noise.APPROACH,
    lack_of_fit.APPROACH,
    frontier.APPROACH,
    kaplan.APPROACH,
    approach1.APPROACH,
    approach2.APPROACH,
    extrapolation.APPROACH,
    backtest.APPROACH,
    sensitivity.APPROACH,
)
BY_NAME = {approach.name: approach for approach in APPROACHES}
