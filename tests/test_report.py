import re
import xml.etree.ElementTree as ET

import numpy as np
import polars as pl
import pytest

from workflow.fit import fit_table, predict_approach3
from workflow.report import CHARTS, build_report


@pytest.fixture(scope="module")
def study():
    rows = []
    for i, n in enumerate([1e4, 3e4, 1e5, 3e5]):
        for d in [5e5, 1e6, 2e6]:
            loss = float(predict_approach3({"E": 1.0, "A": 30.0, "B": 200.0, "alpha": 0.3, "beta": 0.3}, n, d))
            rows.append({"run_id": f"r{i}_{int(d)}", "status": "completed", "params": n, "tokens": d,
                         "flops": 6 * n * d, "loss": loss, "bits_per_byte": loss / 1.3, "train_loss": loss,
                         "tokens_per_s": 1e4, "device": "cpu", "kernels": "torch"})
    rows[0]["status"], rows[0]["loss"] = "diverged", None
    runs = pl.DataFrame(rows)
    curves = pl.concat([
        pl.DataFrame({"run_id": r["run_id"], "params": r["params"], "step": np.arange(1, 11),
                      "tokens": np.linspace(r["tokens"] / 10, r["tokens"], 10),
                      "train_loss": np.linspace(6.0, r["loss"] or 6.0, 10)})
        for r in rows
    ])
    fits = fit_table(runs, metadata={"flop_convention": "6N", "parameter_count": "non_embedding"})
    return runs, curves, fits


def test_report_files_are_self_contained(study, tmp_path):
    runs, curves, fits = study
    written = build_report(runs, curves, fits, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        [f"{c}.{ext}" for c in CHARTS for ext in ("html", "svg")] + ["index.html"])
    for path in tmp_path.glob("*.html"):
        text = path.read_text()
        # Nothing is loaded from the network: no external scripts or stylesheets.
        assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=\"http", text)
        assert "vegaEmbed" in text
    for chart in CHARTS:
        root = ET.parse(tmp_path / f"{chart}.svg").getroot()
        assert root.tag.endswith("svg")
    index = (tmp_path / "index.html").read_text()
    assert f"{fits['approach3']['alpha']:.4f}" in index and "'6N' FLOPs" in index
    assert "left out of the fit as not completed (diverged): r0_500000" in index
    body = index[index.index("<h2>Fitted parameters"):]
    assert body.count("<tr>") == 1 + 9 + 1 + 12  # headers and rows of both tables


def test_svg_carries_convention(study, tmp_path):
    runs, curves, fits = study
    build_report(runs, curves, fits, tmp_path)
    assert "non_embedding parameters" in (tmp_path / "loss_vs_compute.svg").read_text()
