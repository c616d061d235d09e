"""One number format for the page and the charts.

Counts (parameters, tokens) read in words a researcher says: 7.5M, 1.2B, 340K, 3.1T ("B" for a
billion, not SI's "G"). Compute reads as a power of ten, 3e17, as budgets are written in configs
and papers. Charts use the same formats through Vega expressions (AXIS_COUNT, AXIS_FLOPS).
"""

from __future__ import annotations

import math

SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))

# Vega label expressions for the same formats on a chart's axis (d3's SI "G" becomes "B", "k" "K").
AXIS_COUNT = "replace(replace(format(datum.value, '.2~s'), 'G', 'B'), 'k', 'K')"
AXIS_FLOPS = "replace(format(datum.value, '.1~e'), '+', '')"


def count(value, digits: int = 2) -> str:
    """A parameter or token count to ``digits`` significant digits with a word suffix: 7.47e6 -> '7.5M'."""
    if value is None or not math.isfinite(value):
        return "n/a"
    for scale, suffix in SUFFIXES:
        if abs(value) >= scale * 0.9995:
            return f"{_digits(value / scale, digits)}{suffix}"
    return _digits(value, digits)


def flops(value, digits: int = 2) -> str:
    """Compute as a power of ten: 1e15 -> '1e15', 3.16e17 -> '3.2e17'."""
    if value is None or not math.isfinite(value) or value <= 0:
        return "n/a"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _digits(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits without e-notation or trailing zeros."""
    if value == 0:
        return "0"
    places = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{places}f}".rstrip("0").rstrip(".") if places else f"{value:.0f}"
