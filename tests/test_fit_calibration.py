"""The calibration check: fitted floors in bits per byte against a known entropy rate."""

import math

import polars as pl
import pytest

from workflow.fit.calibration import calibration, calibration_lines


def test_floors_are_converted_through_the_measured_bytes_per_token():
    # Three runs on a validation set of 2.5 bytes per token: bits per byte = loss / ln 2 / 2.5.
    loss = [3.0, 2.5, 2.2]
    table = pl.DataFrame({"loss": loss, "bits_per_byte": [v / math.log(2) / 2.5 for v in loss]})
    fits = {
        "approach3": {"E": 1.5, "form": "L = E + A/N^alpha + B/D^beta", "unidentified": []},
        "bootstrap": {"intervals": {"approach3": {"E": [1.2, 1.8]}}},
        "kaplan": {"L_N": {"E": 2.0, "form": "L(N)", "E_identified": False}, "L_C": {"skipped": "too few"}},
    }
    true = 1.5 / math.log(2) / 2.5 / 1.1  # the fitted E is 10% above it
    section = calibration({"bits_per_byte": true, "source": "cal"}, table, fits)
    assert section["bytes_per_token"]["median"] == pytest.approx(2.5)
    assert section["true_nats_per_token"] == pytest.approx(1.5 / 1.1)
    a3 = section["floors"]["approach3"]
    assert a3["bits_per_byte"] == pytest.approx(1.5 / math.log(2) / 2.5) and a3["bias"] == pytest.approx(0.1)
    assert a3["interval_bits_per_byte"] == pytest.approx([1.2 / math.log(2) / 2.5, 1.8 / math.log(2) / 2.5])
    assert set(section["floors"]) == {"approach3", "kaplan.L_N"} and not section["floors"]["kaplan.L_N"]["identified"]
    lines = calibration_lines(section)
    assert lines[1].startswith("calibration: approach3 E = ") and lines[1].endswith("bias +10.0%")
    assert lines[2].endswith("(E not identified)")
    assert "skipped" in calibration({"bits_per_byte": 1.0}, table.drop("bits_per_byte"), fits)


def test_the_report_sets_each_floor_beside_the_true_rate():
    from workflow.report.page import calibration_paragraph

    assert calibration_paragraph({}) == ""
    section = {
        "source": "cal",
        "true_bits_per_byte": 1.28,
        "true_nats_per_token": 2.2,
        "bytes_per_token": {"median": 2.48, "min": 2.47, "max": 2.49},
        "floors": {"approach3": {"E": 2.3, "bits_per_byte": 1.34, "bias": 0.047, "identified": True}},
    }
    text = calibration_paragraph({"calibration": section})
    assert "entropy rate of 1.2800 bits per byte" in text and "<td>approach3</td><td>2.3</td><td>1.34</td>" in text
    assert "<td>+4.7%</td>" in text
