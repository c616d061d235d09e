"""What building the DAG costs: `snakemake -n` on the default study, for one or more checkouts side by side.

Snakemake imports the Snakefile (and so ``rules/common.smk`` and what it imports) on the submit host,
and again in every cluster job. This measures, per checkout, the wall time of a dry run (median of
``--repeats``, the checkouts alternating so that load on a shared machine falls on each alike) and the
modules imported under the packages that matter for a light submit host, from Python's own
``-X importtime`` report.

    python bench/dry_run.py                       # this checkout
    python bench/dry_run.py OLD_CHECKOUT .        # before and after, side by side
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "scipy", "altair", "vl_convert", "polars", "numpy", "sentencepiece")


def dry_run(checkout: Path, *, importtime: bool = False) -> tuple[float, str]:
    """(seconds, stderr) of one `snakemake -n` in ``checkout`` with its own workflow package first."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    if importtime:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "2"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"snakemake -n failed in {checkout}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed, result.stderr


def imported(report: str) -> dict[str, int]:
    """Modules imported under each heavy package, from an -X importtime report."""
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", report, flags=re.MULTILINE)
    return {package: sum(1 for n in names if n == package or n.startswith(package + ".")) for package in HEAVY}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", type=Path, default=[Path(".")])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    checkouts = [c.resolve() for c in args.checkouts]
    for checkout in checkouts:  # warm the file cache and Snakemake's own state
        dry_run(checkout)
    times: dict[Path, list[float]] = {c: [] for c in checkouts}
    for _ in range(args.repeats):
        for checkout in checkouts:
            times[checkout].append(dry_run(checkout)[0])
    print(f"| checkout | dry run, median of {args.repeats} (s) | " + " | ".join(HEAVY) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in HEAVY) + " |")
    for checkout in checkouts:
        counts = imported(dry_run(checkout, importtime=True)[1])
        print(
            f"| {checkout} | {statistics.median(times[checkout]):.2f} | "
            + " | ".join(str(counts[p]) for p in HEAVY)
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
