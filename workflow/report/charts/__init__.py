"""One module per chart of workflow.report.CHARTS, each with draw(runs, curves, fits) -> (chart, caption)."""
