"""Design before spending: how precise a study's design will be, and which design buys the most precision
for its GPU-hours (issue 28; docs/methods.md, "Designing a study").

- ``assume``: the law and the noise simulated studies are drawn from (``--assume``, ``--noise``);
- ``simulate_design``: simulated studies of a design fitted with the pipeline's estimator and intervals,
  and the power to detect a compute multiplier between arms;
- ``checks``: the plan's lines on each IsoFLOP budget and point against the assumed optimum;
- ``propose``: a search over a family of designs at a GPU-hour budget, and its config overlay;
- ``cli``: what ``python -m workflow.plan --simulate`` and ``--propose`` print and write.

The plan imports ``checks`` on its normal path; everything that needs scipy or the fitter is imported
only when ``--simulate`` or ``--propose`` is given.
"""
