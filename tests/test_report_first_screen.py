"""The report's first screen answers "how large, how many tokens, at my budget", with intervals, and the
look-up table gives the same at a ladder of budgets."""

import copy
import html
import re
import struct

import polars as pl
import pytest
from helpers import REPO

from tests.browser import load
from tests.test_report import report_dir, study  # noqa: F401 (the synthetic study and its report, as fixtures)
from workflow.fit.table_fit import ladder_budgets
from workflow.report.first_screen import answer_rows, answer_table, ranked_warnings, study_sentence
from workflow.report.page import every_warning, lookup_table
from workflow.report.screenshot import main as screenshot_main
from workflow.report.units import count, flops

CELL = re.compile(r'<td data-quantity="(\w+)" data-value="([^"]+)">(.*?)</td>')


def answer_cells(page: str) -> list[list[tuple[str, float, str]]]:
    """(quantity, full value, shown text) of each cell of each row of the answer table in ``page``."""
    table = page[page.index('<table id="answer"') :]
    table = table[: table.index("</table>")]
    return [
        [(q, float(v), html.unescape(re.sub(r"<[^>]+>", "", t))) for q, v, t in CELL.findall(row)]
        for row in table.split("<tr data-flops=")[1:]
    ]


def test_ladder_runs_from_the_smallest_run_to_the_largest_target_in_steps_of_1_and_3():
    ladder = ladder_budgets(2.9e10, 1e17)
    assert ladder == [m * 10.0**e for e in range(10, 17) for m in (1, 3)] + [1e17]
    assert ladder_budgets(1e15, 1e15) == [1e15]
    assert ladder_budgets(5e14, 2e15) == [3e14, 1e15, 3e15]


def test_answer_gives_the_largest_run_and_every_target_with_intervals(study):  # noqa: F811
    _, _, fits = study
    rows = answer_rows(fits)
    assert [r["flops"] for r in rows] == [fits["data"]["largest_flops"], *(p["flops"] for p in fits["predictions"])]
    cells = answer_cells(answer_table(fits, rows, "answer"))
    assert len(cells) == len(rows)
    for row, shown in zip(rows, cells):
        point = row["approach3"]
        for quantity, value, text in shown:
            assert value == pytest.approx(point[quantity], rel=1e-12)
            low, high = point["intervals"][quantity]
            assert low <= value <= high
            if quantity in ("n_opt", "d_opt"):
                assert text == f"{count(value)} [{count(low)}, {count(high)}]"
        assert {q for q, _, _ in shown} == {"n_opt", "d_opt", "tokens_per_parameter", "loss"}


def test_an_unidentified_quantity_is_said_not_shown(study):  # noqa: F811
    _, _, fits = study
    changed = copy.deepcopy(fits)
    for row in changed["predictions"]:
        row["approach3"]["withheld"] = {"loss": ["E"]}
    cells = answer_cells(answer_table(changed, answer_rows(changed), "answer"))
    assert [text for q, _, text in cells[-1] if q == "loss"] == ["not identified (E)"]


def test_study_sentence_says_what_the_study_is_with_its_numbers(study):  # noqa: F811
    _, _, fits = study
    card = fits["study"]
    sentence = study_sentence(fits)
    assert f"{card['sizes']} sizes" in sentence and f"{card['runs']} runs" in sentence
    assert f"{count(card['params']['min'])} to {count(card['params']['max'])} parameters" in sentence
    assert f"{flops(card['flops']['min'])} to {flops(card['flops']['max'])} FLOPs (6N)" in sentence
    with_corpus = copy.deepcopy(fits)
    with_corpus["study"]["corpus"] = {"sources": ["stdlib"], "bytes": 31_512_085, "documents": 1786}
    with_corpus["study"]["tokenizer"] = {"model_type": "bpe", "vocab_size": 512}
    assert "trained on stdlib (32M bytes, 1,786 documents)" in study_sentence(with_corpus)
    assert "BPE tokenizer of 512 tokens" in study_sentence(with_corpus)


def test_warnings_rank_the_data_and_the_law_first_and_side_notes_last(study):  # noqa: F811
    _, _, fits = study
    changed = copy.deepcopy(fits)
    changed["approach1"]["warnings"] = ["a warning of Approach 1"]
    changed["approach3"]["warnings"] = ["a warning of the law"]
    changed["data"]["warnings"] = ["a warning about the table"]
    changed["kaplan"]["L_N"]["E_note"] = "E is not identified"
    changed["extrapolation_flag"] = 10.0
    ranked = ranked_warnings(changed, every_warning(changed))
    assert ranked[0] == "data: a warning about the table"
    flagged = [i for i, w in enumerate(ranked) if "past fit.extrapolation_flag" in w]
    assert flagged and ranked.index("Approach 3: a warning of the law") < flagged[0]
    assert flagged[-1] < ranked.index("Approach 1: a warning of Approach 1")
    assert ranked[-1].startswith("Kaplan laws, L_N")


def test_lookup_csv_has_every_ladder_budget_with_intervals(study, report_dir):  # noqa: F811
    _, _, fits = study
    written = pl.read_csv(report_dir / "lookup.csv")
    expected = lookup_table(fits)
    assert written.columns == expected.columns and written.height == expected.height
    law = written.filter(pl.col("approach") == "Approach 3")
    assert law["flops"].to_list() == sorted({r["flops"] for r in fits["ladder"] + fits["predictions"]})
    assert (law["n_opt_ci95_low"] <= law["n_opt"]).all() and (law["n_opt"] <= law["n_opt_ci95_high"]).all()
    page = (report_dir / "index.html").read_text()
    assert '<h2 id="lookup">' in page and '<table id="lookup-table"' in page


@pytest.mark.browser
def test_first_screen_at_1400x900_answers_with_the_values_of_fits_json(study, report_dir):  # noqa: F811
    """In the browser at 1400 x 900: the study sentence, the answer and the decision chart lie above the
    fold, and the answer's values read from the page are fits.json's."""
    _, _, fits = study
    page = load(report_dir / "index.html", window=(1400, 900))
    assert page.body().get("data-report-status") == "done" and page.body().get("data-errors") == "[]"
    folded = {attrs["id"]: attrs.get("data-above-fold") for attrs in page.with_attribute("data-fold-check")}
    assert folded == {"study-sentence": "yes", "answer": "yes", "decision": "yes"}, folded
    assert "data-rendered" in next(a for a in page.with_attribute("id") if a["id"] == "decision")
    cells = answer_cells(page.dom)
    rows = answer_rows(fits)
    assert len(cells) == len(rows) == 1 + len(fits["predictions"])
    for row, shown in zip(rows, cells):
        for quantity, value, text in shown:
            assert value == pytest.approx(row["approach3"][quantity], rel=1e-12)
            assert "[" in text  # every number with its interval


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.browser
def test_screenshot_of_the_first_screen_is_regenerated(report_dir, tmp_path):  # noqa: F811
    """The command that made docs/report-first-screen.png makes a 1400 x 900 PNG of a report."""
    out = tmp_path / "first-screen.png"
    assert screenshot_main([str(report_dir / "index.html"), str(out)]) == 0
    assert png_size(out) == (1400, 900) and out.stat().st_size > 50_000
    assert png_size(REPO / "docs" / "report-first-screen.png") == (1400, 900)
    assert screenshot_main([str(tmp_path / "missing.html"), str(tmp_path / "x.png")]) == 1
