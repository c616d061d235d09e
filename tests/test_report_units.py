"""The report's one number format: counts in words, compute as a power of ten."""

import pytest

from workflow.report.units import count, flops


@pytest.mark.parametrize(
    "value, text",
    [
        (7.47e6, "7.5M"),
        (1.2e9, "1.2B"),
        (340000, "340K"),
        (999, "999"),
        (3.1e12, "3.1T"),
        (99960, "100K"),
        (0.5, "0.5"),
    ],
)
def test_counts_read_in_words(value, text):
    assert count(value) == text


@pytest.mark.parametrize("value, text", [(1e15, "1e15"), (3.16e17, "3.2e17"), (8e12, "8e12")])
def test_compute_reads_as_a_power_of_ten(value, text):
    assert flops(value) == text


def test_missing_values_say_so():
    assert count(float("nan")) == "n/a" and flops(None) == "n/a" and flops(-1.0) == "n/a"
