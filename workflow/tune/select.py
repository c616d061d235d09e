"""The tune stage's selection: each swept shape's best settings by validation loss, and rules in N.

For each swept shape the chosen combination is the sweep point with the lowest validation loss
among those that completed. The learning rate and the batch size then get a power law in N (the
non-embedding parameters), value*(N) = c N^k, fitted by least squares to (log N, log value) of the
chosen points (numpy.polyfit); a shape the sweep left out takes the rule's value, the batch rounded
to whole micro-batches. warmup_fraction and beta2 have no such law: a shape left out takes the
value of the swept shape nearest in log N. With ``tune.apply: rule`` every shape, swept or not,
takes the rule's value: one noisy sweep point then moves no shape by itself. A choice at either end
of its swept values is warned: the optimum may lie outside the sweep.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import polars as pl

from workflow.files import DamagedOutput, read_output_json, write_json_atomic, write_text_atomic
from workflow.tune import POWER_LAW_KEYS


class TuneError(ValueError):
    """A sweep that cannot choose: the message names the shape or run."""


def sweep_rows(plan: dict, results: dict[str, tuple[str, float]]) -> list[dict]:
    """One row per sweep point: its shape, N, values, status and validation loss."""
    rows = []
    for run_id, point in plan["sweep"].items():
        if run_id not in results:
            raise TuneError(f"sweep run {run_id} has no result")
        status, loss = results[run_id]
        rows.append(
            {
                "run_id": run_id,
                "shape": point["shape"],
                "params": plan["shapes"][point["shape"]],
                "tokens": point["tokens"],
                **point["values"],
                "status": status,
                "loss": loss,
                "chosen": False,
            }
        )
    return rows


def usable(row: dict) -> bool:
    return row["status"] == "completed" and row["loss"] is not None and math.isfinite(row["loss"])


def fit_power_law(params: list[float], values: list[float]) -> dict:
    """value = coefficient x N^exponent, least squares in log-log."""
    exponent, intercept = np.polyfit(np.log(params), np.log(values), 1)
    predicted = np.exp(intercept + exponent * np.log(params))
    rms = float(np.sqrt(np.mean((np.log(values) - np.log(predicted)) ** 2)))
    return {"coefficient": float(np.exp(intercept)), "exponent": float(exponent), "shapes": len(params), "log_rms": rms}


def rule_value(rule: dict, params: float) -> float:
    return rule["coefficient"] * params ** rule["exponent"]


def select(plan: dict, rows: list[dict]) -> dict:
    """tuning.json: the chosen values of every shape of the study, where each came from, the fitted
    rules and warnings. Marks the chosen rows in ``rows``."""
    keys = plan["swept"]
    chosen: dict[str, dict] = {}
    warnings = []
    by_shape: dict[str, list[dict]] = {}
    for row in rows:
        by_shape.setdefault(row["shape"], []).append(row)
    for shape, points in sorted(by_shape.items()):
        done = [row for row in points if usable(row)]
        if not done:
            raise TuneError(
                f"tune: no sweep point of shape {shape} completed ({', '.join(r['run_id'] for r in points)}); "
                f"lower tune.values or check the runs' logs"
            )
        best = min(done, key=lambda row: row["loss"])
        best["chosen"] = True
        chosen[shape] = best
        for key in keys:
            swept = sorted(plan["values"][key])
            if len(swept) > 1 and best[key] in (swept[0], swept[-1]):
                end = "smallest" if best[key] == swept[0] else "largest"
                warnings.append(
                    f"shape {shape}: the best {key} {best[key]:g} is the {end} swept; the optimum may lie "
                    f"beyond it: extend tune.values.{key}"
                )
        if len(done) < len(points):
            warnings.append(
                f"shape {shape}: {len(points) - len(done)} of {len(points)} sweep points did not complete "
                f"(diverged or no loss) and were left out"
            )

    rules = {}
    swept_params = sorted({plan["shapes"][s] for s in chosen})
    for key in keys:
        if key in POWER_LAW_KEYS and len(swept_params) >= 2:
            rules[key] = fit_power_law(
                [plan["shapes"][s] for s in sorted(chosen)], [chosen[s][key] for s in sorted(chosen)]
            )

    by_rule = plan.get("apply", "best") == "rule"
    shapes = {}
    for shape, params in sorted(plan["shapes"].items(), key=lambda item: item[1]):
        if shape in chosen and not (by_rule and rules):
            best = chosen[shape]
            shapes[shape] = {
                "params": params,
                "values": {k: best[k] for k in keys},
                "source": {k: "sweep" for k in keys},
                "run_id": best["run_id"],
                "loss": best["loss"],
            }
            continue
        nearest = min(chosen, key=lambda s: abs(math.log(plan["shapes"][s]) - math.log(params)))
        if nearest == shape:  # a swept shape under apply: rule keeps its own value where no rule applies
            nearest_source = "sweep"
        else:
            nearest_source = f"nearest ({nearest})"
        values, source = {}, {}
        for key in keys:
            if key in rules:
                value = rule_value(rules[key], params)
                if key == "batch_tokens":
                    micro = plan["micro_batch_tokens"]
                    value = max(1, round(value / micro)) * micro
                values[key], source[key] = value, "rule"
            else:
                values[key], source[key] = chosen[nearest][key], nearest_source
        best = chosen.get(shape, {})
        shapes[shape] = {
            "params": params,
            "values": values,
            "source": source,
            "run_id": best.get("run_id"),
            "loss": best.get("loss"),
        }
    return {
        "swept": keys,
        "values": plan["values"],
        "apply": plan.get("apply", "best"),
        "parameter_count": plan["parameter_count"],
        "selection": "lowest validation loss among completed sweep points",
        "shapes": shapes,
        "rules": rules,
        "warnings": warnings,
    }


def read_results(run_dirs: list[Path]) -> dict[str, tuple[str, float]]:
    """Each sweep run's status and validation loss, from its summary.json and eval.json."""
    results = {}
    for run_dir in run_dirs:
        try:
            summary = read_output_json(run_dir / "summary.json", ("run_id", "status"))
            evaluation = read_output_json(run_dir / "eval.json", ("run_id", "points"))
        except DamagedOutput as e:
            raise TuneError(str(e)) from None
        points = evaluation["points"]
        if len(points) != 1:
            raise TuneError(f"sweep run {run_dir.name}: expected one evaluated point, found {len(points)}")
        results[summary["run_id"]] = (summary["status"], points[0]["val_loss"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.tune", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="the sweep runs' folders (summary.json, eval.json)")
    parser.add_argument("--plan", required=True, help="the sweep's plan as JSON (workflow.tune.selection_plan)")
    parser.add_argument("--out-dir", required=True, type=Path, help="writes tuning.json and sweep.csv here")
    args = parser.parse_args(argv)
    plan = json.loads(args.plan)
    try:
        rows = sweep_rows(plan, read_results(args.run_dirs))
        tuning = select(plan, rows)
    except TuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    table = pl.DataFrame(rows, infer_schema_length=None).sort("params", *plan["swept"])
    write_text_atomic(args.out_dir / "sweep.csv", table.write_csv())
    write_json_atomic(args.out_dir / "tuning.json", tuning)
    for shape, entry in tuning["shapes"].items():
        values = ", ".join(f"{k} {v:g} ({entry['source'][k]})" for k, v in entry["values"].items())
        print(f"tune: {shape} (N {entry['params']}): {values}")
    for warning in tuning["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
