"""Time of ``python -m workflow.plan --simulate`` on the default design: simulated studies drawn from the
default study's own law with its measured noise, each fitted with Approach 3's batched estimator and 100
bootstrap resamples over training runs, and Approach 2 (workflow/design/simulate_design.py).

    python bench/design_simulate.py [--studies 200] [--samples 100] [--out FILE.json]

Prints the wall time and the CPU time of the simulation (the CPU time says what the work costs where
the machine is shared), and the figures; the issue's goal is 200 studies in at most 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workflow.config import load_config_files  # noqa: E402
from workflow.design.simulate_design import simulate  # noqa: E402
from workflow.simulate import Noise, design_of_config  # noqa: E402

# The default study's law and noise (docs/experiments/default-study.md, "One compute axis, honest
# intervals, and three seeds"): the fit of its fits.json and the three-seed study's seed noise.
DEFAULT_LAW = {"E": 1.9255, "A": 328.66, "B": 264.40, "alpha": 0.6359, "beta": 0.4429}
DEFAULT_NOISE = Noise(0.0233, 0.47, "default study, 3 seeds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    design = design_of_config(load_config_files([REPO / "config" / "config.yaml"]))
    result = simulate(design, DEFAULT_LAW, DEFAULT_NOISE, studies=args.studies, samples=args.samples, progress=False)
    row = {
        "studies": args.studies,
        "samples": args.samples,
        "seconds": round(result["seconds"], 1),
        "cpu_seconds": round(result["cpu_seconds"], 1),
        "a_width": round(result["width"]["a"], 3),
        "E_identified": result["E_identified"],
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
    }
    print("| studies | resamples | wall (s) | CPU (s) | a's 95% width | E identified |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {row['studies']} | {row['samples']} | {row['seconds']} | {row['cpu_seconds']} | {row['a_width']} | "
        f"{row['E_identified']:.2f} |"
    )
    if args.out:
        args.out.write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
