"""Studies with arms: each arm fitted as a study of its own, then compared with a baseline arm as a compute
multiplier with paired bootstrap intervals (docs/methods.md, "Comparing arms").

``fit_arms`` returns the arms form of fits.json (schema.ARMS_SCHEMA): every arm's full fits (fit_table on
its rows) and the comparison of each other arm against the baseline: the multiplier at a ladder of
budgets and at the prediction budgets, a curve of it with its band, the differences of alpha, beta, a and
E, the crossover compute and a one-line verdict. The maths is in paired.py.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import polars as pl

from workflow.fit import checks
from workflow.fit import paired as pm
from workflow.fit.approach3 import PARAM_NAMES
from workflow.fit.primitives import HUBER_DELTA, FitError, plain_json
from workflow.fit.schema import LAYOUT
from workflow.fit.table_fit import fit_table, ladder_budgets, study_of
from workflow.fit.variant import FREE, Variant

# Approach 3 fits 5 parameters: an arm needs one run more than that (as approach3.check_fit_data).
MIN_ARM_RUNS = 6
DIFFERENCES = ("alpha", "beta", "a", "E")
CURVE_POINTS = 48
METHOD = (
    "paired bootstrap: units (training runs; a WSD run's branches together, each seed its own run) drawn with "
    "replacement, a unit's key (its run id without the arm's name) drawn once for every arm that has it, so "
    "matching runs of the arms move together; unmatched units drawn within their arm; both arms' Approach 3 "
    "laws refitted per resample; 95% percentile intervals (2.5th, 97.5th). Unpaired: each arm's units drawn "
    "on their own, for comparison"
)


def arm_names(table: pl.DataFrame, arm_column: str, baseline: str) -> list[str]:
    """The arms of the table, baseline first; FitError in one line when they cannot be compared."""
    if arm_column not in table.columns:
        raise FitError(f"the table has no column {arm_column!r} to take arms from (--arms)")
    values = table[arm_column]
    if values.null_count():
        raise FitError(f"{values.null_count()} runs have no {arm_column!r}: every run must belong to an arm")
    names = sorted(values.cast(pl.String).unique().to_list())
    if len(names) < 2:
        raise FitError(
            f"the table's {arm_column!r} holds one arm only ({names[0] if names else 'none'}): "
            "there is nothing to compare; fit it without --arms"
        )
    if baseline not in names:
        raise FitError(f"the baseline {baseline!r} is not an arm of {arm_column!r} (its arms: {', '.join(names)})")
    return [baseline] + [n for n in names if n != baseline]


def unit_keys(table: pl.DataFrame, units: np.ndarray, arm: str) -> np.ndarray:
    """Each row's pairing key: its training run (else its run id) with the arm's name removed, so that
    matching runs of two arms share it; else the point's design (params, tokens, seed). Two units of one arm
    never share a key (a repeat is numbered)."""
    source = next((c for c in ("training_run", "run_id") if c in table.columns), None)
    if source is not None:
        raw = [str(v).replace(arm, "", 1) if arm else str(v) for v in table[source].cast(pl.String).to_list()]
    else:
        seed = table["seed"].cast(pl.String).to_list() if "seed" in table.columns else [""] * table.height
        raw = [f"N={p:g}|D={d:g}|seed={s}" for p, d, s in zip(table["params"], table["tokens"], seed)]
    first_key: dict[int, str] = {}
    for unit, key in zip(units, raw):
        first_key.setdefault(int(unit), key)
    seen: dict[str, int] = {}
    named: dict[int, str] = {}
    for unit in sorted(first_key):
        key = first_key[unit]
        seen[key] = seen.get(key, 0) + 1
        named[unit] = key if seen[key] == 1 else f"{key}#{seen[key]}"
    return np.array([named[int(u)] for u in units])


def _arm_tables(table, arm_column, names, curves):
    checked, fitted = checks.checked(table)
    tables, arm_curves = {}, {}
    for name in names:
        mask = checked[arm_column].cast(pl.String) == name
        completed = int((mask & fitted).sum())
        if completed < MIN_ARM_RUNS:
            raise FitError(
                f"arm {name!r} has {completed} completed runs: Approach 3 fits 5 parameters and needs at "
                f"least {MIN_ARM_RUNS} per arm"
            )
        tables[name] = table.filter(pl.col(arm_column).cast(pl.String) == name)
        if curves is not None and arm_column in curves.columns:
            arm_curves[name] = curves.filter(pl.col(arm_column).cast(pl.String) == name)
        else:
            arm_curves[name] = curves
    return tables, arm_curves


def fit_arms(
    table: pl.DataFrame,
    arm_column: str,
    baseline: str,
    *,
    curves: pl.DataFrame | None = None,
    bootstrap_samples: int = 100,
    seed: int = 0,
    predict: list[float] | None = None,
    workers: int = 2,
    metadata: dict | None = None,
    variant: Variant = FREE,
    shared: tuple[str, ...] = (),
    delta: float = HUBER_DELTA,
    refine: int | None = 50,
    manifests: dict | None = None,
) -> dict:
    """Each arm's fits (fit_table) and the comparison of every other arm with ``baseline`` (ARMS_SCHEMA)."""
    if variant != FREE:
        raise FitError(
            "arms are compared on the free law L = E + A/N^alpha + B/D^beta: --tie-exponents and --fix "
            "cannot be combined with --arms"
        )
    if shared:  # docs/methods.md, "Comparing arms": the joint fit with a shared E is not built yet
        raise FitError(f"a joint fit of the arms with shared {', '.join(shared)} is not available yet")
    names = arm_names(table, arm_column, baseline)
    tables, arm_curves = _arm_tables(table, arm_column, names, curves)
    predict = sorted(float(c) for c in predict or [])
    arms = {}
    for name in names:
        arms[name] = fit_table(
            tables[name],
            curves=arm_curves[name],
            delta=delta,
            refine=refine,
            bootstrap_samples=bootstrap_samples,
            seed=seed,
            predict=predict,
            workers=workers,
            metadata=metadata,
            variant=variant,
            manifests=manifests,
        )
    comparison = compare(tables, arms, baseline, samples=bootstrap_samples, seed=seed, predict=predict, delta=delta)
    out = {"layout": LAYOUT, "form": "arms", "arm_column": arm_column, "baseline": baseline, "arms": arms}
    out["comparison"] = comparison
    out.update(metadata or {})
    return plain_json(out)


def arm_data(arm_table: pl.DataFrame, fits: dict, name: str) -> dict:
    """What the comparison reads of one arm: its completed runs, unit keys, full-fit optimum and range."""
    study, data = study_of(arm_table)
    section = fits["approach3"]
    return {
        "params": study.params,
        "tokens": study.tokens,
        "loss": study.loss,
        "keys": unit_keys(study.table, study.units, name),
        "theta": np.array([section["log_params"][k] for k in PARAM_NAMES]),
        "flops_per_nd": section["flops_per_nd"],
        "range": (data["smallest_flops"], data["largest_flops"]),
    }


def design_keys(table: pl.DataFrame, units: np.ndarray) -> np.ndarray:
    """Each row's pairing key by its place in the arm's design: the rank of its size among the arm's sizes,
    its compute budget and its seed. For arms whose shapes differ (an LSTM's widths are not a GPT's), the
    i-th smallest size of each arm at one budget and seed are the runs the study made alike."""
    sizes = np.unique(table["params"].to_numpy())
    rank = np.searchsorted(sizes, table["params"].to_numpy())
    budget = table["compute_budget"].to_list() if "compute_budget" in table.columns else [None] * table.height
    seed = table["seed"].to_list() if "seed" in table.columns else [None] * table.height
    first: dict[int, str] = {}
    for unit, r, b, s in zip(units, rank, budget, seed):
        first.setdefault(int(unit), f"size#{r}|C={b}|seed={s}")
    return np.array([first[int(u)] for u in units])


def compare(tables: dict, arms: dict, baseline: str, *, samples: int, seed: int, predict: list[float], delta) -> dict:
    """The comparison section: every other arm against ``baseline``. Runs pair by name (the arm's name
    removed); where no run of another arm shares a name with the baseline's (arms of different shapes),
    by their place in the design (design_keys)."""
    data = {name: arm_data(tables[name], arms[name], name) for name in arms}
    base_keys = set(data[baseline]["keys"].tolist())
    if not any(base_keys & set(d["keys"].tolist()) for name, d in data.items() if name != baseline):
        for name, d in data.items():
            study, _ = study_of(tables[name])
            d["keys"] = design_keys(study.table, study.units)
    return compare_data(data, baseline, samples=samples, seed=seed, predict=predict, delta=delta)


def compare_data(data: dict, baseline: str, *, samples: int, seed: int, predict: list[float], delta) -> dict:
    """The comparison of arms given as arm_data's dicts (the study simulator builds them for its arms)."""
    t0 = time.perf_counter()
    predict = sorted(float(c) for c in predict)
    lows, highs = zip(*(d["range"] for d in data.values()))
    trained = (max(lows), min(highs))
    notes = []
    if trained[0] > trained[1]:  # the arms' ranges do not overlap: compare over their union, and say so
        notes.append("the arms' trained compute ranges do not overlap: the comparison extrapolates at least one arm")
        trained = (min(lows), max(highs))
    span = (trained[0], max([trained[1], *predict]))
    budgets = sorted({*ladder_budgets(*span), trained[1], *predict})
    reference = predict[-1] if predict else trained[1]
    point = {name: pm.law_arrays(d["theta"], d["flops_per_nd"]) for name, d in data.items()}
    keys = {name: d["keys"] for name, d in data.items()}
    matched = sum(all(k in set(keys[n]) for n in keys) for k in set(keys[baseline]))
    out = {
        "method": METHOD,
        "samples": int(samples),
        "seed": int(seed),
        "matched_units": int(matched),
        "units": {name: int(len(set(k))) for name, k in keys.items()},
        "trained_range": list(trained),
        "range": list(span),
        "reference_flops": float(reference),
        "warnings": notes,
    }
    boots: dict = {"paired": None, "unpaired": None}
    if samples >= 2:
        rng = np.random.default_rng(seed)
        for kind in ("paired", "unpaired"):
            counts = pm.draw_units(keys, rng, samples, paired=kind == "paired")
            boots[kind] = {
                name: pm.refit(d["theta"], d["params"], d["tokens"], d["loss"], counts[name], delta)
                for name, d in data.items()
            }
        out["resamples_fitted"] = {
            kind: int(np.isfinite(np.stack([t[:, 0] for t in b.values()])).all(axis=0).sum())
            for kind, b in boots.items()
        }
    out["arms"] = {
        name: compare_pair(name, baseline, point, data, boots, budgets, trained, span)
        for name in data
        if name != baseline
    }
    for name, section in out["arms"].items():
        section["reference_flops"] = float(reference)
        section["verdict"] = verdict(name, baseline, section, reference)
    out["seconds"] = time.perf_counter() - t0
    return out


def _ends(values: np.ndarray) -> list:
    """The 95% interval of each column as [low, high] (an infinite end is kept: fits.json writes null)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ends = pm.interval(values)
    return [[float(lo), float(hi)] for lo, hi in ends.T]


def _resampled(boots: dict, kind: str, arm: str, base: str, data: dict):
    """The arm's and the baseline's laws over the resamples both could fit (None without a bootstrap)."""
    if boots[kind] is None:
        return None
    arm_theta, base_theta = boots[kind][arm], boots[kind][base]
    ok = np.isfinite(arm_theta).all(axis=1) & np.isfinite(base_theta).all(axis=1)
    if ok.sum() < 2:
        return None
    return (
        pm.law_arrays(arm_theta[ok], data[arm]["flops_per_nd"]),
        pm.law_arrays(base_theta[ok], data[base]["flops_per_nd"]),
    )


def compare_pair(arm: str, base: str, point: dict, data: dict, boots: dict, budgets, trained, span) -> dict:
    """One arm against the baseline: the multiplier at each budget and along a curve, the differences,
    the crossover, and how much narrower the paired intervals are than the unpaired ones."""
    grid = np.geomspace(span[0], span[1], CURVE_POINTS)
    flops = np.array(budgets, float)
    m_point = pm.multiplier(point[arm], point[base], flops)[0]
    curve_point = pm.multiplier(point[arm], point[base], grid)[0]
    loss_arm = pm.frontier_loss(point[arm], flops)[0]
    loss_base = pm.frontier_loss(point[base], flops)[0]
    resampled = {kind: _resampled(boots, kind, arm, base, data) for kind in ("paired", "unpaired")}
    ends = {kind: [None] * len(flops) for kind in resampled}
    curve_ends = [[None, None]] * len(grid)
    unbounded = [None] * len(flops)
    differences = {q: {"value": float(point[arm][q][0] - point[base][q][0])} for q in DIFFERENCES}
    for kind, laws in resampled.items():
        suffix = "interval" if kind == "paired" else "unpaired_interval"
        for q in DIFFERENCES:
            differences[q][suffix] = _ends((laws[0][q] - laws[1][q])[:, None])[0] if laws else None
        if laws is None:
            continue
        m = pm.multiplier(laws[0], laws[1], flops)
        ends[kind] = _ends(m)
        if kind == "paired":
            unbounded = np.isinf(m).mean(axis=0).tolist()
            curve_ends = _ends(pm.multiplier(laws[0], laws[1], grid))
    rows = []
    for i, c in enumerate(flops):
        rows.append(
            {
                "flops": float(c),
                "extrapolation_factor": float(c / trained[1]),
                "trained": bool(trained[0] * (1 - 1e-9) <= c <= trained[1] * (1 + 1e-9)),
                "multiplier": float(m_point[i]),
                "interval": ends["paired"][i],
                "unpaired_interval": ends["unpaired"][i],
                "arm_loss": float(loss_arm[i]),
                "baseline_loss": float(loss_base[i]),
                "unbounded_share": unbounded[i],
            }
        )
    return {
        "budgets": rows,
        "curve": {
            "flops": grid.tolist(),
            "multiplier": curve_point.tolist(),
            "lower": [e[0] for e in curve_ends],
            "upper": [e[1] for e in curve_ends],
        },
        "differences": differences,
        "crossover": crossover(point[arm], point[base], resampled["paired"], span),
        "width_ratio": width_ratio(rows),
    }


def width_ratio(rows: list[dict]) -> dict:
    """The paired interval's width over the unpaired one's, in log m (a ratio of compute factors), at the
    largest trained budget and as the median over the budgets where both are finite."""
    ratios = []
    for row in rows:
        p, u = row["interval"], row["unpaired_interval"]
        if p is None or u is None or not np.all(np.isfinite(p + u)) or min(p + u) <= 0:
            ratios.append(None)
            continue
        wide = np.log(u[1]) - np.log(u[0])
        ratios.append(float((np.log(p[1]) - np.log(p[0])) / wide) if wide > 0 else None)
    trained = [r for r, row in zip(ratios, rows) if row["trained"] and r is not None]
    finite = [r for r in ratios if r is not None]
    return {
        "largest_trained": trained[-1] if trained else None,
        "median": float(np.median(finite)) if finite else None,
    }


DIRECTION = {1: "overtakes", -1: "falls behind"}


def crossover(arm_law: dict, base_law: dict, resampled, span) -> dict:
    """Where the arm overtakes the baseline or falls behind it (m(C) = 1) within the comparison's range (the
    trained range up to the largest prediction budget), with the share of paired resamples that cross
    within it and the 95% interval of the crossing compute among those."""
    at, direction = pm.crossovers(arm_law, base_law, *span)
    out = {
        "flops": None if np.isnan(at[0]) else float(at[0]),
        "direction": DIRECTION.get(int(direction[0])),
        "range": list(span),
        "resamples_crossing": None,
        "interval": None,
    }
    if resampled is not None:
        drawn, _ = pm.crossovers(*resampled, *span)
        crossing = drawn[np.isfinite(drawn)]
        out["resamples_crossing"] = float(np.isfinite(drawn).mean())
        if len(crossing) >= 2:
            out["interval"] = _ends(crossing[:, None])[0]
    return out


def _number(x: float | None) -> str:
    return "unbounded" if x is None or not np.isfinite(x) else f"{x:.3g}"


def multiplier_text(row: dict) -> str:
    """'1.52 [1.31, 1.77]' (the paired interval), or the point alone without a bootstrap."""
    text = _number(row["multiplier"])
    if row.get("interval"):
        text += f" [{_number(row['interval'][0])}, {_number(row['interval'][1])}]"
    return text


def verdict(arm: str, base: str, section: dict, reference: float) -> str:
    """One line: the multiplier at the reference budget, which arm is ahead, and whether the ordering holds
    across the trained range."""
    row = min(section["budgets"], key=lambda r: abs(np.log(r["flops"] / reference)))
    m, ci = row["multiplier"], row["interval"]
    head = f"{base} needs {multiplier_text(row)}x the compute of {arm} to reach {arm}'s loss at C={row['flops']:.3g}"
    if ci is None:
        return head + " (no bootstrap: no interval)"
    if ci[0] <= 1 <= ci[1]:
        return head + f"; the arms cannot be told apart at C={row['flops']:.3g}: the interval includes 1"
    better = arm if m > 1 else base
    trained = [r for r in section["budgets"] if r["trained"] and r["interval"]]
    same_side = all(
        (r["interval"][0] > 1) == (m > 1) and not (r["interval"][0] <= 1 <= r["interval"][1]) for r in trained
    )
    cross = section["crossover"]
    if same_side:
        tail = "the ordering holds across the trained range"
    elif cross["flops"] is not None:
        tail = f"{arm} {cross['direction']} {base} at C={cross['flops']:.3g}"
    else:
        tail = "the interval includes 1 at some trained budgets"
    return head + f" ({better} is the more compute-efficient); {tail}"


def arm_lines(fits: dict) -> list[str]:
    """The CLI's account of a comparison, in plain sentences."""
    from workflow.fit.registry import BY_NAME
    from workflow.fit.table_fit import describe

    comparison, base = fits["comparison"], fits["baseline"]
    lines = []
    for name, arm_fits in fits["arms"].items():
        role = " (baseline)" if name == base else ""
        lines.append(
            f"arm {name}{role}: {arm_fits['data']['runs_fitted']} runs; Approach 3 "
            + describe(BY_NAME["approach3"], arm_fits)
        )
        lines += [f"arm {name} warning: {w}" for w in arm_fits["approach3"].get("warnings", [])]
    lines.append(
        f"comparison: {comparison['samples']} paired resamples ({comparison['matched_units']} units matched across "
        f"the arms), trained range C={comparison['trained_range'][0]:.3g} to {comparison['trained_range'][1]:.3g}"
    )
    for name, section in comparison["arms"].items():
        for row in section["budgets"]:
            where = (
                "trained range"
                if row["trained"]
                else "below the trained range"
                if row["extrapolation_factor"] < 1
                else f"{row['extrapolation_factor']:.3g}x the largest trained"
            )
            unpaired = row["unpaired_interval"]
            lines.append(
                f"{name} against {base} at C={row['flops']:.3g} ({where}): multiplier {multiplier_text(row)}"
                + (f", unpaired [{_number(unpaired[0])}, {_number(unpaired[1])}]" if unpaired else "")
            )
        for q, d in section["differences"].items():
            ci = d.get("interval")
            lines.append(f"{name} minus {base}, {q}: {d['value']:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""))
        lines.append(f"{name} against {base}, crossover: {crossover_sentence(section['crossover'], name, base)}")
        ratio = section["width_ratio"]["largest_trained"]
        if ratio is not None:
            lines.append(f"{name} against {base}: the paired interval is {ratio:.2f} times the unpaired one's width")
        lines.append(f"verdict: {section['verdict']}")
    lines += [f"comparison warning: {w}" for w in comparison["warnings"]]
    return lines


def crossover_sentence(cross: dict, arm: str, base: str) -> str:
    low, high = cross["range"]
    share = cross["resamples_crossing"]
    among = f"; {100 * share:.0f}% of resamples cross within it" if share is not None else ""
    if cross["flops"] is None:
        return f"none within the range C={low:.3g} to {high:.3g}{among}"
    ci = cross["interval"]
    text = f"{arm} {cross['direction']} {base} at C={cross['flops']:.3g}"
    if ci:
        text += f" [{ci[0]:.3g}, {ci[1]:.3g}] (among the resamples that cross)"
    return text + among
