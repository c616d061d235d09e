"""The report's first screen, and the look-up table: what a researcher opens the report to learn.

Above the fold (1400 x 900): one sentence saying what the study is, the answer at the target budgets
(N_opt, D_opt, tokens per parameter and loss, each with its 95% interval and how far past the largest
run it reaches), the chart that decides (tokens per parameter against compute, charts/decision.py), and
the warnings ranked by whether they change a decision. Below the fold: the look-up table, a ladder of
budgets as in Hoffmann et al. 2022, Table 3, and the published exponents beside the study's.

The answer comes from the study's loss law (the first fitted approach with a law and an allocation,
Approach 3); the other approaches' allocations are drawn in the chart and tabled in the look-up table.
Every cell the browser test reads carries its number in full (``data-value``) beside the rounded text.
"""

from __future__ import annotations

import html

from workflow.fit.bootstrap import prediction_key
from workflow.fit.registry import BY_NAME
from workflow.fit.table_fit import shown
from workflow.report.chart_parts import axis_note, fitted, interval, precise_parts
from workflow.report.units import count, flops
from workflow.report.validity import extrapolation_factor, flag_limit, times

# The answer's quantities: (key, column heading, formatter of one number).
ANSWER = (
    ("n_opt", "N<sub>opt</sub> (parameters)", count),
    ("d_opt", "D<sub>opt</sub> (tokens)", count),
    ("tokens_per_parameter", "tokens per parameter", count),
    ("loss", "loss (nats/token)", None),
)


def primary(fits: dict):
    """(approach, section) whose predictions answer: the first fitted approach with a loss law and an
    allocation law; None when there is none."""
    found = fitted(fits, law=True, allocates=True)
    return found[0] if found else None


def cell(point: dict, quantity: str, flops_key: str, fits: dict, name: str) -> str:
    """One number of the answer with its interval, in the report's units, or why it is withheld."""
    if quantity not in point:
        return "<td></td>"
    value = point[quantity]
    ci = (point.get("intervals") or {}).get(quantity) or interval(fits, name, f"{flops_key}.{quantity}")
    fmt = dict((k, f) for k, _, f in ANSWER)[quantity]
    if fmt is None:
        text, bracket = precise_parts(value, ci)
    else:
        text, bracket = fmt(value), (f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else None)
    text = shown(point, quantity, text + (f" <small>{bracket}</small>" if bracket else ""))
    return f'<td data-quantity="{quantity}" data-value="{value!r}">{text}</td>'


def answer_rows(fits: dict) -> list[dict]:
    """The rows the first screen answers at: the largest compute trained (from the ladder), then each
    budget of fit.predict_flops."""
    largest = (fits.get("data") or {}).get("largest_flops")
    trained = [row for row in fits.get("ladder") or [] if largest and row["flops"] == largest]
    return trained + list(fits.get("predictions") or [])


def factor_text(fits: dict, row: dict) -> str:
    factor = extrapolation_factor(fits, row)
    if factor is None:
        return ""
    text = "largest run" if abs(factor - 1) < 1e-9 else f"{times(factor)} the largest run"
    return f'<span class="warn">{text}</span>' if factor > flag_limit(fits) else text


def answer_table(fits: dict, rows: list[dict], table_id: str) -> str:
    """The primary approach's allocation at each row's budget: budget, extrapolation factor and the
    quantities of ANSWER, each with its 95% interval."""
    found = primary(fits)
    if found is None:
        return '<p class="warn">No approach with a loss law was fitted: there is no answer to give.</p>'
    approach, _ = found
    head = "".join(f"<th>{title}</th>" for _, title, _ in ANSWER)
    body = []
    for row in rows:
        point = row.get(approach.name)
        if not isinstance(point, dict):
            continue
        key = prediction_key(row["flops"])
        cells = "".join(cell(point, q, key, fits, approach.name) for q, _, _ in ANSWER)
        body.append(
            f'<tr data-flops="{row["flops"]!r}"><td>{flops(row["flops"])}</td>'
            f"<td>{factor_text(fits, row)}</td>{cells}</tr>"
        )
    return (
        f'<table id="{table_id}"{" data-fold-check" if table_id == "answer" else ""}><thead>'
        f"<tr><th>compute C (FLOPs)</th><th>reach</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def listed(values: list, fmt=str) -> str:
    return ", ".join(fmt(v) for v in values)


def span(card: dict, key: str, fmt) -> str:
    """A card range as 'low to high' (one value when they are equal)."""
    r = card.get(key)
    if not r:
        return ""
    return fmt(r["min"]) if r["min"] == r["max"] else f"{fmt(r['min'])} to {fmt(r['max'])}"


def study_sentence(fits: dict) -> str:
    """What the study is, in one sentence with its numbers (from the study card, study_card.py)."""
    card = fits.get("study")
    if not card:
        return "This fits.json records no study card (a table fitted outside the pipeline)."
    families = listed(card.get("families") or ["language"], str.upper if card.get("families") else str)
    parts = [
        f"{families} models of {card['sizes']} sizes ({span(card, 'params', count)} parameters, counted "
        f"{html.escape(str(fits.get('parameter_count') or 'as the table does'))})"
    ]
    corpus, tokenizer = card.get("corpus"), card.get("tokenizer")
    if corpus:
        parts.append(
            f"trained on {html.escape(listed(corpus['sources']))} ({count(corpus['bytes'])} bytes, "
            f"{corpus['documents']:,} documents)"
        )
    text_of = []
    if tokenizer:
        text_of.append(f"{tokenizer.get('model_type', '').upper()} tokenizer of {tokenizer.get('vocab_size')} tokens")
    if card.get("context"):
        text_of.append(f"context {listed(card['context'])}")
    head = ", ".join(parts) + (f" ({', '.join(text_of)})" if text_of else "")
    runs = f"{card['runs']} runs" + (f" from {card['training_runs']} training runs" if "training_runs" in card else "")
    budgets = card.get("compute_budgets")
    compute = f"C from {span(card, 'flops', flops)} FLOPs ({html.escape(str(fits.get('flop_convention') or '?'))})"
    if budgets:
        compute += f" in IsoFLOP budgets {listed(budgets, flops)}"
    settings = []
    if card.get("schedules"):
        settings.append(f"{listed(card['schedules']).upper()} schedule")
    if card.get("lr"):
        settings.append(f"learning rate {span(card, 'lr', lambda v: f'{v:.3g}')}")
    if card.get("batch_tokens"):
        settings.append(f"batch {span(card, 'batch_tokens', count)} tokens")
    if card.get("seeds"):
        seeds = card["seeds"]
        settings.append(f"{'seed' if len(seeds) == 1 else 'seeds'} {listed(seeds)}")
    tokens = f"{span(card, 'tokens', count)} tokens each"
    return f"{head}: {runs}, {tokens}, {compute}" + (f"; {', '.join(settings)}." if settings else ".")


def ranked_warnings(fits: dict, every: list[str]) -> list[str]:
    """Every warning, those that change a decision first: the data's and the law's (``every``'s order,
    validity first), with each target budget past the extrapolation flag inserted after the law's own;
    the side-fit notes stay last."""
    flagged = [
        f"the budget C = {flops(row['flops'])} is {times(f)} the largest run, past fit.extrapolation_flag "
        f"({flag_limit(fits):g}x): its answer rests on the law holding that far"
        for row in fits.get("predictions") or []
        if (f := extrapolation_factor(fits, row)) and f > flag_limit(fits)
    ]
    law = [w for w in every if w.startswith(("data:", BY_NAME["lack_of_fit"].title, BY_NAME["approach3"].title))]
    rest = [w for w in every if w not in law]
    return law + flagged + rest


# How many warnings the first screen shows; the rest are listed in full below it.
WARNINGS_SHOWN = 3


def first_screen(fits: dict, warnings: list[str]) -> str:
    """The section above the fold: the study, the answer, the decision chart's container, the warnings
    that matter most (every one is listed in #warnings)."""
    found = primary(fits)
    source = f"From {html.escape(found[0].title)}'s law" if found else ""
    boot = fits.get("bootstrap") or {}
    brackets = "95% intervals in brackets" if boot.get("intervals") else "no bootstrap: no intervals"
    top = "".join(f'<li class="warn">{html.escape(w)}</li>' for w in warnings[:WARNINGS_SHOWN])
    more = f' <a href="#warnings">all {len(warnings)} warnings</a>' if len(warnings) > WARNINGS_SHOWN else ""
    warned = f"<h3>Warnings, most decisive first{more}</h3><ol>{top}</ol>" if warnings else "<h3>No warnings</h3>"
    return (
        '<section id="first-screen">'
        f'<p id="study-sentence" class="study" data-fold-check>{study_sentence(fits)}</p>'
        '<div class="answer"><div>'
        "<h2>How large, how many tokens, at your budget</h2>"
        + answer_table(fits, answer_rows(fits), "answer")
        + f'<p class="caption">{source}; {brackets}; reach: the budget over the largest compute trained; '
        f"{html.escape(axis_note(fits))}. "
        'Every approach\'s allocation is in the chart; more budgets in the <a href="#lookup">look-up table</a>.</p>'
        + warned
        + '</div><div class="decision-chart"><div id="decision" class="chart" data-fold-check></div></div>'
        + "</div></section>"
    )


def lookup_section(fits: dict) -> str:
    """The look-up table (Hoffmann et al. 2022, Table 3): the ladder of budgets with the primary
    approach's answer, and every other allocating approach's N_opt beside it."""
    ladder = fits.get("ladder") or []
    if not ladder:
        return ""
    table = answer_table(fits, ladder, "lookup-table")
    others = [(a, s) for a, s in fitted(fits, allocates=True) if primary(fits) and a.name != primary(fits)[0].name]
    rows = []
    for row in ladder:
        key = prediction_key(row["flops"])
        cells = "".join(
            cell(row[a.name], "n_opt", key, fits, a.name) if isinstance(row.get(a.name), dict) else "<td></td>"
            for a, _ in others
        )
        rows.append(f"<tr><td>{flops(row['flops'])}</td>{cells}</tr>")
    other = (
        "<p>N<sub>opt</sub> of the other approaches at the same budgets:</p><table><thead><tr><th>C (FLOPs)</th>"
        + "".join(f"<th>{html.escape(a.title)}</th>" for a, _ in others)
        + f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if others
        else ""
    )
    return (
        '<h2 id="lookup">Look-up table</h2><p>The compute-optimal allocation at budgets 1 and 3 times each '
        "power of ten from the smallest run to the largest target, and at the largest compute trained "
        "(lookup.csv holds every digit).</p>" + table + other
    )


def published_table(fits: dict) -> str:
    """The study's exponents beside the published ones (Kaplan, Hoffmann, Epoch AI's refit, Porian)."""
    refs = (fits.get("references") or {}).get("laws") or {}
    rows = []
    for a, s in fitted(fits, law=True):
        alpha, beta, a_value = (precise_parts(s.get(k), interval(fits, a.name, k))[0] for k in ("alpha", "beta", "a"))
        rows.append(
            f"<tr><td>this study, {html.escape(a.title)}</td><td>{alpha}</td><td>{beta}</td><td>{a_value}</td></tr>"
        )
    for label, law in refs.items():
        derived = law["beta"] / (law["alpha"] + law["beta"])
        rows.append(
            f"<tr><td>{html.escape(label)}</td><td>{law['alpha']:g}</td><td>{law['beta']:g}</td>"
            f"<td>{derived:.3g} (β/(α+β))</td></tr>"
        )
    for label, value in ((fits.get("references") or {}).get("allocation_exponents") or {}).items():
        rows.append(f"<tr><td>{html.escape(label)}</td><td></td><td></td><td>{value:g}</td></tr>")
    return (
        "<h3>Published exponents beside this study's</h3><table><thead><tr><th>source</th><th>α</th><th>β</th>"
        "<th>a (N<sub>opt</sub> ∝ C<sup>a</sup>)</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table><p>Porian et al. 2024 reproduce Kaplan et al.'s larger a and find it agrees with "
        "Hoffmann et al.'s once the head's FLOPs are counted, warmup is scaled with model size and the optimizer "
        "is tuned per size.</p>"
    )
