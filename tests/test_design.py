"""Design before spending (workflow/design): what simulated studies assume, the figures they give, the
plan's checks against the assumed optimum, the compute multiplier between arms, and the plan's
--simulate and --propose flags with their one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO

from workflow.config import check_config, load_config_files
from workflow.design.assume import AssumptionError, assumed_law, noise_of, scale_law
from workflow.design.checks import Point, allocation_of, bracket_lines, far_points, optimum
from workflow.design.simulate_design import arm_law, frontier_of, log_multiplier, simulate
from workflow.fit.approach3 import predict_approach3
from workflow.fit.references import HOFFMANN_PUBLISHED
from workflow.fit.schema import LAYOUT
from workflow.simulate import Design, Noise, design_of_config

# The default study's own law (docs/experiments/default-study.md), as tests/test_simulate.py draws from.
DEFAULT_LAW = {"E": 1.9255, "A": 328.66, "B": 264.40, "alpha": 0.6359, "beta": 0.4429}


def pilot_fits(tmp_path: Path, layout: int = LAYOUT, noise: dict | None = None) -> Path:
    """A pilot study's fits.json as the design flags read it: its layout, Approach 3's law, its noise."""
    path = tmp_path / "fits.json"
    fits = {"layout": layout, "approach3": dict(DEFAULT_LAW), "noise": noise or {"skipped": "one seed"}}
    path.write_text(json.dumps(fits))
    return path


def plan(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workflow.plan", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def default_design() -> Design:
    return design_of_config(load_config_files([REPO / "config" / "config.yaml"]))


def isoflop_design(law: dict, budgets, offsets) -> Design:
    """Seven sizes a factor of 2 apart at each budget, centred on ``offset`` times the law's N_opt there;
    each point its own training run."""
    allocation = allocation_of(law)
    params, tokens, points = [], [], []
    for budget, offset in zip(budgets, offsets):
        centre = optimum(allocation, budget)[0] * offset
        for n in centre * 2.0 ** np.arange(-3, 4):
            params.append(n)
            tokens.append(budget / (6 * n))
            points.append(budget)
    params, tokens = np.array(params), np.array(tokens)
    return Design(params, tokens, 6 * params * tokens, np.arange(len(params)), np.array(points))


# --------------------------------------------------------------------------- assumptions


def test_a_published_law_is_scaled_to_the_loss_range_keeping_its_exponents_and_allocation():
    design = default_design()
    scaled = scale_law(HOFFMANN_PUBLISHED, design, (2.5, 4.0))
    losses = predict_approach3(scaled, design.params, design.tokens)
    assert losses.min() == pytest.approx(2.5) and losses.max() == pytest.approx(4.0)
    assert (scaled["alpha"], scaled["beta"]) == (HOFFMANN_PUBLISHED["alpha"], HOFFMANN_PUBLISHED["beta"])
    assert scaled["A"] / scaled["B"] == pytest.approx(HOFFMANN_PUBLISHED["A"] / HOFFMANN_PUBLISHED["B"])
    assert allocation_of(scaled)["k_n"] == pytest.approx(allocation_of(HOFFMANN_PUBLISHED)["k_n"])
    with pytest.raises(AssumptionError, match="positive floor"):
        scale_law(HOFFMANN_PUBLISHED, design, (0.01, 40.0))


def test_a_pilots_fits_json_gives_its_law_and_measured_noise(tmp_path):
    measured = {"seed_sd": 0.0233, "within_run_correlation": 0.47, "seeds": 3}
    assumed = assumed_law(str(pilot_fits(tmp_path, noise=measured)), default_design())
    assert assumed.law == DEFAULT_LAW and assumed.a == pytest.approx(0.4106, abs=1e-4)
    noise = noise_of(None, None, assumed)
    assert (noise.sd, noise.run_correlation) == (0.0233, 0.47)
    assert noise_of("0.05", None, assumed).run_correlation == 0.0  # a number: no shared part unless given
    (tmp_path / "one_seed").mkdir()
    with pytest.raises(AssumptionError, match="no measured run-to-run noise"):
        noise_of(None, None, assumed_law(str(pilot_fits(tmp_path / "one_seed")), default_design()))


# --------------------------------------------------------------------------- simulated figures


def test_approach2s_off_centre_bias_is_reported_while_approach3_stays_unbiased():
    """Sizes drifting toward the optimum as the budget grows (centred at 1/8 of the optimal N at the
    smallest budget, at it at the largest), on the default study's law: Approach 2's a is biased, on
    noise-free losses and in simulated studies; Approach 3's stays within 0.01. The same sizes centred at
    every budget: Approach 2 is unbiased too (an offset the same at every budget would move k_n only)."""
    budgets = [1e11, 1e12, 1e13, 1e14]  # the default study's scale, where its law was measured
    noise = Noise(0.005)
    design = isoflop_design(DEFAULT_LAW, budgets, [1 / 8, 1 / 4, 1 / 2, 1])
    off = simulate(design, DEFAULT_LAW, noise, studies=12, samples=30, progress=False)
    assert off["noise_free_bias"]["approach2"]["a"] > 0.05
    assert off["bias"]["approach2"]["a"] > 0.05 and off["bias"]["approach2"]["fitted"] == 1
    assert abs(off["bias"]["approach3"]["a"]) < 0.01 and abs(off["noise_free_bias"]["approach3"]["a"]) < 1e-6
    centred = isoflop_design(DEFAULT_LAW, budgets, [1, 1, 1, 1])
    result = simulate(centred, DEFAULT_LAW, noise, studies=2, samples=10, progress=False)
    assert abs(result["noise_free_bias"]["approach2"]["a"]) < 0.002


def test_the_figures_of_a_simulation_of_the_default_design():
    result = simulate(default_design(), DEFAULT_LAW, Noise(0.0233, 0.47), studies=6, samples=40, progress=False)
    assert set(result["width"]) == {"a", "alpha", "beta", "E"}
    assert 0.1 < result["width"]["a"] < 1.0 and result["width"]["beta"] < result["width"]["alpha"]
    assert 0 <= result["E_identified"] <= 1 and result["training_runs"] == 6 and result["points"] == 33
    assert result["cpu_seconds"] > 0


def test_e_is_unidentified_where_the_design_shows_no_levelling_off():
    """Points far from the floor (a law whose E is 1% of the loss) with noise: Approach 3's rule marks E
    unidentified in most simulated studies."""
    law = {"E": 0.05, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28}
    design = isoflop_design(law, [1e18, 1e19, 1e20], [1, 1, 1])
    result = simulate(design, law, Noise(0.05), studies=8, samples=30, progress=False)
    assert result["E_identified"] < 0.5


def test_a_compute_multiplier_is_the_compute_the_baseline_needs_for_the_arms_loss():
    law = DEFAULT_LAW
    theta = np.array([[np.log(law["A"]), np.log(law["B"]), np.log(law["E"]), law["alpha"], law["beta"]]])
    arm = arm_law(law, 2.0)
    arm_theta = np.array([[np.log(arm["A"]), np.log(arm["B"]), np.log(arm["E"]), arm["alpha"], arm["beta"]]])
    for flops in (1e11, 1e15):
        assert log_multiplier(theta, arm_theta, flops, 6.0)[0] == pytest.approx(np.log(2.0))
    # The frontier's loss is the law at its eq.-4 allocation.
    e, r, gamma = frontier_of(theta)
    allocation = allocation_of(law)
    n_opt, ratio = optimum(allocation, 1e13)
    assert e[0] + r[0] * (1e13 / 6) ** -gamma[0] == pytest.approx(predict_approach3(law, n_opt, n_opt * ratio))


# --------------------------------------------------------------------------- checks


def test_budgets_are_bracketed_against_the_assumed_optimum_and_far_points_named():
    allocation = allocation_of(DEFAULT_LAW)
    opt = optimum(allocation, 4e11)[0]
    lines = bracket_lines({4e11: [opt / 2, opt * 2], 8e11: [opt * 2, opt * 4]}, DEFAULT_LAW, "the assumed law")
    assert "C=4e11: sizes" in lines[1] and "bracket N_opt" in lines[1] and "do not" not in lines[1]
    assert "do not bracket: all sizes" in lines[2]
    best = optimum(allocation, 4e11)[1]
    points = []
    for name, times in (("near", 29), ("far", 31), ("small", 1 / 29), ("large", 1 / 31)):
        n = np.sqrt(4e11 / (6 * best * times))  # at C = 6 N D = 4e11, D/N = times x the optimum's
        points.append(Point(name, "isoflop", n, n * best * times, 4e11, 4e11))
    flagged = [p.run_id for p, _, _ in far_points(points, DEFAULT_LAW)]
    assert flagged == ["far", "large"]  # more than 30x above or below the optimum's tokens per parameter


# --------------------------------------------------------------------------- the plan's flags


def test_plan_simulate_reports_widths_identification_and_approach2s_bias(tmp_path):
    """The default design (the same 6 shapes at every budget, the optimum in the lower part of them):
    --simulate prints the table and the biases and writes the same figures as JSON."""
    out = tmp_path / "sim.json"
    result = plan("--simulate", "--assume", str(pilot_fits(tmp_path)), "--noise", "0.005", "--studies", "6",
                  "--samples", "30", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "IsoFLOP budgets against the compute-optimal N of the assumed law" in result.stdout
    figures = json.loads(out.read_text())["simulation"]
    assert f"{figures['width']['a']:.3g}" in result.stdout
    assert "E identified" in result.stdout and "Approach 2" in result.stdout
    assert figures["noise_free_bias"]["approach2"]["a"] > 0.01  # off-centre: Approach 2 is biased
    assert abs(figures["bias"]["approach3"]["a"]) < 0.01
    assert "simulated studies" in result.stderr  # the progress bar


@pytest.mark.parametrize(
    "args, message",
    [
        (["--noise", "0"], "must be a positive number of nats"),
        (["--noise", "-0.1"], "must be a positive number of nats"),
        (["--noise", "0.02", "--assume", "layout3"], "layout 3, but this pipeline reads layout"),
        (["--noise", "0.02", "--propose", "--gpu-hours", "1e-9"], "buys no valid design"),
    ],
)
def test_bad_design_input_stops_with_one_line(tmp_path, args, message):
    if "layout3" in args:
        args[args.index("layout3")] = str(pilot_fits(tmp_path, layout=3))
    assume = [] if "--assume" in args else ["--assume", "chinchilla"]
    mode = [] if "--propose" in args else ["--simulate"]
    result = plan(*mode, *assume, *args, "--studies", "2", "--samples", "5")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_propose_writes_an_overlay_the_config_check_and_the_plan_accept(tmp_path):
    overlay, out = tmp_path / "proposed.yaml", tmp_path / "proposal.json"
    result = plan("--propose", "--gpu-hours", "0.05", "--assume", str(pilot_fits(tmp_path)), "--noise", "0.02",
                  "--studies", "3", "--samples", "20", "--write-overlay", str(overlay), "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    designs = json.loads(out.read_text())["proposal"]["designs"]
    chosen = [d for d in designs if d["chosen"]]
    assert len(chosen) == 1 and chosen[0]["device_hours"] <= 0.05
    config = load_config_files([REPO / "config" / "config.yaml", overlay])
    assert check_config(config)
    check = subprocess.run([sys.executable, "-m", "workflow.config", "--check", "--configfile",
                            "config/config.yaml", str(overlay)], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stderr
    planned = plan("--configfile", str(overlay))
    assert planned.returncode == 0, planned.stderr
    assert "&id" not in overlay.read_text()  # plain YAML, no anchors


def test_a_study_with_arms_simulates_each_arms_own_design():
    """gpt_vs_lstm's arms train different sizes: the simulation keeps them apart (baseline first), and the
    study's design is the baseline's, not both arms' points pooled."""
    import argparse

    from workflow.arms import arm_configs
    from workflow.config import load_command_line
    from workflow.design.cli import prepare

    config = load_command_line(["--configfile", str(REPO / "config/experiments/gpt_vs_lstm.yaml")], only_config=True)
    args = argparse.Namespace(simulate=True, propose=False, assume="epoch", gpu_hours=None, loss_range="2.6,3.6",
                              noise=0.02, noise_correlation=0.0)  # fmt: skip
    setup = prepare(args, config)
    assert list(setup.arms) == ["gpt", "lstm"]
    gpt, lstm = setup.arms.values()
    assert setup.design is gpt
    assert set(gpt.params.tolist()).isdisjoint(lstm.params.tolist())
    assert len(gpt.params) == len(design_of_config(arm_configs(config)["gpt"]).params)
