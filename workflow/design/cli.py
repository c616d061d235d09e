"""The plan's design flags: ``--simulate``, ``--propose`` and what they assume (docs/slurm.md, "Design
before spending").

    python -m workflow.plan --configfile F --simulate --assume pilot/fits.json [--noise 0.02] [--out F.json]
    python -m workflow.plan --configfile F --propose --gpu-hours 160 --target a-width --assume epoch
                            --loss-range 2.5,4 --noise 0.02 --write-overlay proposed.yaml

``add_arguments`` adds the flags to the plan's parser (argparse only: the plan's normal path stays light);
``prepare`` reads the assumption, ``run`` simulates or proposes and prints. Errors are one line
(``DesignError``).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

E_IDENTIFIED_WARNING = 0.5  # the plan warns when fewer simulated studies than this identify E


class DesignError(ValueError):
    """A design flag that cannot be used; one line."""


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    design = parser.add_argument_group("design before spending (docs/methods.md, 'Designing a study')")
    design.add_argument(
        "--simulate", action="store_true", help="simulate studies of this design and report their precision"
    )
    design.add_argument("--propose", action="store_true", help="search designs at --gpu-hours for --target")
    design.add_argument(
        "--assume",
        metavar="LAW",
        help="the law studies are drawn from: chinchilla, epoch (published; scaled with --loss-range) or a "
        "previous study's fits.json (a pilot); also the law of the plan's optimum checks",
    )
    design.add_argument(
        "--noise",
        metavar="SD",
        help="run-to-run noise of a point's loss: a positive sd in nats, or a fits.json with seeds; default: the "
        "--assume study's measured noise",
    )
    design.add_argument(
        "--noise-correlation",
        type=float,
        metavar="RHO",
        help="share of the noise a training run's points share (default: measured, or 0 for a number)",
    )
    design.add_argument(
        "--loss-range", metavar="LOW,HIGH", help="scale a published law to these losses over the design"
    )
    design.add_argument("--studies", type=positive(int), default=200, help="simulated studies (default 200)")
    design.add_argument(
        "--samples", type=positive(int), default=100, help="bootstrap resamples per study (default 100)"
    )
    design.add_argument("--seed", type=int, default=0, help="seed of the simulation (default 0)")
    design.add_argument(
        "--multiplier",
        action="store_true",
        help="with --simulate: the smallest compute multiplier two arms of this design detect with 80%% power",
    )
    design.add_argument("--out", type=Path, metavar="FILE", help="write the figures as JSON")
    design.add_argument("--gpu-hours", type=positive(float), metavar="H", help="--propose: the device-hour budget")
    design.add_argument(
        "--target", choices=("a-width", "multiplier"), default="a-width", help="--propose: what to minimise"
    )
    design.add_argument(
        "--write-overlay", type=Path, metavar="FILE", help="--propose: write the chosen design's overlay"
    )


@dataclass
class Setup:
    """What the design flags assume: the law, the noise (None without --simulate/--propose) and the design."""

    assumed: object
    noise: object
    design: object
    # A study with arms: each arm's own design, the baseline's first (the study's design is the baseline's).
    arms: dict | None = None


def prepare(args: argparse.Namespace, config: dict) -> Setup:
    """The assumption the flags give; DesignError (one line) for a flag that cannot be used."""
    from workflow.design.assume import AssumptionError, assumed_law, loss_range_of, noise_of
    from workflow.simulate import design_of_config

    if (args.simulate or args.propose) and not args.assume:
        raise DesignError("--simulate and --propose need --assume: chinchilla, epoch or a pilot study's fits.json")
    if args.propose and args.gpu_hours is None:
        raise DesignError("--propose needs --gpu-hours H, the device-hours to spend")
    arms = None
    if config.get("arms"):
        from workflow.arms import arm_configs

        # Each arm trains its own sizes (an LSTM's widths are not a GPT's): simulate each arm's design, and
        # the study's precision as the baseline's.
        by_arm = {name: design_of_config(arm) for name, arm in arm_configs(config).items()}
        baseline = config["arms"]["baseline"]
        arms = {baseline: by_arm[baseline], **{k: v for k, v in by_arm.items() if k != baseline}}
        design = arms[baseline]
    else:
        design = design_of_config(config)
    try:
        loss_range = loss_range_of(args.loss_range) if args.loss_range else None
        assumed = assumed_law(args.assume, design, loss_range)
        noise = noise_of(args.noise, args.noise_correlation, assumed) if (args.simulate or args.propose) else None
    except AssumptionError as e:
        raise DesignError(str(e)) from None
    return Setup(assumed, noise, design, arms)


def law_text(law: dict) -> str:
    a = law["beta"] / (law["alpha"] + law["beta"])
    return (
        f"E {law['E']:.4g}, A {law['A']:.4g}, B {law['B']:.4g}, alpha {law['alpha']:.3g}, beta {law['beta']:.3g} "
        f"(a {a:.3f})"
    )


def noise_text(noise) -> str:
    return f"sd {noise.sd:.3g} nats, {100 * noise.run_correlation:.0f}% of it shared by a run's points ({noise.source})"


def signed(value) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def simulation_lines(result: dict, device_hours: float, multiplier: dict | None) -> list[str]:
    """The simulation's table and lines, beside the plan's device-hours."""
    truth, width, cover, bias = result["truth"], result["width"], result["coverage"], result["bias"]["approach3"]
    lines = [
        f"{'quantity':<9} {'truth':>8} {'95% width':>10} {'coverage':>9} {'bias (A3)':>10}",
    ]
    for q in ("a", "alpha", "beta", "E"):
        lines.append(f"{q:<9} {truth[q]:>8.4g} {width[q]:>10.3g} {cover[q]:>9.2f} {signed(bias[q]):>10}")
    two = result["bias"]["approach2"]
    free = result["noise_free_bias"]
    lines += [
        f"E identified (Approach 3's rule: not marked unidentified): {100 * result['E_identified']:.0f}% of studies",
        f"bias of a: Approach 3 {signed(bias['a'])} (noise-free {signed(free['approach3']['a'])}); Approach 2 "
        f"{signed(two['a'])} (noise-free {signed(free['approach2']['a'])}; fitted in {100 * two['fitted']:.0f}% of "
        f"studies)",
    ]
    if multiplier is not None:
        found = multiplier["multiplier"]
        tried = ", ".join(f"x{m}: {p:.2f}" for m, p in multiplier["tried"].items())
        lines.append(
            f"smallest compute multiplier two arms of this design detect with 80% power: "
            f"{'x' + format(found, 'g') if found else 'none up to x10'} (power tried: {tried}; "
            f"{multiplier['studies']} studies each)"
        )
    lines.append(
        f"for {device_hours:.1f} device-hours (the plan's total); {result['studies']} studies in "
        f"{result['seconds']:.0f} s (CPU {result['cpu_seconds']:.0f} s)"
    )
    return lines


def run(args: argparse.Namespace, config: dict, setup: Setup, device_hours: float, cost) -> int:
    """--simulate and --propose after the plan's table; 0, or 1 with one line on stderr."""
    import sys

    out: dict = {"device_hours": device_hours, "assumed": {"law": setup.assumed.law, "source": setup.assumed.source}}
    if args.simulate:
        out["simulation"] = simulate_report(args, config, setup, device_hours)
    if args.propose:
        from workflow.design.propose import ProposeError

        try:
            out["proposal"] = propose_report(args, config, setup, cost)
        except ProposeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    if args.out:
        args.out.write_text(json.dumps(out, indent=1, default=float) + "\n")
        print(f"figures written to {args.out}")
    return 0


def simulate_report(args, config: dict, setup: Setup, device_hours: float) -> dict:
    import sys

    from workflow.design.simulate_design import simulate, smallest_multiplier

    noise, law = setup.noise, setup.assumed.law
    print(f"\nsimulated studies of this design ({len(setup.design.params)} points, "
          f"{len(set(setup.design.units.tolist()))} training runs):")  # fmt: skip
    print(f"  law: {setup.assumed.source}: {law_text(law)}")
    print(f"  noise: {noise_text(noise)}")
    print(
        f"  fitted as the pipeline fits: Approach 3 from Hoffmann's grid, 95% intervals from {args.samples} "
        f"bootstrap resamples of training runs (batched, workflow.simulate.fit_study); Approach 2's parabolas"
    )
    result = simulate(
        setup.design, law, noise, studies=args.studies, samples=args.samples, seed=args.seed, progress=True
    )
    multiplier = None
    # A study with arms compares the baseline's design with the first other arm's (each with its own
    # sizes); without arms, --multiplier asks what two arms of this one design would detect.
    if args.multiplier or setup.arms:
        designs = list(setup.arms.values())[:2] if setup.arms else [setup.design] * 2
        multiplier = smallest_multiplier(
            designs, law, noise, studies=min(args.studies, 50), samples=args.samples, seed=args.seed
        )
        result["multiplier"] = multiplier
    print("\n".join(simulation_lines(result, device_hours, multiplier)), flush=True)
    if result["E_identified"] < E_IDENTIFIED_WARNING:
        print(
            f"warning: E is identified in only {100 * result['E_identified']:.0f}% of simulated studies of this "
            f"design (under {100 * E_IDENTIFIED_WARNING:.0f}%): add larger sizes or token budgets, or fix E (fit.fix)",
            file=sys.stderr,
        )
    return result


def propose_report(args, config: dict, setup: Setup, cost) -> dict:
    import yaml

    from workflow.design.propose import propose

    found = propose(
        config,
        setup.assumed.law,
        setup.noise,
        args.gpu_hours,
        args.target,
        cost,
        studies=min(args.studies, 40),
        samples=min(args.samples, 100),
        seed=args.seed,
    )
    figure = "a's 95% width" if args.target == "a-width" else "multiplier at 80% power"
    arms = found["arms"]
    print(
        f"\nproposed designs for {args.gpu_hours:g} device-hours{' (two arms)' if arms == 2 else ''}, target "
        f"{args.target}: {found['designs_affordable']} of {found['designs_costed']} designs of the family "
        f"affordable; the best {len(found['finalists']) - 1} by the linearised screen and the config's own, "
        f"simulated ({min(args.studies, 40)} studies each):"
    )
    print(f"  {'device-h':>9} {'points':>6} {'runs':>5} {'screen':>7} {figure:>24}  design")
    rows = []
    for c in sorted(found["finalists"], key=lambda c: c.simulated["figure"]):
        mark = "*" if c is found["chosen"] else " "
        value = c.simulated["figure"]
        text = (
            "none up to x10" if math.isinf(value) else (f"{value:.3g}" if args.target == "a-width" else f"x{value:g}")
        )
        screen = c.screen["a_width"] if args.target == "a-width" else c.screen["multiplier"]
        runs = len(set(c.design.units.tolist()))
        hours, points = c.device_hours * arms, len(c.design.params)
        print(f"{mark} {hours:>9.1f} {points:>6} {runs:>5} {screen:>7.3g} {text:>24}  {c.label}")
        rows.append(
            {
                "label": c.label,
                "device_hours": c.device_hours * arms,
                "points": len(c.design.params),
                "training_runs": runs,
                "screen": c.screen,
                "figure": None if math.isinf(value) else value,
                "overlay": c.overlay,
                "chosen": c is found["chosen"],
            }
        )
    if args.write_overlay:
        header = (
            f"# Proposed by python -m workflow.plan --propose: {found['chosen'].label}.\n"
            f"# {found['chosen'].device_hours * arms:.1f} device-hours; simulated {figure} "
            f"{found['chosen'].simulated['figure']:.3g}. Give it after the config it was proposed for.\n"
        )
        args.write_overlay.write_text(header + yaml.safe_dump(found["chosen"].overlay, sort_keys=False))
        print(f"overlay written to {args.write_overlay}")
    return {"target": args.target, "gpu_hours": args.gpu_hours, "designs": rows}
