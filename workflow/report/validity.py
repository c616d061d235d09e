"""How far the study's law can be trusted, as the index page states it: how far each prediction reaches
past the largest run, what the exponent a can tell apart among the published ones, the backtest, the
lack of fit at each IsoFLOP budget, the seed noise and the sensitivity panel.

Each reads its section of fits.json (workflow/fit/backtest.py, lack_of_fit.py, seed_noise.py,
sensitivity.py) and says why where the section was skipped; every text is HTML, escaped.
"""

from __future__ import annotations

import html

import polars as pl

from workflow.fit.references import REFERENCES
from workflow.fit.registry import BY_NAME
from workflow.report.chart_parts import table_html

# A prediction at more than this many times the largest compute trained is flagged on the page
# ("extrapolated 1,250x past the largest run"): the law is then used far past the data that fixed it.
# The study sets it (fit.extrapolation_flag, recorded in fits.json); this is the default.
EXTRAPOLATION_FLAG = 100


def flag_limit(fits: dict) -> float:
    """The extrapolation factor past which a prediction is flagged: the study's, else the default."""
    return float(fits.get("extrapolation_flag") or EXTRAPOLATION_FLAG)


def extrapolation_factor(fits: dict, row: dict) -> float | None:
    """A prediction's C over the largest compute trained: the fit's own factor, else from the data's
    largest compute; None when neither is recorded."""
    if row.get("extrapolation_factor") is not None:
        return float(row["extrapolation_factor"])
    largest = (fits.get("data") or {}).get("largest_flops")
    return float(row["flops"]) / largest if largest else None


def times(factor: float) -> str:
    """A factor to 3 significant digits (2 below 10), with thousands separated: 1,250x, 125,000x, 4.6x."""
    return f"{float(f'{factor:.3g}'):,.0f}x" if factor >= 10 else f"{factor:.2g}x"


def extrapolation_flag(factor: float | None, limit: float = EXTRAPOLATION_FLAG) -> str:
    """Plain text: 'extrapolated 1,250x past the largest run' beyond ``limit``, else ''."""
    return f"extrapolated {times(factor)} past the largest run" if factor and factor > limit else ""


def extrapolation_note(factor: float | None, limit: float = EXTRAPOLATION_FLAG) -> str:
    """HTML: how far a prediction reaches past the largest run, as a warning beyond ``limit``."""
    if factor is None:
        return "largest run not recorded"
    if flag := extrapolation_flag(factor, limit):
        return f'<span class="warn">{html.escape(flag)}</span>'
    return f"{times(factor)} the largest run"


# The published allocation exponents the first screen holds the study's intervals against: (how the
# page names it, its key in references.py's "allocation_exponents"). Chinchilla's a ≈ 0.5 is Hoffmann
# et al. 2022's Approach 1 (0.50; their Approaches 2 and 3 give 0.49 and 0.46).
PUBLISHED_A = (("Kaplan's", "Kaplan et al. 2020"), ("Chinchilla's", "Hoffmann et al. 2022 Approach 1"))


def published_exponents(fits: dict) -> list[tuple[str, float]]:
    """(name, a) of each PUBLISHED_A, from the references fits.json records (else references.py's)."""
    values = (fits.get("references") or REFERENCES).get("allocation_exponents") or {}
    fallback = REFERENCES["allocation_exponents"]
    return [(label, float(values.get(key, fallback[key]))) for label, key in PUBLISHED_A]


def possessive(titles: list[str]) -> str:
    """'Approach 1's', 'Approach 1's and Approach 2's', 'Approach 1's, 2's and 3's' style lists."""
    names = [f"{t}'s" for t in titles]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def published_line(intervals: dict[str, list[float]], published: list[tuple[str, float]]) -> str:
    """What the intervals of a can and cannot tell apart among the published exponents: read over their
    union (a value any approach's interval holds is not excluded by the study), then, where the
    approaches differ, which interval holds or excludes which value."""
    if not intervals:
        return ""
    holders = {label: [n for n, (lo, hi) in intervals.items() if lo <= value <= hi] for label, value in published}
    shown = {label: f"{label} {value:g}" for label, value in published}
    inside = [shown[label] for label, _ in published if holders[label]]
    outside = [shown[label] for label, _ in published if not holders[label]]
    one = len(intervals) == 1
    these = f"{BY_NAME[next(iter(intervals))].title}'s interval" if one else "These intervals"
    include, exclude = ("includes", "excludes") if one else ("include", "exclude")
    if not outside:
        both = " and ".join(inside)
        line = f"{these} {include} {'both ' if len(inside) == 2 else ''}{both}: this study cannot tell them apart."
    elif not inside:
        line = f"{these} {exclude} {'both ' if len(outside) == 2 else ''}{' and '.join(outside)}."
    else:
        line = f"{these} {exclude} {' and '.join(outside)} and {include} {' and '.join(inside)}."
    details = []
    for label, _ in published:
        held = holders[label]
        if 0 < len(held) < len(intervals):
            missed = [n for n in intervals if n not in held]
            details.append(
                f"{possessive([BY_NAME[n].title for n in held])} "
                f"{'interval includes' if len(held) == 1 else 'intervals include'} {shown[label]}, "
                f"{possessive([BY_NAME[n].title for n in missed])} {'excludes' if len(missed) == 1 else 'exclude'} it"
            )
    return line + (" " + "; ".join(details) + "." if details else "")


def backtest_sentence(fits: dict) -> str:
    """How well the approaches, refitted only on runs far below each held-out budget, predict it: how far
    the folds extrapolate, Approach 3's mean signed error and the share of held-out points inside their
    95% prediction intervals, the frontier's minimum, Approaches 1 and 2's N_opt."""
    section = fits.get("backtest") or {"skipped": "not computed"}
    if "skipped" in section:
        return f'<span class="warn">Backtest skipped: {html.escape(section["skipped"])}</span>'
    folds = section.get("folds") or []
    factor = section.get("factor")
    reach = section.get("largest_extrapolation_factor")
    text = (
        f"Backtest: refitted only on runs {f'at least {factor:g}x ' if factor else ''}below each of the "
        f"{len(folds)} held-out budgets "
        f"in compute (the folds extrapolate up to {times(reach) if reach else 'n/a'})"
    )
    points = [p for f in folds for p in (f.get("approach3") or {}).get("points", [])]
    refitted = sum("points" in (f.get("approach3") or {}) for f in folds)
    error, absolute = section.get("approach3_mean_signed_error"), section.get("approach3_mean_absolute_error")
    if points and error is not None:
        text += (
            f", Approach 3 predicts the {len(points)} held-out points with a mean signed error of "
            f"{error:+.2g} nats (predicted minus observed"
            + (f"; mean absolute {absolute:.2g}" if absolute is not None else "")
            + (
                f"; refitted in {refitted} of {len(folds)} folds, the others having too few runs"
                if refitted < len(folds)
                else ""
            )
            + ")"
        )
        judged = [p for p in points if p.get("interval") is not None]
        if judged:
            held = sum(bool(p["inside"]) for p in judged)
            share = (
                f"{held} of {len(judged)} ({100 * held / len(judged):.0f}%) lie inside their 95% prediction intervals"
            )
            coverage = section.get("approach3_coverage")
            text += "; " + (f'<span class="warn">{share}</span>' if coverage is not None and coverage < 0.8 else share)
        text += "."
    else:
        text += ": Approach 3 could not be refitted in any fold (too few runs far enough below each budget)."
    frontier = [f["frontier"] for f in folds if "inside" in (f.get("frontier") or {})]
    if frontier:
        held = sum(bool(f["inside"]) for f in frontier)
        text += (
            f" The frontier's observed minimum lies inside its predicted 95% interval at {held} of "
            f"{len(frontier)} budgets."
        )
    for name in ("approach1", "approach2"):
        errors = [abs(f[name]["log10_error"]) for f in folds if "log10_error" in (f.get(name) or {})]
        if errors:
            text += (
                f" {BY_NAME[name].title}'s N<sub>opt</sub> misses the best observed size by up to "
                f"{10 ** max(errors):.2g}x ({len(errors)} of {len(folds)} folds)."
            )
    return text


def lack_of_fit_paragraph(fits: dict) -> str:
    """The IsoFLOP budgets where the law's compute-optimal loss misses the lowest observed loss by more
    than the tolerance, with their numbers; or that it misses none."""
    section = fits.get("lack_of_fit")
    if not section or "skipped" in section:
        return ""
    budgets, tolerance = section.get("budgets") or [], section["tolerance"]
    flagged = [b for b in budgets if b["flagged"]]
    if not flagged:
        largest = section.get("largest_gap")
        return (
            f"<p>Lack of fit: at each of the {len(budgets)} IsoFLOP budgets the law's compute-optimal loss lies "
            f"within {tolerance:.3g} nats of the lowest observed"
            + (f" (largest gap {largest:.2g})" if largest is not None else "")
            + ".</p>"
        )
    source = section.get("tolerance_source") or ""
    source = f" ({html.escape(source)})" if "seed" in source else ""
    items = "".join(
        f'<li class="warn">C = {b["compute_budget"]:.3g} FLOPs: the law\'s minimum {b["law_minimum"]:.3f}, the '
        f"lowest observed {b['observed_minimum']:.3f} ({b['gap']:+.3f} nats)</li>"
        for b in flagged
    )
    return (
        f'<p class="warn">Lack of fit at {len(flagged)} of {len(budgets)} IsoFLOP budgets: the law\'s '
        f"compute-optimal loss misses the lowest observed by more than the tolerance of {tolerance:.3g} nats"
        f"{source}:</p><ul>{items}</ul>"
    )


def noise_sentence(fits: dict) -> str:
    """Where seeds measured it: the seed noise, and the law's residuals against it (lack-of-fit ratio)."""
    section = fits.get("noise")
    if not section or "skipped" in section:
        return ""
    text = (
        f"Seed noise: over {section['seeds']} seeds, the loss of one (N, D) point has a standard deviation of "
        f"{section['seed_sd']:.2g} nats"
    )
    if section.get("residual_sd") is not None:
        text += f"; Approach 3's residuals have {section['residual_sd']:.2g}"
    if section.get("lack_of_fit_ratio") is not None:
        text += (
            f", a lack-of-fit ratio (residual variance over seed variance) of {section['lack_of_fit_ratio']:.2g} "
            "(about 1 when the law fits as well as the noise allows)"
        )
    if section.get("within_run_correlation") is not None:
        text += f". The points of one run deviate together, with correlation {section['within_run_correlation']:.2f}"
    return f"<p>{text}.</p>"


def sensitivity_table(fits: dict) -> pl.DataFrame:
    """One row per analysis choice of the sensitivity panel: Approach 3's alpha, beta, a and E and
    Approach 2's a refitted under it; ``skipped`` says why a refit could not be made."""
    columns = {"group": pl.String, "choice": pl.String}
    columns |= {k: pl.Float64 for k in ("alpha", "beta", "a", "E", "approach2_a")} | {"skipped": pl.String}
    section = fits.get("sensitivity") or {}
    rows = [{c: row.get(c) for c in columns} for row in section.get("choices") or []]
    return pl.DataFrame(rows, schema=columns)


def sensitivity_section(fits: dict) -> str:
    """The sensitivity panel: the table of choices, each exponent's spread over them beside its 95%
    bootstrap interval's width, and the panel's warnings."""
    section = fits.get("sensitivity") or {"skipped": "not computed"}
    head = "<h2>Sensitivity to the analysis</h2>"
    if "skipped" in section:
        return (
            f'<section id="sensitivity">{head}<p class="warn">Skipped: {html.escape(section["skipped"])}</p></section>'
        )
    table = sensitivity_table(fits)
    if table["skipped"].is_null().all():
        table = table.drop("skipped")
    table = table.rename({"a": "a (Approach 3)", "approach2_a": "a (Approach 2)"})
    lines = []
    for name, spread in (section.get("spreads") or {}).items():
        label = {"a": "a (Approach 3)", "approach2_a": "a (Approach 2)"}.get(name, name)
        text = (
            f"{label}: from {spread['low']:.3g} to {spread['high']:.3g} across the choices "
            f"(spread {spread['spread']:.2g})"
        )
        width = spread.get("bootstrap_width")
        if width is None:
            lines.append(f"<li>{html.escape(text)}; no bootstrap interval to set it beside</li>")
        elif spread["spread"] > width:
            lines.append(
                f'<li class="warn">{html.escape(text)}, wider than its 95% bootstrap interval ({width:.2g})</li>'
            )
        else:
            lines.append(f"<li>{html.escape(text)}, within its 95% bootstrap interval's width ({width:.2g})</li>")
    warnings = "".join(f'<li class="warn">warning: {html.escape(w)}</li>' for w in section.get("warnings") or [])
    return (
        f'<section id="sensitivity">{head}<p>Approach 3 (and Approach 2\'s a) refitted under the other '
        "reasonable choices of the analysis: what N counts, the FLOP convention, the loss of the fit, the "
        'design without its smallest shape or budget (docs/methods.md, "Sensitivity panel"). Also '
        '<a href="sensitivity.csv">sensitivity.csv</a>.</p>'
        + table_html(table, warn_columns=("skipped",))
        + (f"<ul>{''.join(lines)}</ul>" if lines else "")
        + (f"<ul>{warnings}</ul>" if warnings else "")
        + "</section>"
    )
