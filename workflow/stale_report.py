"""A report whose tables or fits are gone is set aside, so that it never looks like the study's.

When collect or the fit fails, Snakemake removes that job's outputs (the tables, ``fits.json``), but
not the report built from the previous ones: ``results/`` then held a new study's config and tables
beside the previous study's ``results/report/index.html``, which looked current. The Snakefile's
``onerror`` handler calls this after a failed invocation: a report missing any of its inputs is moved
to ``results/report.stale-TIMESTAMP/`` (nothing is deleted), with one line saying so. The next
successful invocation writes a new ``results/report/``.

Standard library only: the Snakefile imports it on every invocation, on login nodes too.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

# The report rule's inputs made by the analysis (rules/report.smk): the report is built from these.
REPORT_INPUTS = ("tables/runs.parquet", "tables/curves.parquet", "fits/fits.json")


def set_aside_stale_report(results: Path = Path("results"), now: datetime | None = None) -> str | None:
    """Move ``results/report`` aside when one of the files it was built from is missing; the line that
    says so, or None when the report is absent or all its inputs are present."""
    report = results / "report"
    missing = [name for name in REPORT_INPUTS if not (results / name).exists()]
    if not report.exists() or not missing:
        return None
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    aside = results / f"report.stale-{stamp}"
    n = 1
    while aside.exists():  # two failures within a second keep both
        n += 1
        aside = results / f"report.stale-{stamp}-{n}"
    os.replace(report, aside)
    gone = ", ".join(str(results / name) for name in missing)
    return (
        f"{report}/ was built from files this failed run removed ({gone}), so it is not this study's report: "
        f"moved aside to {aside}/; fix the error above and rerun snakemake to make the study's report"
    )
