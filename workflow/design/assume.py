"""What simulated studies assume: the law they are drawn from (``--assume``) and the noise of each point's
loss (``--noise``).

The law is a published one (``chinchilla``: Hoffmann et al. 2022's Approach 3; ``epoch``: Besiroglu et
al. 2024's refit), or a previous study's fit: its fits.json, the usual case (a pilot study). A published
law measured on MassiveText with models of 44M to 16B parameters gives losses nothing like a small
study's, so it is *scaled* to the study's loss range when one is given (``--loss-range LOW,HIGH``): its
exponents and the ratio A/B stay as published (so its compute-optimal allocation does too), A and B are
multiplied by one factor and E is set so that the law's losses over the design's points run exactly from
LOW to HIGH. The noise is a standard deviation in nats (a number), or a study's measured run-to-run noise
(its fits.json ``noise`` section, from several seeds), with the share of it a training run's points share.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workflow.fit.approach3 import predict_approach3
from workflow.fit.references import EPOCH_REFIT, HOFFMANN_PUBLISHED
from workflow.simulate import Design, Noise

PUBLISHED = {
    "chinchilla": (HOFFMANN_PUBLISHED, "Hoffmann et al. 2022's published Approach 3"),
    "epoch": (EPOCH_REFIT, "Besiroglu et al. 2024's refit of Hoffmann et al. 2022"),
}
LAW_KEYS = ("E", "A", "B", "alpha", "beta")


class AssumptionError(ValueError):
    """An --assume, --noise or --loss-range that cannot be used; the message is one line naming it."""


@dataclass(frozen=True)
class Assumed:
    """The law simulated studies are drawn from, where it came from, and the pilot's fits.json if any."""

    law: dict
    source: str
    fits: dict | None = None

    @property
    def a(self) -> float:
        return self.law["beta"] / (self.law["alpha"] + self.law["beta"])


def scale_law(law: dict, design: Design, loss_range: tuple[float, float]) -> dict:
    """The law with its exponents and A/B kept, A and B multiplied by one factor and E set so that its
    losses over the design's points run from ``loss_range[0]`` to ``loss_range[1]``."""
    low, high = loss_range
    reducible = predict_approach3(law, design.params, design.tokens) - law["E"]
    factor = (high - low) / (reducible.max() - reducible.min())
    floor = low - factor * reducible.min()
    if not floor > 0:
        raise AssumptionError(
            f"--loss-range {low:g},{high:g}: the published law's losses fall too steeply over this design to "
            f"span it with a positive floor E (it would be {floor:.3g}); give a narrower range or --assume FILE"
        )
    return {
        "E": float(floor),
        "A": law["A"] * factor,
        "B": law["B"] * factor,
        "alpha": law["alpha"],
        "beta": law["beta"],
    }


def read_fits(path: Path, flag: str) -> dict:
    """A fits.json of the current layout (``workflow.fit.schema.LAYOUT``); AssumptionError otherwise."""
    from workflow.fit.schema import LAYOUT

    try:
        fits = json.loads(Path(path).read_text())
    except OSError as e:
        raise AssumptionError(f"{flag} {path}: {e.strerror}") from None
    except ValueError:
        raise AssumptionError(f"{flag} {path}: not a JSON file (give chinchilla, epoch or a fits.json)") from None
    layout = fits.get("layout") if isinstance(fits, dict) else None
    if layout != LAYOUT:
        raise AssumptionError(
            f"{flag} {path}: fits.json layout {layout}, but this pipeline reads layout {LAYOUT}; "
            f"refit the study (python -m workflow.fit) to rewrite it"
        )
    return fits


def assumed_law(text: str, design: Design, loss_range: tuple[float, float] | None = None) -> Assumed:
    """``--assume``: a published law by name (scaled to ``loss_range`` when given) or a fits.json."""
    if text in PUBLISHED:
        law, name = PUBLISHED[text]
        if loss_range is None:
            return Assumed(dict(law), f"{name}, as published (no --loss-range: not scaled)")
        scaled = scale_law(law, design, loss_range)
        return Assumed(
            scaled,
            f"{name}, scaled to losses {loss_range[0]:g}..{loss_range[1]:g} over this design "
            f"(exponents and A/B kept: E {scaled['E']:.3g}, A {scaled['A']:.3g}, B {scaled['B']:.3g})",
        )
    path = Path(text)
    if not path.suffix == ".json" and not path.exists():
        raise AssumptionError(f"--assume {text}: neither a published law ({', '.join(PUBLISHED)}) nor a fits.json")
    fits = read_fits(path, "--assume")
    section = fits.get("approach3") or {}
    if "skipped" in section or any(k not in section for k in LAW_KEYS):
        raise AssumptionError(f"--assume {path}: its Approach 3 was not fitted ({section.get('skipped', 'no law')})")
    if loss_range is not None:
        raise AssumptionError("--loss-range scales a published law; a study's fits.json is its own scale")
    law = {k: float(section[k]) for k in LAW_KEYS}
    return Assumed(law, f"Approach 3 of {path}", fits)


def noise_of(text: str | None, correlation: float | None, assumed: Assumed) -> Noise:
    """``--noise``: a positive standard deviation in nats, or a fits.json whose ``noise`` section measured
    it; when not given, the pilot's (``--assume FILE``) measured noise. ``correlation``
    (``--noise-correlation``) overrides the measured share a run's points share (default 0 for a number)."""
    if text is None:
        if assumed.fits is None:
            raise AssumptionError("--noise: give the run-to-run noise in nats (e.g. 0.02) or a fits.json with seeds")
        return measured_noise(assumed.fits, "the --assume study", correlation)
    try:
        sd = float(text)
    except ValueError:
        return measured_noise(read_fits(Path(text), "--noise"), text, correlation)
    if not (math.isfinite(sd) and sd > 0):
        raise AssumptionError(f"--noise {text}: the noise's standard deviation must be a positive number of nats")
    return checked_noise(sd, correlation or 0.0, f"--noise {text}")


def measured_noise(fits: dict, where: str, correlation: float | None) -> Noise:
    section = fits.get("noise") or {}
    if "seed_sd" not in section:
        why = section.get("skipped", "no noise section")
        raise AssumptionError(f"--noise: {where} has no measured run-to-run noise ({why}); give --noise SD in nats")
    measured = Noise.measured(section, f"seed noise of {where} ({section.get('seeds')} seeds)")
    rho = measured.run_correlation if correlation is None else correlation
    return checked_noise(measured.sd, rho, measured.source)


def checked_noise(sd: float, correlation: float, source: str) -> Noise:
    try:
        return Noise(sd, correlation, source)
    except ValueError as e:
        raise AssumptionError(f"--noise: {e}") from None


def loss_range_of(text: str) -> tuple[float, float]:
    """``--loss-range LOW,HIGH``: two positive losses, LOW below HIGH."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise AssumptionError(f"--loss-range {text}: give two losses as LOW,HIGH (e.g. 2.5,4)") from None
    if not (0 < low < high and np.isfinite(high)):
        raise AssumptionError(f"--loss-range {text}: the losses must be positive and LOW below HIGH")
    return low, high
