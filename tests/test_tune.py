"""The tune stage without Snakemake: the sweep's runs, the selection, the rules in N and their use."""

import copy
import json
import math
import re

import pytest
from helpers import REPO
from snakemake.utils import validate

from workflow.config import ConfigError, check_config, load_command_line, spec_json
from workflow.spec import RunSpec
from workflow.tune import apply_tuning, selection_plan, sweep_runs
from workflow.tune.select import TuneError, fit_power_law, main, select, sweep_rows

SCHEMA = str(REPO / "config" / "config.schema.yaml")
SHAPES = [{"n_layer": 1, "d_model": 32, "n_head": 2}, {"n_layer": 3, "d_model": 96, "n_head": 4}]


@pytest.fixture
def tuned_config(config):
    """The conftest grid (4 shapes) with a learning-rate sweep of its smallest and largest shape."""
    config = copy.deepcopy(config)
    config["tune"] = {"enabled": True, "shapes": SHAPES, "values": {"lr": [1e-3, 3e-3, 1e-2]}, "tokens": 100_000}
    validate(config, SCHEMA)
    return config


def plan_and_runs(config):
    runs = check_config(config)
    sweep = sweep_runs(config, runs)
    return runs, sweep, selection_plan(config, runs, sweep)


def test_tuning_is_off_by_default(config):
    validate(config, SCHEMA)
    assert config["tune"]["enabled"] is False
    assert sweep_runs(config, check_config(config)) == {}


def test_sweep_runs_are_readable_runs_at_the_sweep_budget(tuned_config):
    runs, sweep, _ = plan_and_runs(tuned_config)
    assert sorted(sweep) == sorted(
        f"tune_{shape}_lr{lr}_D100k_s0" for shape in ("L1-d32-h2", "L3-d96-h4") for lr in ("0.001", "0.003", "0.01")
    )
    spec = sweep["tune_L3-d96-h4_lr0.003_D100k_s0"]
    assert spec.grid == "tune" and spec.tokens == 100_000 and spec.optim.lr == 0.003
    # Everything but the swept setting and the budget is the grid's.
    grid_run = runs["L3-d96-h4_D1M_s0"]
    assert spec.optim.batch_tokens == grid_run.optim.batch_tokens and spec.model == grid_run.model


def test_tokens_per_parameter_sets_each_shapes_budget(tuned_config):
    tuned_config["tune"].update(tokens=None, tokens_per_parameter=20)
    runs, sweep, plan = plan_and_runs(tuned_config)
    for run_id, point in plan["sweep"].items():
        assert point["tokens"] == int(20 * plan["shapes"][point["shape"]]) == sweep[run_id].tokens


def test_sweeping_two_settings_trains_every_combination(tuned_config):
    tuned_config["tune"]["values"]["batch_tokens"] = [2048, 4096]
    _, sweep, plan = plan_and_runs(tuned_config)
    assert len(sweep) == 2 * 3 * 2 and "tune_L1-d32-h2_b4096_lr0.01_D100k_s0" in sweep
    assert plan["swept"] == ["batch_tokens", "lr"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.update(tokens_per_parameter=20), "exactly one of tune.tokens and tune.tokens_per_parameter"),
        (lambda t: t.update(tokens=None), "exactly one of tune.tokens and tune.tokens_per_parameter"),
        (lambda t: t.update(values={"lr": [1e-3]}), "two or more values"),
        (lambda t: t.update(values={"lr": [1e-3, 1e-3]}), "tune.values.lr: a value is listed twice"),
        (lambda t: t.update(shapes=SHAPES[:1]), "needs at least two swept shapes"),
        (lambda t: t.update(tokens=1000), "less than one step"),
        (lambda t: t.update(shapes=[{"n_layer": 1, "d_model": 30, "n_head": 4}]), "tune.shapes[0]"),
    ],
)
def test_sweep_that_cannot_run_names_the_key(tuned_config, change, message):
    change(tuned_config["tune"])
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sweep_runs(tuned_config, check_config(tuned_config))


def test_a_tune_shape_that_is_not_in_the_study_is_refused_at_the_check(tuned_config, tmp_path):
    """A typo in tune.shapes (n_head 4 where the grid has 2) swept a shape the study does not train,
    and the intended shape silently got the fitted rule instead (issue 29, case 5)."""
    tuned_config["tune"]["shapes"] = [{"n_layer": 1, "d_model": 32, "n_head": 4}, SHAPES[1]]
    with pytest.raises(
        ConfigError,
        match=r"^config error at tune.shapes\[0\]: shape L1-d32-h4 is not a shape of the study, so its sweep "
        r"would choose values for no run; the study's shapes: L1-d32-h2, L2-d48-h2, L2-d64-h4, L3-d96-h4$",
    ):
        check_config(tuned_config)
    # The config check reads a tuned study with a typo in an overlay the same way.
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        "tune:\n  shapes:\n    - {n_layer: 1, d_model: 24, n_head: 4}\n    - {n_layer: 2, d_model: 64, n_head: 4}\n"
    )
    with pytest.raises(ConfigError, match=r"tune.shapes\[0\]: shape L1-d24-h4 is not a shape of the study"):
        check_config(
            load_command_line(["--configfile", str(REPO / "config/experiments/default_tuned.yaml"), str(typo)])
        )
    typo.write_text(
        "tune:\n  shapes:\n    - {n_layer: 1, d_model: 24, n_head: 2}\n    - {n_layer: 2, d_model: 64, n_head: 4}\n"
    )
    check_config(load_command_line(["--configfile", str(REPO / "config/experiments/default_tuned.yaml"), str(typo)]))


def test_sweep_runs_are_checked_against_the_warmup(tuned_config):
    """A sweep run is a point like any other: one whose budget ends in the warmup is refused, naming it;
    and with train.warmup_tokens set, a sweep of warmup_fraction would train the same run for each value."""
    tuned_config["train"]["warmup_tokens"] = 300_000  # 147 steps of 2048: past the sweep's 48
    run = "tune_L1-d32-h2_lr0.001_D100k_s0"
    with pytest.raises(ConfigError, match=rf"^config error at tune \(sweep run {run}\): point {run} trains 48 steps"):
        sweep_runs(tuned_config, check_config(tuned_config))
    tuned_config["train"]["warmup_tokens"] = 4096
    assert len(sweep_runs(tuned_config, check_config(tuned_config))) == 6
    tuned_config["tune"]["values"]["warmup_fraction"] = [0.01, 0.05]
    with pytest.raises(ConfigError, match="tune.values.warmup_fraction: train.warmup_tokens is set"):
        sweep_runs(tuned_config, check_config(tuned_config))


def losses_for(plan, loss_of):
    return {run_id: ("completed", loss_of(p["shape"], p["values"])) for run_id, p in plan["sweep"].items()}


def bowl(best_lr):
    """A loss with its minimum at each shape's best_lr[shape], quadratic in log lr."""
    return lambda shape, values: 3.0 + (math.log(values["lr"]) - math.log(best_lr[shape])) ** 2


def test_selection_chooses_the_lowest_loss_and_fits_the_rule_for_the_rest(tuned_config):
    runs, _, plan = plan_and_runs(tuned_config)
    rows = sweep_rows(plan, losses_for(plan, bowl({"L1-d32-h2": 1e-2, "L3-d96-h4": 3e-3})))
    tuning = select(plan, rows)
    shapes = tuning["shapes"]
    assert shapes["L1-d32-h2"]["values"] == {"lr": 1e-2} and shapes["L1-d32-h2"]["source"] == {"lr": "sweep"}
    assert shapes["L3-d96-h4"]["values"] == {"lr": 3e-3}
    assert [r["run_id"] for r in rows if r["chosen"]] == [
        "tune_L1-d32-h2_lr0.01_D100k_s0",
        "tune_L3-d96-h4_lr0.003_D100k_s0",
    ]
    # The two unswept shapes lie on the line through the two chosen points in log-log.
    rule = tuning["rules"]["lr"]
    n_small, n_large = shapes["L1-d32-h2"]["params"], shapes["L3-d96-h4"]["params"]
    assert rule["exponent"] == pytest.approx(math.log(3e-3 / 1e-2) / math.log(n_large / n_small))
    for label in ("L2-d48-h2", "L2-d64-h4"):
        assert shapes[label]["source"] == {"lr": "rule"}
        assert shapes[label]["values"]["lr"] == pytest.approx(
            1e-2 * (shapes[label]["params"] / n_small) ** rule["exponent"]
        )
        assert 3e-3 < shapes[label]["values"]["lr"] < 1e-2
    # The small shape's best is the largest value swept: warned; the large shape's is interior.
    assert any("L1-d32-h2: the best lr 0.01 is the largest swept" in w for w in tuning["warnings"])
    assert not any("L3-d96-h4" in w for w in tuning["warnings"])


def test_apply_rule_gives_every_shape_the_fitted_law(tuned_config):
    """tune.apply: rule: swept shapes too take the power law, smoothing single noisy sweep points."""
    tuned_config["tune"]["apply"] = "rule"
    _, _, plan = plan_and_runs(tuned_config)
    tuning = select(plan, sweep_rows(plan, losses_for(plan, bowl({"L1-d32-h2": 1e-2, "L3-d96-h4": 3e-3}))))
    rule = tuning["rules"]["lr"]
    for shape in tuning["shapes"].values():
        assert shape["source"] == {"lr": "rule"}
        assert shape["values"]["lr"] == pytest.approx(rule["coefficient"] * shape["params"] ** rule["exponent"])
    # The swept shapes still name their best sweep point.
    assert tuning["shapes"]["L1-d32-h2"]["run_id"] == "tune_L1-d32-h2_lr0.01_D100k_s0"
    assert tuning["apply"] == "rule"


@pytest.mark.parametrize("apply", ["best", "rule"])
def test_sweep_chart_draws_each_shapes_curve_at_its_best_other_settings(tuned_config, apply):
    import polars as pl

    from workflow.report.charts.tune_sweep import draw

    tuned_config["tune"].update(apply=apply, values={"lr": [1e-3, 3e-3, 1e-2], "beta2": [0.95, 0.99]})
    _, _, plan = plan_and_runs(tuned_config)
    best = bowl({"L1-d32-h2": 1e-2, "L3-d96-h4": 3e-3})
    rows = sweep_rows(plan, losses_for(plan, lambda shape, v: best(shape, v) + (v["beta2"] - 0.95)))
    tuning = select(plan, rows)
    chart, caption = draw(pl.DataFrame(rows), tuning)
    spec = chart.to_dict()
    curve = spec["hconcat"][0]["layer"][0]
    points = spec["datasets"][curve["data"]["name"]]
    assert len(points) == 6 and {p["beta2"] for p in points} == {0.95}  # one line per shape, at beta2 0.95
    assert "lr*(N) =" in caption and ("tune.apply: rule" in caption) == (apply == "rule")


def test_power_law_recovers_its_exponent():
    params = [1e4, 3e4, 1e5, 3e5]
    rule = fit_power_law(params, [0.5 * n**-0.35 for n in params])
    assert rule["exponent"] == pytest.approx(-0.35) and rule["coefficient"] == pytest.approx(0.5)
    assert rule["log_rms"] < 1e-12 and rule["shapes"] == 4


def test_diverged_points_are_left_out_and_a_shape_with_none_left_is_an_error(tuned_config):
    _, _, plan = plan_and_runs(tuned_config)
    results = losses_for(plan, bowl({"L1-d32-h2": 3e-3, "L3-d96-h4": 3e-3}))
    # The best point of the small shape diverged: the next best is chosen, and the loss is warned.
    results["tune_L1-d32-h2_lr0.003_D100k_s0"] = ("diverged", None)
    tuning = select(plan, sweep_rows(plan, results))
    assert tuning["shapes"]["L1-d32-h2"]["run_id"] != "tune_L1-d32-h2_lr0.003_D100k_s0"
    assert any("1 of 3 sweep points did not complete" in w for w in tuning["warnings"])
    for run_id in plan["sweep"]:
        if "L3-d96-h4" in run_id:
            results[run_id] = ("diverged", None)
    with pytest.raises(TuneError, match="no sweep point of shape L3-d96-h4 completed"):
        select(plan, sweep_rows(plan, results))


def test_batch_rule_rounds_to_whole_micro_batches_and_others_take_the_nearest_shape(tuned_config):
    tuned_config["tune"]["values"] = {"lr": [3e-3, 1e-2], "batch_tokens": [2048, 8192], "beta2": [0.95, 0.99]}
    _, _, plan = plan_and_runs(tuned_config)

    def loss(shape, values):
        big = shape == "L3-d96-h4"
        return (
            3.0 + abs(values["batch_tokens"] - (8192 if big else 2048)) + abs(values["beta2"] - (0.99 if big else 0.95))
        )

    tuning = select(plan, sweep_rows(plan, losses_for(plan, loss)))
    for label in ("L2-d48-h2", "L2-d64-h4"):
        shape = tuning["shapes"][label]
        assert shape["values"]["batch_tokens"] % plan["micro_batch_tokens"] == 0
        assert 2048 <= shape["values"]["batch_tokens"] <= 8192
        assert shape["source"]["beta2"].startswith("nearest (")
    assert tuning["shapes"]["L2-d48-h2"]["values"]["beta2"] == 0.95  # nearer the small shape in log N
    assert "beta2" not in tuning["rules"] and set(tuning["rules"]) == {"lr", "batch_tokens"}


def test_grid_runs_take_their_shapes_values_and_record_where_from(tuned_config):
    runs, _, plan = plan_and_runs(tuned_config)
    tuning = select(plan, sweep_rows(plan, losses_for(plan, bowl({"L1-d32-h2": 1e-2, "L3-d96-h4": 3e-3}))))
    tuned = apply_tuning(runs["L1-d32-h2_D1M_s0"], tuning)
    assert tuned.optim.lr == 1e-2 and tuned.tuned == (("lr", "sweep"),)
    assert apply_tuning(runs["L2-d64-h4_D1M_s0"], tuning).tuned == (("lr", "rule"),)
    # The record travels in the spec text (Snakemake compares it) and back.
    text = json.loads(spec_json(tuned))
    assert text["tuned"] == {"lr": "sweep"} and text["optim"]["lr"] == 1e-2
    assert RunSpec.from_json(spec_json(tuned), tuned.execution_json()) == tuned
    # An untuned run's text has no such key: studies that never tune keep their trained runs.
    assert "tuned" not in json.loads(spec_json(runs["L1-d32-h2_D1M_s0"]))
    # A run's own override wins over the tuned value.
    assert apply_tuning(runs["L1-d32-h2_D1M_s0"], tuning, {"lr"}).optim.lr == runs["L1-d32-h2_D1M_s0"].optim.lr
    del tuning["shapes"]["L2-d48-h2"]
    with pytest.raises(ConfigError, match="no values for shape L2-d48-h2"):
        apply_tuning(runs["L2-d48-h2_D1M_s0"], tuning)


def test_selection_cli_writes_the_table_and_the_choice(tuned_config, tmp_path, capsys):
    _, _, plan = plan_and_runs(tuned_config)
    best = {"L1-d32-h2": 1e-2, "L3-d96-h4": 3e-3}
    run_dirs = []
    for run_id, point in plan["sweep"].items():
        run_dir = tmp_path / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps({"run_id": run_id, "status": "completed"}))
        loss = bowl(best)(point["shape"], point["values"])
        (run_dir / "eval.json").write_text(json.dumps({"run_id": run_id, "points": [{"val_loss": loss}]}))
        run_dirs.append(str(run_dir))
    assert main([*run_dirs, "--plan", json.dumps(plan), "--out-dir", str(tmp_path / "tune")]) == 0
    tuning = json.loads((tmp_path / "tune" / "tuning.json").read_text())
    assert tuning["shapes"]["L3-d96-h4"]["values"] == {"lr": 3e-3}
    table = (tmp_path / "tune" / "sweep.csv").read_text().splitlines()
    assert table[0].startswith("run_id,shape,params,tokens,lr,status,loss,chosen") and len(table) == 7
    assert "L2-d48-h2 (N" in capsys.readouterr().out
    # A damaged result: one line naming the file, nothing written.
    (tmp_path / "runs" / next(iter(plan["sweep"])) / "eval.json").write_text("{")
    assert main([*run_dirs, "--plan", json.dumps(plan), "--out-dir", str(tmp_path / "again")]) == 1
    assert "eval.json" in capsys.readouterr().err and not (tmp_path / "again").exists()


# --------------------------------------------------------------------------- through Snakemake

TUNED_SHAPES = [{"n_layer": 1, "d_model": 16, "n_head": 2}, {"n_layer": 2, "d_model": 48, "n_head": 4}]
OVERRIDDEN_RUN = "L1-d32-h2_D64k_s0"  # keeps its own lr whatever the sweep chooses


def tune_tiny(values):
    """config/tiny.yaml swept over ``values`` on its smallest and largest shape (the middle one takes
    the rule), with one run's lr set by an override."""

    def change(config):
        config["tune"] = {"enabled": True, "shapes": TUNED_SHAPES, "values": {"lr": values}, "tokens": 16000}
        config["train"]["overrides"] = {OVERRIDDEN_RUN: {"lr": 0.002}}

    return change


def planned(workdir, *args) -> dict[str, list[str]]:
    """Rule -> the run wildcards of its jobs in a dry run with ``args`` (a config file alone is given
    as --configfile; rules without a run wildcard: [''])."""
    from helpers import snakemake

    args = ("--configfile", *args) if len(args) == 1 else args
    out = snakemake(workdir, "-n", *args).stdout
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:rule|checkpoint) )", out)[1:]:
        rule = re.search(r"^(?:rule|checkpoint) (\w+):", block, flags=re.M).group(1)
        run = re.search(r"wildcards: run=(\S+)", block)
        jobs.setdefault(rule, []).append(run.group(1) if run else "")
    return jobs


@pytest.fixture(scope="module")
def tuned_study(tmp_path_factory):
    from helpers import copy_pipeline, snakemake, write_config

    workdir = copy_pipeline(tmp_path_factory.mktemp("tuned"))
    config = write_config(workdir, "tuned.yaml", tune_tiny([1e-3, 4e-3, 1.6e-2]))
    snakemake(workdir, "--configfile", config)
    return workdir, config


@pytest.mark.pipeline
def test_sweep_chooses_by_validation_loss_and_the_grid_trains_with_it(tuned_study):
    import polars as pl

    workdir, config = tuned_study
    results = workdir / "results"
    tuning = json.loads((results / "tune" / "tuning.json").read_text())
    for shape in ("L1-d16-h2", "L2-d48-h4"):
        losses = {
            run.name: json.loads((run / "eval.json").read_text())["points"][0]["val_loss"]
            for run in (results / "runs").glob(f"tune_{shape}_lr*")
        }
        assert len(losses) == 3
        best = min(losses, key=losses.get)
        assert tuning["shapes"][shape]["run_id"] == best
        assert f"_lr{tuning['shapes'][shape]['values']['lr']:g}_" in best
    assert tuning["shapes"]["L1-d32-h2"]["source"] == {"lr": "rule"}
    for run in (results / "runs").glob("L*"):
        summary = json.loads((run / "summary.json").read_text())
        shape = run.name.split("_")[0]
        if run.name == OVERRIDDEN_RUN:
            assert summary["lr"] == 0.002 and "tuned" not in summary["spec"]
        else:
            assert summary["lr"] == tuning["shapes"][shape]["values"]["lr"]
            assert summary["spec"]["tuned"] == tuning["shapes"][shape]["source"]
    table = pl.read_csv(results / "tables" / "runs.csv")
    assert table.height == 9 and set(table["tuned"].fill_null("")) == {"lr (sweep)", "lr (rule)", ""}
    report = results / "report"
    assert all((report / f"tune_sweep.{fmt}").stat().st_size > 1000 for fmt in ("html", "svg", "png"))
    caption = (report / "captions" / "tune_sweep.rst").read_text()
    assert "L1-d32-h2: lr" in caption and "(rule)" in caption
    assert "tune sweep" in (report / "index.html").read_text()
    assert planned(workdir, config) == {}


@pytest.mark.pipeline
def test_new_sweep_value_reruns_the_selection_and_retrains_only_changed_runs(tuned_study, tmp_path):
    """A new value trains its sweep points and reruns the selection; once it is made, exactly the grid
    runs whose chosen values changed are retrained (an lr override keeps its run out of it), and a
    value that wins nowhere retrains nothing."""
    import shutil

    from helpers import snakemake, write_config

    source, _ = tuned_study
    workdir = tmp_path / "copy"
    shutil.copytree(source, workdir, symlinks=True)
    before = json.loads((workdir / "results" / "tune" / "tuning.json").read_text())
    higher = write_config(workdir, "higher.yaml", tune_tiny([1e-3, 4e-3, 1.6e-2, 6.4e-2]))
    jobs = planned(workdir, higher)
    assert jobs["tune"] == [""]
    assert sorted(r for r in jobs["train"] if r.startswith("tune_")) == [
        "tune_L1-d16-h2_lr0.064_D16k_s0",
        "tune_L2-d48-h4_lr0.064_D16k_s0",
    ]
    snakemake(workdir, "results/tune/tuning.json", "--configfile", higher)
    after = json.loads((workdir / "results" / "tune" / "tuning.json").read_text())
    changed = {s for s in after["shapes"] if after["shapes"][s]["values"] != before["shapes"][s]["values"]}
    grid = [run.name for run in (workdir / "results" / "runs").glob("L*")]
    expected = sorted(r for r in grid if r.split("_")[0] in changed and r != OVERRIDDEN_RUN)
    assert sorted(planned(workdir, higher).get("train", [])) == expected
    assert changed, "the larger lr changed no shape's choice: this case tests nothing"
    # A value far below every optimum: the selection reruns, chooses the same, and nothing retrains.
    snakemake(workdir, "--configfile", higher)
    lower = write_config(workdir, "lower.yaml", tune_tiny([1e-5, 1e-3, 4e-3, 1.6e-2, 6.4e-2]))
    snakemake(workdir, "results/tune/tuning.json", "--configfile", lower)
    assert json.loads((workdir / "results" / "tune" / "tuning.json").read_text())["shapes"] == after["shapes"]
    assert "train" not in planned(workdir, lower)


@pytest.mark.pipeline
def test_reviewer_redraws_a_tuned_studys_report_from_results_alone(tuned_study, tmp_path):
    import shutil

    from helpers import copy_pipeline, snakemake

    source, _ = tuned_study
    clone = copy_pipeline(tmp_path)
    shutil.copytree(source / "results", clone / "results")
    (clone / "results" / "report" / "tune_sweep.svg").unlink()
    command = ("--forceall", "--configfile", "results/config.yaml", "--config", "regenerate_from_results=True")
    jobs = planned(clone, *command)
    assert set(jobs) == {"study_config", "collect", "fit", "report", "all"}
    snakemake(clone, *command)
    assert not (clone / "resources").exists()
    assert (clone / "results" / "report" / "tune_sweep.svg").stat().st_size > 1000


@pytest.mark.pipeline
@pytest.mark.browser
def test_tuned_report_renders_its_sweep_in_a_headless_browser(tuned_study):
    from tests.browser import load
    from workflow.report import CHARTS, TUNE_CHARTS

    workdir, _ = tuned_study
    page = load(workdir / "results" / "report" / "index.html")
    body = page.body()
    assert body.get("data-report-status") == "done", page.console
    assert body.get("data-errors") == "[]", body.get("data-errors")
    assert {attrs["id"] for attrs in page.with_attribute("data-rendered")} == set(CHARTS) | set(TUNE_CHARTS)
