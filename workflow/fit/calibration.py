"""The calibration check: a fitted floor against a corpus's known entropy rate
(docs/calibration.md).

On a corpus whose entropy rate is computed exactly (``builtin: zipf_markov``), the irreducible loss E
of a fitted law should be that rate, seen through the tokenizer: E nats per token is
E / ln 2 / (bytes per token) bits per byte. Bytes per token are measured from the runs themselves:
every run records its validation loss in nats per token and in bits per byte, on the same
validation tokens, and loss / (bits per byte x ln 2) is the validation set's bytes per token.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl


def bytes_per_token(table: pl.DataFrame) -> dict:
    """The validation set's bytes per token, from each completed run's two losses (median and range)."""
    done = table.filter(pl.col("loss").is_not_null() & (pl.col("bits_per_byte") > 0))
    ratio = (done["loss"] / (done["bits_per_byte"] * math.log(2))).to_numpy()
    return {"median": float(np.median(ratio)), "min": float(ratio.min()), "max": float(ratio.max())}


def calibration(known: dict, table: pl.DataFrame, fits: dict) -> dict:
    """Each fitted floor (Approach 3's E, each Kaplan law's E) in nats per token and in bits per byte,
    with its bootstrap interval where there is one, against the true rate: bias = fitted / true - 1."""
    if "bits_per_byte" not in table.columns:
        return {"skipped": "the runs table has no bits_per_byte column to convert nats per token with"}
    true = float(known["bits_per_byte"])
    measured = bytes_per_token(table)

    def in_bits(nats: float) -> float:
        return nats / math.log(2) / measured["median"]

    floors = {}
    law = fits.get("approach3") or {}
    if "E" in law:
        ci = ((fits.get("bootstrap") or {}).get("intervals") or {}).get("approach3", {}).get("E")
        floors["approach3"] = {"form": law["form"], "identified": "E" not in law.get("unidentified", []), "E": law["E"]}
        if ci:
            floors["approach3"]["interval"] = ci
    for name, kaplan in (fits.get("kaplan") or {}).items():
        if isinstance(kaplan, dict) and "E" in kaplan:
            floors[f"kaplan.{name}"] = {"form": kaplan["form"], "identified": kaplan["E_identified"], "E": kaplan["E"]}
    for entry in floors.values():
        entry["bits_per_byte"] = in_bits(entry["E"])
        entry["bias"] = entry["bits_per_byte"] / true - 1
        if "interval" in entry:
            entry["interval_bits_per_byte"] = [in_bits(v) for v in entry["interval"]]
    return {
        "source": known.get("source"),
        "true_bits_per_byte": true,
        "true_nats_per_token": true * math.log(2) * measured["median"],
        "bytes_per_token": measured,
        "floors": floors,
    }


def calibration_lines(section: dict | None) -> list[str]:
    """The CLI's account: the true rate, then each fitted floor in bits per byte and its bias."""
    if not section:
        return []
    if "skipped" in section:
        return [f"calibration: skipped: {section['skipped']}"]
    lines = [
        f"calibration: true entropy rate {section['true_bits_per_byte']:.4f} bits/byte "
        f"({section['true_nats_per_token']:.4f} nats/token at {section['bytes_per_token']['median']:.4f} bytes/token)"
    ]
    for name, floor in section["floors"].items():
        ci = floor.get("interval_bits_per_byte")
        lines.append(
            f"calibration: {name} E = {floor['bits_per_byte']:.4f} bits/byte"
            + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
            + f", bias {100 * floor['bias']:+.1f}%"
            + ("" if floor["identified"] else " (E not identified)")
        )
    return lines
