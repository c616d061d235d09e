"""Report stage: Altair charts, their captions and an index page, readable with the network off.

This file is the chart registry and stays free of heavy imports (the
Snakefile imports it): one line per chart, its name and title. Chart NAME is
drawn by ``workflow/report/charts/NAME.py``'s ``draw(runs, curves, fits)`` (a tune chart's by
``draw(sweep, tuning)``, from results/tune/);
build.py writes the files and page.py the index page. CLI:
``python -m workflow.report`` (__main__.py).
"""

CHARTS = {
    # Drawn in the page's first screen (first_screen.py), not among the other charts.
    "decision": "Tokens per parameter against compute",
    "loss_vs_compute": "Loss against compute",
    "isoflop_profiles": "IsoFLOP profiles",
    "optimal_allocation": "Compute-optimal N and D",
    "loss_vs_params": "Loss against N for each compute budget (or D)",
    "loss_vs_tokens": "Loss against D for each N",
    "residuals": "Residuals of the Approach-3 fit",
    "training_curves": "Training curves",
    "extrapolation": "Extrapolation check",
}
# Drawn only for a study with arms (fits.json's arms form), on its comparison page (arms.py):
# ``draw(runs, fits)``, each arm's own report below it drawing CHARTS.
ARMS_CHARTS = {
    "multiplier": "Compute multiplier of each arm against the baseline",
    "arm_frontiers": "Each arm's loss at its compute-optimal allocation",
}
# Drawn only for a tuned study (tune.enabled), from results/tune/: ``draw(sweep, tuning)``.
TUNE_CHARTS = {"tune_sweep": "Loss against learning rate per shape (tune sweep)"}
FORMATS = ("html", "svg", "png")
