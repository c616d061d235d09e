"""The layout of fits.json, as a JSON Schema (draft 2020-12); the tests validate real outputs against it.

Conventions:
- ``layout`` is the layout's version (2: one section per approach of the
  registry, allocation laws as a, b, k_n, k_d, intervals per section;
  3: Approach 3 states its variant and free parameters, data warnings;
  4: one compute axis (flops_per_nd, b = 1 - a, each prediction's cost), intervals
  over training runs (bootstrap.units), seed noise, lack of fit, backtest and
  sensitivity panel); 5: the study card (``study``), the look-up ladder
  (``ladder``, budgets 1 and 3 times each power of ten, in the predictions' form)
  and data.smallest_flops.
- Every approach has a section named after it. An optional approach that could
  not be fitted, the bootstrap when not run, and a Kaplan law that could not
  be fitted hold exactly {"skipped": "why"}.
- A section with an allocation law (N_opt = k_n C^a, D_opt = k_d C^b) holds
  a, b, k_n, k_d and allocation_form.
- Bootstrap intervals are [2.5th, 97.5th] percentiles, stored as
  bootstrap.intervals[section][quantity], where quantity is a key of the
  section, ``predictions.<C>.<n_opt|d_opt|tokens_per_parameter|loss>`` (the
  ladder's budgets too) or, for Approach 2, ``minima.<C>.<n_opt|loss>`` (each
  IsoFLOP budget's minimum); each prediction row also carries its approach's
  intervals.
- ``data`` says what was fitted: runs_fitted, runs_excluded (ids of runs not
  completed), compute (where C came from) and warnings (the table's
  plausibility warnings, workflow/fit/checks.py; [] when none).

The arms form (``ARMS_SCHEMA``; ``python -m workflow.fit TABLE --arms COLUMN
--baseline NAME``, workflow/fit/compare.py) is a second form of the same
layout: ``form`` is "arms", ``arm_column`` and ``baseline`` name the arms'
column and the baseline arm, ``arms`` maps each arm to a whole single-arm
fits.json (FITS_SCHEMA) of its rows, and ``comparison`` compares every other
arm with the baseline. ``comparison.arms[ARM]`` holds:
- ``budgets``: rows {flops, extrapolation_factor, trained (inside the range
  every arm trained), multiplier m(C) = C_baseline(L_arm(C)) / C, interval
  (paired 95%), unpaired_interval, arm_loss and baseline_loss (each law's
  compute-optimal loss at C), unbounded_share (share of paired resamples where
  the arm's loss is below the baseline's E: m infinite)}, at the look-up
  ladder's budgets over the range, the largest trained compute and every
  prediction budget. A multiplier or interval end that is infinite is null.
- ``curve``: flops (48 points over the range), multiplier, lower, upper (the
  paired band), for a chart.
- ``differences``: alpha, beta, a and E, each {value (arm minus baseline),
  interval, unpaired_interval}.
- ``crossover``: {flops (where m(C) crosses 1 in the range, or null),
  direction ("overtakes", "falls behind" or null), range, resamples_crossing
  (share of paired resamples crossing within the range), interval (95% among
  those, or null)}.
- ``width_ratio``: {largest_trained, median}: the paired interval's width over
  the unpaired one's, in log m.
- ``verdict``: one line; ``reference_flops``: the budget it speaks of.
The comparison also holds method, samples, seed, resamples_fitted {paired,
unpaired}, matched_units, units {arm: count}, trained_range, range (the
trained range up to the largest prediction budget), reference_flops,
warnings and seconds.
"""

from __future__ import annotations

from workflow.fit.registry import APPROACHES

LAYOUT = 5

NUMBER = {"type": "number"}
NUMBER_OR_NULL = {"type": ["number", "null"]}
STRING = {"type": "string"}
INTERVAL = {"type": "array", "items": NUMBER, "minItems": 2, "maxItems": 2}
SKIPPED = {
    "type": "object",
    "required": ["skipped"],
    "properties": {"skipped": STRING},
    "additionalProperties": False,
}
ALLOCATION = {
    "type": "object",
    "required": ["a", "b", "k_n", "k_d", "flops_per_nd", "allocation_form"],
    "properties": {
        "a": NUMBER,
        "b": NUMBER,
        "k_n": NUMBER,
        "k_d": NUMBER,
        "flops_per_nd": NUMBER,
        "allocation_form": STRING,
    },
}
OPTIMUM = {
    "type": "object",
    "required": ["flops", "n_opt", "d_opt", "loss"],
    "properties": {"flops": NUMBER, "n_opt": NUMBER, "d_opt": NUMBER, "loss": NUMBER, "in_fit": {"type": "boolean"}},
}
LOG_PARAMS = {"type": "object", "required": ["a", "b", "e", "alpha", "beta"], "additionalProperties": NUMBER}
SATURATING_LAW = {
    "oneOf": [
        SKIPPED,
        {
            "type": "object",
            "required": ["E", "A", "alpha", "objective", "E_identified", "E_note", "power_law", "points", "form"],
            "properties": {
                "E_identified": {"type": "boolean"},
                "E_note": {"type": ["string", "null"]},
                "power_law": {"type": "object", "required": ["A", "alpha", "objective", "form"]},
            },
        },
    ]
}

# The section of each approach when it was fitted (its "skipped" form is SKIPPED).
SECTIONS = {
    "approach3": {
        "required": ["E", "A", "B", "alpha", "beta", "G", "form", "log_params", "objective", "huber_delta"]
        + ["starts", "starts_refined", "runs", "local_optima", "warnings", "seconds", "variant", "free_parameters"],
        "properties": {
            "log_params": LOG_PARAMS,
            "variant": {
                "type": "object",
                "required": ["tie_exponents", "fixed"],
                "properties": {"tie_exponents": {"type": "boolean"}, "fixed": {"additionalProperties": NUMBER}},
            },
            "free_parameters": {"type": "array", "items": {"enum": ["E", "A", "B", "alpha", "beta"]}},
            "local_optima": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["objective", "log_params"],
                    "properties": {"log_params": LOG_PARAMS},
                },
            },
            "warnings": {"type": "array", "items": STRING},
            # Parameters the data do not identify; the report withholds predictions that depend on them.
            "unidentified": {"type": "array", "items": {"enum": ["E", "A", "B", "alpha", "beta"]}},
        },
    },
    "data_constrained": {
        "required": ["form", "single_epoch_form", "single_epoch", "E", "A", "B", "alpha", "beta", "R_D_star"]
        + ["R_N_star", "objective", "single_epoch_runs", "repeated_runs", "runs", "local_optima", "warnings"],
        "properties": {
            "R_D_star": NUMBER,
            "R_N_star": NUMBER,
            "single_epoch": {"type": "object", "required": ["E", "A", "B", "alpha", "beta", "a", "b", "k_n", "k_d"]},
            "warnings": {"type": "array", "items": STRING},
        },
    },
    "frontier": {
        "required": ["A_C", "gamma", "frontier_runs", "frontier_run_ids", "form"],
        "properties": {
            "A_C": NUMBER,
            "gamma": NUMBER,
            "frontier_runs": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "kaplan": {
        "required": ["L_N", "L_D", "L_C"],
        "properties": {"L_N": SATURATING_LAW, "L_D": SATURATING_LAW, "L_C": SATURATING_LAW},
        "additionalProperties": False,
    },
    "approach1": {
        "required": ["points", "curves", "skip_fraction", "smooth", "envelope_sizes", "fit_range_flops", "optima"],
        "properties": {"optima": {"type": "array", "items": OPTIMUM}, "fit_range_flops": INTERVAL},
    },
    "approach2": {
        "required": ["budgets", "budgets_kept", "flagged", "optima"],
        "properties": {
            "optima": {"type": "array", "items": OPTIMUM},
            "budgets": {
                "type": "array",
                "items": {"type": "object", "required": ["compute_budget", "runs", "kept", "sizes", "log_n_range"]},
            },
        },
    },
    "noise": {
        "required": ["seeds", "points_replicated", "degrees_of_freedom", "seed_sd"],
        "properties": {"seed_sd": NUMBER, "lack_of_fit_ratio": NUMBER_OR_NULL, "residual_sd": NUMBER},
    },
    "lack_of_fit": {
        "required": ["tolerance", "budgets", "largest_gap", "warnings"],
        "properties": {
            "budgets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["compute_budget", "observed_minimum", "law_minimum", "gap", "flagged"],
                },
            },
            "warnings": {"type": "array", "items": STRING},
        },
    },
    "backtest": {
        "required": ["factor", "samples", "folds", "points_predicted", "approach3_mean_signed_error"]
        + ["approach3_coverage", "frontier_coverage", "largest_extrapolation_factor", "warnings"],
        "properties": {
            "folds": {
                "type": "array",
                "items": {"type": "object", "required": ["compute_budget", "held_out", "runs_fitted"]},
            },
            "approach3_coverage": NUMBER_OR_NULL,
            "frontier_coverage": NUMBER_OR_NULL,
            "warnings": {"type": "array", "items": STRING},
        },
    },
    "sensitivity": {
        "required": ["choices", "spreads", "warnings"],
        "properties": {
            "choices": {"type": "array", "items": {"type": "object", "required": ["group", "choice"]}},
            "spreads": {
                "type": "object",
                "additionalProperties": {"type": "object", "required": ["low", "high", "spread"]},
            },
            "warnings": {"type": "array", "items": STRING},
        },
    },
    "extrapolation": {
        "required": ["held_out_description", "threshold_flops", "held_out", "runs_fitted", "refit"]
        + ["mean_absolute_error", "mean_relative_error", "max_absolute_error", "max_relative_error"],
        "properties": {
            "held_out": {
                "type": "array",
                "items": {"type": "object", "required": ["run_id", "loss", "predicted", "absolute_error"]},
            }
        },
    },
}

PREDICTION_POINT = {
    "type": "object",
    "required": ["n_opt", "d_opt", "tokens_per_parameter"],
    "properties": {
        "n_opt": NUMBER,
        "d_opt": NUMBER,
        "tokens_per_parameter": NUMBER,
        "loss": NUMBER,
        # what the recipe (N_opt, D_opt) costs on the study's compute axis, over the budget: 1
        "cost": NUMBER,
        "intervals": {"type": "object", "additionalProperties": {"oneOf": [INTERVAL, {"type": "null"}]}},
        # quantity -> the unidentified parameters it depends on: the number is kept, the report withholds it
        "withheld": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"enum": ["E", "A", "B", "alpha", "beta"]}},
        },
    },
    "additionalProperties": False,
}
BAND = {
    "type": "object",
    "required": ["flops", "loss_lower", "loss_upper", "n_opt_lower", "n_opt_upper", "d_opt_lower", "d_opt_upper"],
    "additionalProperties": {"type": "array", "items": NUMBER},
}
BOOTSTRAP = {
    "oneOf": [
        SKIPPED,
        {
            "type": "object",
            "required": ["samples", "fitted", "seed", "workers", "resamples_skipped", "method", "verified"]
            + ["intervals", "counts", "bands", "seconds"],
            "properties": {
                "samples": {"type": "integer", "minimum": 2},
                "fitted": {"type": "integer"},
                "resamples_skipped": {"type": "object", "additionalProperties": {"type": "integer"}},
                "verified": {
                    "type": "object",
                    "required": ["resamples", "refine", "same_optimum", "largest_objective_gap"],
                    "properties": {"largest_objective_gap": NUMBER_OR_NULL},
                },
                "intervals": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "additionalProperties": INTERVAL},
                },
                "counts": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
                "bands": {"type": "object", "additionalProperties": BAND},
            },
        },
    ]
}


def section_schema(approach) -> dict:
    """An approach's section: SKIPPED (optional approaches only), or its fitted form, which
    includes the allocation keys when the approach has an allocation law."""
    fitted = {"type": "object", "not": {"required": ["skipped"]}, **SECTIONS.get(approach.name, {})}
    if approach.allocates:
        fitted = {"allOf": [fitted, ALLOCATION]}
    return fitted if approach.required else {"oneOf": [SKIPPED, fitted]}


PREDICTIONS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["flops", "extrapolation_factor"],
        "properties": {"flops": NUMBER, "extrapolation_factor": NUMBER},
        "additionalProperties": PREDICTION_POINT,
    },
}

FITS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fits.json",
    "type": "object",
    "required": [
        "layout",
        *(a.name for a in APPROACHES),
        "predictions",
        "ladder",
        "study",
        "bootstrap",
        "references",
        "data",
        "seconds",
    ],
    "properties": {
        "layout": {"const": LAYOUT},
        **{a.name: section_schema(a) for a in APPROACHES},
        "predictions": PREDICTIONS,
        # The look-up table's budgets (table_fit.ladder_budgets), in the predictions' form.
        "ladder": PREDICTIONS,
        # What the study is (study_card.py): its sizes, ranges, schedule, corpus and tokenizer.
        "study": {"type": "object", "required": ["runs", "sizes", "params", "tokens", "flops"]},
        "bootstrap": BOOTSTRAP,
        "references": {"type": "object"},
        "data": {
            "type": "object",
            "required": [
                "runs_fitted",
                "runs_excluded",
                "compute",
                "flops_per_nd",
                "smallest_flops",
                "largest_flops",
                "warnings",
            ],
            "properties": {
                "runs_fitted": {"type": "integer"},
                "flops_per_nd": NUMBER,
                "smallest_flops": NUMBER,
                "largest_flops": NUMBER,
                "runs_excluded": {"type": "array"},
                "compute": STRING,
                "warnings": {"type": "array", "items": STRING},
            },
        },
        "seconds": {"type": "object", "additionalProperties": NUMBER},
        # Only on a corpus of known entropy rate (workflow/fit/calibration.py).
        "calibration": {
            "type": "object",
            "oneOf": [
                SKIPPED,
                {"required": ["true_bits_per_byte", "true_nats_per_token", "bytes_per_token", "floors"]},
            ],
        },
        "flop_convention": {"type": ["string", "null"]},
        "extrapolation_flag": NUMBER,
        "parameter_count": {"type": ["string", "null"]},
        "table": STRING,
    },
}


INTERVAL_OR_NULL = {
    "oneOf": [{"type": "array", "items": NUMBER_OR_NULL, "minItems": 2, "maxItems": 2}, {"type": "null"}]
}
COMPARED = {
    "type": "object",
    "required": ["budgets", "curve", "differences", "crossover", "width_ratio", "verdict", "reference_flops"],
    "properties": {
        "budgets": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["flops", "extrapolation_factor", "trained", "multiplier", "interval"]
                + ["unpaired_interval", "arm_loss", "baseline_loss", "unbounded_share"],
                "properties": {
                    "flops": NUMBER,
                    "extrapolation_factor": NUMBER,
                    "trained": {"type": "boolean"},
                    "multiplier": NUMBER_OR_NULL,
                    "interval": INTERVAL_OR_NULL,
                    "unpaired_interval": INTERVAL_OR_NULL,
                    "arm_loss": NUMBER,
                    "baseline_loss": NUMBER,
                    "unbounded_share": NUMBER_OR_NULL,
                },
                "additionalProperties": False,
            },
        },
        "curve": {
            "type": "object",
            "required": ["flops", "multiplier", "lower", "upper"],
            "additionalProperties": {"type": "array", "items": NUMBER_OR_NULL},
        },
        "differences": {
            "type": "object",
            "required": ["alpha", "beta", "a", "E"],
            "additionalProperties": {
                "type": "object",
                "required": ["value", "interval", "unpaired_interval"],
                "properties": {"value": NUMBER, "interval": INTERVAL_OR_NULL, "unpaired_interval": INTERVAL_OR_NULL},
            },
        },
        "crossover": {
            "type": "object",
            "required": ["flops", "direction", "range", "resamples_crossing", "interval"],
            "properties": {
                "flops": NUMBER_OR_NULL,
                "direction": {"enum": ["overtakes", "falls behind", None]},
                "range": INTERVAL,
                "resamples_crossing": NUMBER_OR_NULL,
                "interval": INTERVAL_OR_NULL,
            },
        },
        "width_ratio": {
            "type": "object",
            "required": ["largest_trained", "median"],
            "additionalProperties": NUMBER_OR_NULL,
        },
        "verdict": STRING,
        "reference_flops": NUMBER,
    },
}

ARMS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fits.json of a study with arms",
    "type": "object",
    "required": ["layout", "form", "arm_column", "baseline", "arms", "comparison"],
    "properties": {
        "layout": {"const": LAYOUT},
        "form": {"const": "arms"},
        "arm_column": STRING,
        "baseline": STRING,
        "arms": {"type": "object", "minProperties": 2, "additionalProperties": FITS_SCHEMA},
        "comparison": {
            "type": "object",
            "required": ["method", "samples", "seed", "matched_units", "units", "trained_range", "range"]
            + ["reference_flops", "warnings", "arms", "seconds"],
            "properties": {
                "samples": {"type": "integer", "minimum": 0},
                "resamples_fitted": {
                    "type": "object",
                    "required": ["paired", "unpaired"],
                    "additionalProperties": {"type": "integer"},
                },
                "matched_units": {"type": "integer"},
                "units": {"type": "object", "additionalProperties": {"type": "integer"}},
                "trained_range": INTERVAL,
                "range": INTERVAL,
                "reference_flops": NUMBER,
                "warnings": {"type": "array", "items": STRING},
                "arms": {"type": "object", "minProperties": 1, "additionalProperties": COMPARED},
                "seconds": NUMBER,
            },
        },
        "flop_convention": {"type": ["string", "null"]},
        "extrapolation_flag": NUMBER,
        "parameter_count": {"type": ["string", "null"]},
        "table": STRING,
    },
}


def _deepest(error):
    """The error inside a oneOf (a section that is either skipped or fitted) that says what is wrong:
    that of the branch the section meant (fitted, unless it holds "skipped"), else the branch with the
    fewest errors."""
    while error.context:
        branches: dict = {}
        for inner in error.context:
            branches.setdefault(inner.relative_schema_path[0], []).append(inner)
        meant = {
            index: errors
            for index, errors in branches.items()
            if not (error.validator_value[index] is SKIPPED and "skipped" not in (error.instance or {}))
        }
        errors = min((meant or branches).values(), key=len)
        error = errors[0]
    return error


def layout_problem(fits: dict) -> str | None:
    """What keeps ``fits`` from being a fits.json of this layout, in a few words naming the key (a key
    missing: ``approach3.alpha is missing``), or None. The report checks this before it writes anything:
    a key missing was a KeyError traceback, after some of the charts had been written."""
    # jsonschema comes with altair, which the report needs; the fit's own outputs are tested against
    # FITS_SCHEMA, so what the fit writes passes.
    import jsonschema

    # The arms form (one whole fits.json per arm and their comparison) has its own schema.
    schema = ARMS_SCHEMA if isinstance(fits, dict) and fits.get("form") == "arms" else FITS_SCHEMA
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(fits))
    if not errors:
        return None
    error = _deepest(jsonschema.exceptions.best_match(errors))
    where = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [key for key in error.validator_value if key not in error.instance]
        named = ", ".join(f"{where}.{key}" if where else key for key in missing)
        return f"{named} {'is' if len(missing) == 1 else 'are'} missing"
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return f"{where or 'the top level'}: {message}"
