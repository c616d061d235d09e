"""The study fit: every registered approach on a table of runs, then predictions and the bootstrap.

Approaches run in registry order. A required approach's FitError stops the
fit (the CLI exits 1 with the message); an optional one's is recorded as
{"skipped": why}. The layout of the result is schema.py's.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl

from workflow.fit import checks, sensitivity
from workflow.fit.allocation import predict_at
from workflow.fit.approach import Study
from workflow.fit.bootstrap import attach_intervals, bootstrap
from workflow.fit.primitives import HUBER_DELTA, FitError, plain_json
from workflow.fit.references import REFERENCES
from workflow.fit.registry import APPROACHES, BY_NAME
from workflow.fit.schema import LAYOUT
from workflow.fit.study_card import study_card
from workflow.fit.variant import FREE, Variant

# More resamples than this share failing an approach's refit is a warning (its intervals are truncated).
MOST_RESAMPLES_SKIPPED = 0.025


def read_table(path: Path) -> pl.DataFrame:
    """The table of runs in a CSV or parquet file, checked (checks.py); FitError names the file."""
    path = Path(path)
    try:
        table = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema_length=None)
    except (OSError, pl.exceptions.PolarsError) as e:
        kind = "parquet" if path.suffix == ".parquet" else "CSV"
        raise FitError(f"{path} cannot be read as {kind}: {str(e).strip().splitlines()[0]}") from None
    return checks.checked(table, where=path)[0]


def study_of(table: pl.DataFrame, curves: pl.DataFrame | None = None, **settings) -> tuple[Study, dict]:
    """The completed runs (with run ids and compute) as a Study, and what the output says about them."""
    table, fitted = checks.checked(table)
    warnings = checks.plausibility(table, fitted)
    excluded = table.filter(~fitted)
    table = table.filter(fitted)
    if table.height == 0:
        raise FitError(checks.no_runs_to_fit(excluded))
    checks.one_law(table)
    excluded = excluded["run_id"].to_list() if "run_id" in excluded.columns else [None] * excluded.height
    if "run_id" not in table.columns:
        table = table.with_columns(pl.format("run{}", pl.int_range(pl.len())).alias("run_id"))
    if "flops" in table.columns:
        compute_source = "each run's recorded compute"
    else:
        table = table.with_columns((6.0 * pl.col("params") * pl.col("tokens")).alias("flops"))
        compute_source = "C = 6 N D (the table records no compute)"
    flops_per_nd, axis_warning = compute_axis(table)
    warnings += [axis_warning] if axis_warning else []
    data = {
        "runs_fitted": table.height,
        "runs_excluded": excluded,
        "compute": compute_source,
        "flops_per_nd": flops_per_nd,
        "smallest_flops": float(table["flops"].min()),
        "largest_flops": float(table["flops"].max()),
        "warnings": warnings,
    }
    return Study.of(table, curves, flops_per_nd=flops_per_nd, **settings), data


# C / (N D) may differ across runs by this much (rounding) and still be one axis.
AXIS_TOLERANCE = 0.01


def compute_axis(table: pl.DataFrame) -> tuple[float, str | None]:
    """k of the study's compute axis C = k N D (the median of flops / (params tokens)), and a warning when
    the table's compute is not one multiple of N D: its N then counts other parameters than its FLOPs do,
    and no allocation can spend exactly each run's budget (docs/methods.md, "One compute axis")."""
    ratio = (table["flops"] / (table["params"].cast(pl.Float64) * table["tokens"].cast(pl.Float64))).to_numpy()
    k = float(np.median(ratio))
    if ratio.max() <= ratio.min() * (1 + AXIS_TOLERANCE):
        return k, None
    return k, (
        f"compute is not one multiple of N D in this table: flops / (params x tokens) runs from "
        f"{ratio.min():.3g} to {ratio.max():.3g}, so N counts other parameters than the FLOPs do; the "
        f"allocations use the median, C = {k:.3g} N D. Count N as the FLOP convention does (in the pipeline: "
        f"fit.parameter_count 'with_head' with '6N', 'non_embedding' with 'kaplan')"
    )


def add_bootstrap_warnings(fits: dict) -> None:
    """Each approach's warnings from its bootstrap: its own (e.g. an interval reaching a bound), and
    resamples it could not fit, which leave the intervals those of the rest."""
    boot = fits["bootstrap"]
    for approach in APPROACHES:
        section = fits.get(approach.name) or {}
        if "skipped" in section or approach.name not in boot["intervals"]:
            continue
        warnings = section.setdefault("warnings", [])
        if approach.bootstrap_warnings:
            warnings += approach.bootstrap_warnings(section, boot["intervals"][approach.name])
        warnings += allocation_interval_warnings(fits, approach)
        skipped = boot["resamples_skipped"].get(approach.name, 0)
        if skipped > MOST_RESAMPLES_SKIPPED * boot["samples"]:
            warnings.append(
                f"{skipped} of {boot['samples']} bootstrap resamples could not be fitted (e.g. an exponent "
                f"at or below 0): the intervals are those of the rest, and narrower than the data allow"
            )


def allocation_interval_warnings(fits: dict, approach) -> list[str]:
    """An allocation whose 95% interval of a reaches 0 (N_opt that does not grow with compute) or 1 (D_opt
    that falls as compute grows, since b = 1 - a): its recipe past the data cannot be trusted."""
    if not approach.allocates:
        return []
    interval = ((fits.get("bootstrap") or {}).get("intervals") or {}).get(approach.name, {}).get("a")
    if not interval:
        return []
    low, high = interval
    reaches = [bound for bound, hit in (("0", low <= 0), ("1", high >= 1)) if hit]
    if not reaches:
        return []
    what = {"0": "a model size that does not grow with compute", "1": "a token count that falls as compute grows"}
    return [
        f"the 95% interval of a, [{low:.3g}, {high:.3g}], reaches {' and '.join(reaches)}: it allows "
        f"{' and '.join(what[r] for r in reaches)}, so its allocation past the data is not determined"
    ]


# The look-up ladder's budgets per decade: 1 and 3 times each power of ten, as budgets are written.
LADDER_MANTISSAS = (1.0, 3.0)


def ladder_budgets(smallest: float, largest: float) -> list[float]:
    """Budgets from the ladder step at or below ``smallest`` to the one at or above ``largest``: the
    rows of the look-up table (as Hoffmann et al. 2022, Table 3) and the points of the decision chart."""
    # Parsed from text ("3e15"), so that a step equals the same budget written in a config (3 * 10.0**15
    # does not) and a budget both on the ladder and among the predictions is one row.
    steps = [
        float(f"{m:g}e{e}")
        for e in range(int(np.floor(np.log10(smallest))), int(np.ceil(np.log10(largest))) + 1)
        for m in LADDER_MANTISSAS
    ]
    below = max([c for c in steps if c <= smallest * (1 + 1e-9)], default=steps[0])
    above = min([c for c in steps if c >= largest * (1 - 1e-9)], default=steps[-1])
    return [c for c in steps if below <= c <= above]


def predictions(fits: dict, budgets: list[float], largest_flops: float) -> list[dict]:
    """At each budget, N_opt, D_opt and tokens per parameter of every fitted approach with an
    allocation law, and the loss reached where the approach has a loss law; with the budget's
    extrapolation factor, C over the largest compute trained."""
    rows = []
    for flops in budgets:
        row: dict = {"flops": float(flops), "extrapolation_factor": float(flops) / largest_flops}
        for approach in APPROACHES:
            section = fits.get(approach.name) or {}
            if approach.allocates and "skipped" not in section:
                row[approach.name] = predict_at(section, flops, approach.law)
        rows.append(row)
    return rows


# What each prediction of a loss law depends on: the loss needs every parameter, the allocation
# (N_opt, D_opt, tokens per parameter) every one but E (docs/methods.md, "The allocation law").
ALLOCATION_DEPENDS = ("A", "B", "alpha", "beta")
PREDICTION_DEPENDS = {
    "loss": ("E", *ALLOCATION_DEPENDS),
    "n_opt": ALLOCATION_DEPENDS,
    "d_opt": ALLOCATION_DEPENDS,
    "tokens_per_parameter": ALLOCATION_DEPENDS,
}


def mark_withheld(fits: dict) -> None:
    """Mark each prediction that depends on a parameter its approach does not identify (the section's
    ``unidentified``, set by its identification warnings): ``withheld`` maps the quantity to those
    parameters. The number stays in fits.json; the report and the CLI show it as not identified."""
    for row in (fits.get("predictions") or []) + (fits.get("ladder") or []):
        for name, point in row.items():
            unidentified = (fits.get(name) or {}).get("unidentified") if isinstance(point, dict) else None
            if not unidentified:
                continue
            withheld = {
                quantity: [p for p in PREDICTION_DEPENDS[quantity] if p in unidentified]
                for quantity in PREDICTION_DEPENDS
                if quantity in point and any(p in unidentified for p in PREDICTION_DEPENDS[quantity])
            }
            if withheld:
                point["withheld"] = withheld


def shown(point: dict, quantity: str, text: str) -> str:
    """``text`` (the formatted number), or why it is withheld: 'not identified (E)'."""
    missing = (point.get("withheld") or {}).get(quantity)
    return f"not identified ({', '.join(missing)})" if missing else text


def fit_table(
    table: pl.DataFrame,
    *,
    curves: pl.DataFrame | None = None,
    delta: float = HUBER_DELTA,
    refine: int | None = 50,
    bootstrap_samples: int = 0,
    seed: int = 0,
    predict: list[float] | None = None,
    workers: int = 2,
    metadata: dict | None = None,
    variant: Variant = FREE,
    manifests: dict[str, dict] | None = None,
) -> dict:
    """Every fit of the study, as fits.json holds it (schema.py); ``variant``: Approach 3's form;
    ``manifests``: the corpus, tokenizer and dataset manifests the study card reads (study_card.py)."""
    predict = [float(c) for c in predict or []]
    study, data = study_of(table, curves, delta=delta, refine=refine, predict=predict, variant=variant)
    # The ladder also holds the largest compute trained: the answer nearest the data, at factor 1.
    ladder = sorted(
        {*ladder_budgets(data["smallest_flops"], max([data["largest_flops"], *predict])), data["largest_flops"]}
    )
    # The bootstrap refits every prediction of the ladder too, so each of its rows has intervals.
    study.predict = sorted(set(predict) | set(ladder))
    fits: dict = {"layout": LAYOUT}
    study.fits = fits
    timings = {}
    for approach in APPROACHES:
        start = time.perf_counter()
        try:
            fits[approach.name] = approach.fit(study)
        except FitError as e:
            if approach.required:
                raise
            fits[approach.name] = {"skipped": str(e)}
        timings[approach.name] = time.perf_counter() - start
    fits["predictions"] = predictions(fits, predict, data["largest_flops"])
    fits["ladder"] = predictions(fits, ladder, data["largest_flops"])
    if bootstrap_samples:
        start = time.perf_counter()
        try:
            fits["bootstrap"] = bootstrap(study, fits, samples=bootstrap_samples, seed=seed, workers=workers)
            attach_intervals(fits["predictions"] + fits["ladder"], fits["bootstrap"]["intervals"])
            add_bootstrap_warnings(fits)
            sensitivity.compare_with_intervals(fits)
        except FitError as e:
            fits["bootstrap"] = {"skipped": str(e)}
        timings["bootstrap"] = time.perf_counter() - start
    else:
        fits["bootstrap"] = {"skipped": "no bootstrap requested (--bootstrap 0)"}
    mark_withheld(fits)
    fits["references"] = REFERENCES
    fits["data"] = data
    fits["study"] = study_card(study.table, manifests)
    fits["seconds"] = timings
    fits.update(metadata or {})
    return plain_json(fits)


def describe(approach, fits: dict, digits: int = 4) -> str:
    """One approach's line: its summary with bootstrap intervals, or why it was skipped."""
    section = fits.get(approach.name) or {"skipped": "not computed"}
    if "skipped" in section:
        return f"skipped: {section['skipped']}"
    ci = ((fits.get("bootstrap") or {}).get("intervals") or {}).get(approach.name, {})

    def show(key, digits=digits):
        value = f"{section[key]:.{digits}g}"
        return value + (f" [{ci[key][0]:.{digits}g}, {ci[key][1]:.{digits}g}]" if key in ci else "")

    return approach.summary(section, show)


def summary_lines(fits: dict) -> list[str]:
    """The CLI's account of the fit: one line per approach (and its warnings), the bootstrap, the predictions
    and the data's plausibility warnings (checks.py). Plain sentences: nothing of fits.json's layout."""
    seconds, lines = fits["seconds"], []
    for approach in APPROACHES:
        lines.append(f"{approach.name}: {describe(approach, fits)} ({seconds.get(approach.name, 0):.1f} s)")
        lines += [f"{approach.name} warning: {w}" for w in (fits.get(approach.name) or {}).get("warnings", [])]
    lines.append(f"bootstrap: {bootstrap_sentence(fits)} ({seconds.get('bootstrap', 0):.1f} s)")
    for row in fits.get("predictions") or []:
        for name, p in row.items():
            if isinstance(p, dict):
                lines.append(
                    f"C={row['flops']:.3g} ({row['extrapolation_factor']:.3g}x the largest run), {name}: "
                    + prediction_sentence(p)
                )
    lines += [f"data warning: {w}" for w in fits["data"].get("warnings", [])]
    return lines


def bootstrap_sentence(fits: dict) -> str:
    """The bootstrap in words: resamples fitted, those each approach could not fit, the grid check;
    or why it was skipped."""
    boot = fits.get("bootstrap") or {"skipped": "not computed"}
    if "skipped" in boot:
        return f"skipped: {boot['skipped']}"
    samples = boot["samples"]
    parts = [f"{boot['fitted']} of {samples} resamples fitted (the 95% intervals in brackets)"]
    failed = [f"{n} could not be fitted by {BY_NAME[name].title}" for name, n in boot["resamples_skipped"].items() if n]
    parts += failed or ["every bootstrapped approach fitted every resample"]
    verified = boot["verified"]
    if verified["resamples"]:
        parts.append(
            f"the refit from the full fit's optima matched a fresh grid search in {verified['same_optimum']} "
            f"of {verified['resamples']} resamples checked"
        )
    return "; ".join(parts)


# What a prediction line prints: (quantity, label, significant digits).
PREDICTION_QUANTITIES = (
    ("n_opt", "N_opt", 3),
    ("d_opt", "D_opt", 3),
    ("tokens_per_parameter", "tokens/parameter", 3),
    ("loss", "loss", 4),
)


def prediction_sentence(point: dict) -> str:
    """N_opt, D_opt, tokens per parameter and the loss (where the approach has one), each with its 95%
    interval where the bootstrap gave one, or why it is withheld."""
    intervals = point.get("intervals") or {}
    parts = []
    for quantity, label, digits in PREDICTION_QUANTITIES:
        if quantity not in point:
            continue
        text = f"{point[quantity]:.{digits}g}"
        if intervals.get(quantity):
            low, high = intervals[quantity]
            text += f" [{low:.{digits}g}, {high:.{digits}g}]"
        parts.append(f"{label}={shown(point, quantity, text)}")
    return "; ".join(parts)
