import copy
import dataclasses
import json
import os
import subprocess
import sys

import pytest
from helpers import REPO
from snakemake.utils import validate
from snakemake_interface_common.exceptions import WorkflowError

from workflow import families
from workflow.config import ConfigError, check_config, expand_runs, spec_json
from workflow.names import format_count, format_flops

SCHEMA = str(REPO / "config" / "config.schema.yaml")


def test_default_config_is_valid(config):
    validate(config, SCHEMA)
    runs = check_config(config)
    assert len(runs) >= 12
    assert len({r.model.d_model for r in runs.values()}) >= 4


def test_default_study_is_designed_to_show_a_law(default_config):
    """The shipped default study: at least 3 IsoFLOP budgets of at least 5 shapes each, beside an
    N x D grid; N spans at least 30x and D at least 16x; WSD, so each shape trains once."""
    config = copy.deepcopy(default_config)
    validate(config, SCHEMA)
    runs = check_config(config)
    assert config["train"]["schedule"] == "wsd" and len(runs) == len(config["train"]["isoflop"]["shapes"])
    budgets: dict[float, int] = {}
    params, tokens = [], []
    for spec in runs.values():
        n = families.parameter_counts(spec.model).non_embedding
        for t, budget in zip(spec.branch_tokens, spec.branch_compute_budgets):
            params.append(n)
            tokens.append(t)
            if budget is not None:
                budgets[budget] = budgets.get(budget, 0) + 1
    assert len(budgets) >= 3 and min(budgets.values()) >= 5
    assert len(config["train"]["grid"]["shapes"]) >= 3 and len(config["train"]["grid"]["token_budgets"]) >= 3
    assert max(params) / min(params) >= 30 and max(tokens) / min(tokens) >= 16


def test_run_ids_are_readable_and_derived_from_settings(config):
    runs = expand_runs(config)
    assert "L2-d64-h4_D1M_s0" in runs
    spec = runs["L2-d64-h4_D1M_s0"]
    assert spec.tokens == 1_000_000
    assert spec.model.n_layer == 2 and spec.model.d_model == 64
    assert spec_json(spec) == spec_json(expand_runs(copy.deepcopy(config))["L2-d64-h4_D1M_s0"])


def test_override_changes_one_run_only(config):
    before = expand_runs(config)
    config["train"]["overrides"] = {"L2-d64-h4_D1M_s0": {"lr": 0.001}}
    after = expand_runs(config)
    changed = [r for r in before if spec_json(before[r]) != spec_json(after[r])]
    assert changed == ["L2-d64-h4_D1M_s0"]
    assert after["L2-d64-h4_D1M_s0"].optim.lr == 0.001


def test_override_of_unknown_run(config):
    config["train"]["overrides"] = {"L9-d1-h1_D1_s0": {"lr": 0.1}}
    with pytest.raises(ConfigError, match="train.overrides: 'L9-d1-h1_D1_s0' is not a run"):
        expand_runs(config)


def test_format_count_is_exact():
    assert format_count(500_000) == "500k"
    assert format_count(2_500_000) == "2.5M"
    assert format_count(1_000_000_000) == "1B"
    assert format_count(1_000_001) != format_count(1_000_000)
    assert format_flops(3e15) == "3e15" and format_flops(2.5e18) == "2.5e18"


def test_isoflop_tokens_from_budget(config):
    config["train"]["isoflop"] = {
        "compute_budgets": [1e12],
        "shapes": [{"n_layer": 2, "d_model": 64, "n_head": 4}],
        "seeds": [0],
    }
    runs = expand_runs(config)
    spec = runs["L2-d64-h4_C1e12_s0"]
    per_token = families.flops_per_token(config["fit"]["flop_convention"], spec.model)
    assert spec.tokens == int(1e12 // per_token)
    assert spec.compute_budget == 1e12


def test_n_head_must_divide_d_model(config):
    config["train"]["grid"]["shapes"][1]["n_head"] = 5
    with pytest.raises(ConfigError, match=r"train.grid.shapes\[1\]: n_head=5 does not divide d_model=48"):
        check_config(config)


def test_duplicate_run_ids(config):
    config["train"]["grid"]["shapes"].append(dict(config["train"]["grid"]["shapes"][0]))
    with pytest.raises(ConfigError, match="duplicate run id 'L1-d32-h2_D500k_s0'"):
        check_config(config)


def test_isoflop_budget_too_small(config):
    config["train"]["isoflop"] = {
        "compute_budgets": [1e6],
        "shapes": [{"n_layer": 2, "d_model": 64, "n_head": 4}],
        "seeds": [0],
    }
    with pytest.raises(
        ConfigError,
        match=r"isoflop.compute_budgets\[0\]: budget 1e\+06 FLOPs buys 1 tokens .* less than one step of 2048 tokens",
    ):
        check_config(config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["train"].update(learning_rate=0.1), "'learning_rate' was unexpected"),
        (lambda c: c["train"].update(batch_tokens="2048"), "'2048' is not of type 'integer'"),
        (lambda c: c["train"]["grid"]["shapes"][0].update(d_model=-64), "-64 is less than the minimum of 1"),
        (lambda c: c["tokenizer"].update(vocab_size=0), "0 is less than the minimum of 260"),
        (lambda c: c["fit"].update(flop_convention="7N"), "'7N' is not one of"),
    ],
)
def test_schema_errors_name_the_key(config, change, message):
    change(config)
    with pytest.raises(WorkflowError) as info:
        validate(config, SCHEMA)
    assert message in str(info.value)
    assert "On instance[" in str(info.value)


def test_batch_must_be_reachable_by_accumulation(config):
    config["train"]["batch_tokens"] = 3000
    with pytest.raises(
        ConfigError, match="config error at train.batch_tokens: 3000 is not a multiple of micro_batch_size x seq_len"
    ):
        check_config(config)


def test_wsd_trains_one_run_per_shape_with_a_branch_per_budget(config):
    config["train"]["schedule"] = "wsd"
    runs = expand_runs(config)
    assert len(runs) == len(config["train"]["grid"]["shapes"])
    spec = runs["L2-d64-h4_WSD2M_s0"]
    assert list(spec.branch_tokens) == sorted(config["train"]["grid"]["token_budgets"])
    assert spec.tokens == 2_000_000


def test_wsd_isoflop_budgets_are_branches_of_one_run_per_shape(config):
    """Under WSD an IsoFLOP budget is a cooldown branch: a shape in both grids trains once for both,
    and each branch knows its budget; the spec text of a run without budgets has no such key."""
    train = config["train"]
    train["schedule"] = "wsd"
    train["isoflop"]["compute_budgets"] = [3.0e11, 1.2e12]
    train["isoflop"]["shapes"] = [train["grid"]["shapes"][0], {"n_layer": 4, "d_model": 128, "n_head": 4}]
    runs = expand_runs(config)
    both = runs["L1-d32-h2_WSD-C1.2e12_s0"]  # named after its longest branch, an IsoFLOP budget
    assert both.grid == "tokens+isoflop" and both.compute_budget is None
    budgets = dict(zip(both.branch_tokens, both.branch_compute_budgets))
    assert [budgets[t] for t in train["grid"]["token_budgets"]] == [None, None, None]
    assert sorted(b for b in budgets.values() if b) == [3.0e11, 1.2e12]
    per_token = families.flops_per_token("6N", both.model)
    assert both.point_budget(max(both.branch_tokens)) == 1.2e12 and max(both.branch_tokens) == 1.2e12 // per_token
    iso = runs["L4-d128-h4_WSD-C1.2e12_s0"]
    assert iso.grid == "isoflop" and iso.branch_compute_budgets == (3.0e11, 1.2e12)
    grid_only = runs["L2-d64-h4_WSD2M_s0"]
    assert grid_only.branch_compute_budgets == () and "branch_compute_budgets" not in json.loads(grid_only.to_json())
    assert json.loads(both.to_json())["branch_compute_budgets"] == list(both.branch_compute_budgets)


def test_wsd_branches_of_the_same_step_are_refused(config):
    train = config["train"]
    train["schedule"] = "wsd"
    train["grid"]["token_budgets"] = [500_000, 500_100]
    with pytest.raises(ConfigError, match=r"cooldown branches at 500000 and 500100 tokens, the same number of whole"):
        expand_runs(config)


def test_lstm_shapes_sit_beside_gpt_shapes(config):
    config["train"]["grid"]["shapes"].append({"family": "lstm", "n_layer": 2, "d_model": 64})
    runs = expand_runs(config)
    assert runs["lstm-L2-d64_D1M_s0"].model.family == "lstm"
    assert runs["L2-d64-h4_D1M_s0"].model.family == "gpt"


def test_lstm_study_with_bare_shapes(config):
    """train.family lstm: shapes that name no family (and no n_head) are LSTMs, in the run id too."""
    config["train"]["family"] = "lstm"
    config["train"]["grid"]["shapes"] = [{"n_layer": 1, "d_model": 32}, {"n_layer": 2, "d_model": 64}]
    runs = check_config(config)
    assert "lstm-L1-d32_D500k_s0" in runs and "lstm-L2-d64_D2M_s0" in runs
    assert all(spec.model.family == "lstm" for spec in runs.values())
    assert runs["lstm-L1-d32_D500k_s0"].model.n_head == 1  # recorded, unused


def test_shape_family_overrides_train_family(config):
    config["train"]["family"] = "lstm"
    config["train"]["grid"]["shapes"] = [{"n_layer": 1, "d_model": 32, "n_head": 2, "family": "gpt"}]
    config["train"]["isoflop"] = {"compute_budgets": [1e12], "shapes": [{"n_layer": 1, "d_model": 32}], "seeds": [0]}
    runs = check_config(config)
    assert runs["L1-d32-h2_D500k_s0"].model.family == "gpt"
    assert runs["lstm-L1-d32_C1e12_s0"].model.family == "lstm"


def test_gpt_shape_needs_n_head(config):
    config["train"]["grid"]["shapes"].append({"n_layer": 1, "d_model": 32})
    with pytest.raises(ConfigError, match=r"train.grid.shapes\[4\]: a gpt shape needs n_head"):
        check_config(config)
    config["train"]["family"] = "lstm"
    config["train"]["grid"]["shapes"][-1]["family"] = "gpt"
    with pytest.raises(ConfigError, match=r"train.grid.shapes\[4\]: a gpt shape needs n_head"):
        check_config(config)


def test_lr_and_batch_follow_rules_in_n(config):
    config["train"]["scaling"] = {"reference_params": 98_624, "lr_exponent": -1 / 3, "batch_exponent": 0.5}
    runs = expand_runs(config)
    reference, small = runs["L2-d64-h4_D1M_s0"].optim, runs["L1-d32-h2_D1M_s0"].optim
    assert reference.lr == pytest.approx(config["train"]["lr"]) and reference.batch_tokens == 2048
    assert small.lr == pytest.approx(config["train"]["lr"] * (12_384 / 98_624) ** (-1 / 3))
    # 2048 x (12384/98624)^0.5 = 726 tokens, rounded to whole 32 x 64-token micro-batches: one.
    assert small.batch_tokens == 2048
    large = runs["L3-d96-h4_D1M_s0"].optim.batch_tokens
    assert large == round(2048 * (332_448 / 98_624) ** 0.5 / 2048) * 2048 == 4096


def test_train_runtime_grows_with_flops_and_attempt(config):
    from workflow.slurm_resources import train_runtime_minutes

    runs = expand_runs(config)
    cluster = {"train_flops_per_s": 1e9, "runtime_factor": 2.0, "min_runtime_minutes": 1}
    small, large = runs["L1-d32-h2_D500k_s0"], runs["L3-d96-h4_D2M_s0"]
    assert train_runtime_minutes(large, cluster) > train_runtime_minutes(small, cluster)
    assert train_runtime_minutes(large, cluster, attempt=2) >= 2 * train_runtime_minutes(large, cluster) - 1
    assert train_runtime_minutes(small, {**cluster, "min_runtime_minutes": 30}) == 30


# Installed first in a fresh interpreter: importing any of these heavy packages fails.
BLOCK_HEAVY_IMPORTS = """
import importlib.abc, sys

HEAVY = {"torch", "scipy", "altair", "polars", "numpy"}

class BlockHeavy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{name} is blocked: the config check must not import it")
        return None

sys.meta_path.insert(0, BlockHeavy())
"""


def test_config_check_imports_no_heavy_package():
    """The Snakefile imports workflow.config on every invocation (and on login nodes):
    checking a config must not need torch, scipy, altair, polars or numpy."""
    check = """
import yaml
from pathlib import Path
import sys
import workflow.config
sys.path.insert(0, "tests")
from spec_variants import shipped_configs  # overlays merged over config/config.yaml
for path, config in shipped_configs().items():
    runs = workflow.config.check_config(config)
    print(path, len(runs))
try:
    import numpy
except ImportError:
    print("numpy blocked")
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY_IMPORTS + check], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "config/tiny.yaml 9" in result.stdout and "numpy blocked" in result.stdout


# --------------------------------------------------------------------------- overrides, paths, artefact keys


def test_an_override_is_checked_like_the_grid(config):
    """An override that leaves a run less than one step of its own budget is refused, naming it."""
    run = "L1-d32-h2_D500k_s0"
    config["train"]["overrides"] = {run: {"batch_tokens": 1_048_576}}
    with pytest.raises(ConfigError, match=f"config error at train.overrides.{run}: run {run} trains 500000 tokens"):
        check_config(config)
    config["train"]["overrides"] = {run: {"batch_tokens": 3000}}
    with pytest.raises(ConfigError, match=f"train.overrides.{run}: batch_tokens 3000 is not a multiple"):
        check_config(config)
    config["train"]["overrides"] = {run: {"devices": 3}}
    with pytest.raises(ConfigError, match=f"train.overrides.{run}: run {run} has 1 micro-batches per step"):
        check_config(config)
    config["train"]["overrides"] = {run: {"batch_tokens": 4096, "lr": 0.001}}
    assert check_config(config)[run].optim.batch_tokens == 4096


def test_paths_expand_home_and_variables(config, monkeypatch):
    from workflow.config import expand_paths

    monkeypatch.setenv("SCRATCH", "/scratch/me")
    config.update(work_dir="$SCRATCH/study")
    config["tokenizer"]["model_file"] = "~/tokenizers/t.model"
    expand_paths(config)
    assert config["work_dir"] == "/scratch/me/study"
    assert config["tokenizer"]["model_file"] == os.path.expanduser("~/tokenizers/t.model")
    monkeypatch.delenv("SCRATCH")
    config.update(work_dir="${SCRATCH}/study")
    with pytest.raises(ConfigError, match="config error at work_dir: '\\$\\{SCRATCH\\}/study' uses the environment "):
        expand_paths(config)


def test_artefact_keys_cover_the_settings_upstream(config):
    from workflow.names import artefact_keys

    base = artefact_keys(config)
    assert base == artefact_keys(copy.deepcopy(config))
    config["dataset"]["shard_tokens"] += 1
    changed = artefact_keys(config)
    assert changed["corpus"] == base["corpus"] and changed["tokenizer"] == base["tokenizer"]
    assert changed["dataset"] != base["dataset"]
    config["tokenizer"]["seed"] += 1
    reseeded = artefact_keys(config)
    assert reseeded["corpus"] == base["corpus"] and reseeded["tokenizer"] != base["tokenizer"]
    assert reseeded["dataset"] not in (base["dataset"], changed["dataset"])
    config["corpus"]["dedup"] = True
    assert artefact_keys(config)["corpus"] != base["corpus"]
    # Settings that do not change an artefact do not change its key.
    config["train"]["lr"] *= 2
    config["corpus"]["download"] = {"attempts": 9}
    assert artefact_keys(config) == artefact_keys({**config, "train": {}})


def test_numbers_written_as_text_are_named_with_the_fix():
    from workflow.config import numbers_written_as_text

    config = {"train": {"lr": "4e-3", "grid": {"token_budgets": [1000, "1E6"]}}, "corpus": {"name": "abc"}}
    assert numbers_written_as_text(config) == [
        "train.lr is '4e-3', which YAML reads as text: write 4.0e-3",
        "train.grid.token_budgets[1] is '1E6', which YAML reads as text: write 1.0e+6",
    ]


def test_config_files_are_checked_naming_file_and_line(tmp_path):
    """What `./pipeline.sh run` checks before Snakemake, which reports a YAML syntax error without
    the file or the line."""
    from workflow.config import check_files, config_files_in, main

    assert config_files_in(["--cores", "2", "--configfile", "a.yaml", "b.yaml", "-n"]) == [
        REPO.joinpath("config/config.yaml").relative_to(REPO),
        REPO.joinpath("a.yaml").relative_to(REPO),
        REPO.joinpath("b.yaml").relative_to(REPO),
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 0.001\n  grid: {shapes: [1,\n")
    with pytest.raises(ConfigError, match=f"config file {bad}, line 4, column 1: "):
        check_files([REPO / "config" / "config.yaml", bad])
    text = tmp_path / "text.yaml"
    text.write_text("train:\n  lr: 4e-3\n")
    with pytest.raises(ConfigError, match="train.lr is '4e-3', which YAML reads as text: write 4.0e-3"):
        check_files([REPO / "config" / "config.yaml", text])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("dataset: {shard_size: 10}\n")
    with pytest.raises(ConfigError, match=r"^config error at dataset: .*'shard_size' was unexpected\)$"):
        check_files([REPO / "config" / "config.yaml", unknown])
    assert len(check_files([REPO / "config" / "config.yaml", REPO / "config" / "tiny.yaml"])) == 9
    assert main(["--check", "--configfile", str(bad)]) == 1


# --------------------------------------------------------------------------- warmup: every point trained as designed
# The conftest grid in 2048-token batches: 244, 488 and 976 steps at 500k, 1M and 2M tokens. A WSD
# branch of 244 steps forks at round(244 x 0.8) = 195, cooling down for 49 steps.


def test_warmup_tokens_are_the_same_steps_for_every_size(default_config):
    """Porian et al. 2024: a warmup that grows with the run's budget (warmup_fraction of it) differs
    with model size in an IsoFLOP grid; warmup_tokens is one warmup for every size and budget."""
    from workflow.steps import warmup_steps
    from workflow.train.schedule import plan_steps

    config = copy.deepcopy(default_config)
    config["train"]["warmup_tokens"] = 20_000  # 39.06 batches of 512 tokens: 40 steps
    runs = check_config(config)
    assert {warmup_steps(spec) for spec in runs.values()} == {40}
    assert {plan_steps(spec, 1, 0).warmup_steps for spec in runs.values()} == {40}
    # warmup_fraction 0.05 of each run's longest point: one warmup per shape, 676 steps to 48.
    by_fraction = sorted(warmup_steps(dataclasses.replace(spec, warmup_tokens=None)) for spec in runs.values())
    assert len(set(by_fraction)) == 6 and (by_fraction[0], by_fraction[-1]) == (48, 676)


def test_a_point_that_ends_in_warmup_is_refused_naming_it(config, default_config):
    config["train"]["warmup_tokens"] = 243 * 2048  # 243 steps: the 244-step runs train one step past it
    check_config(config)
    config["train"]["warmup_tokens"] += 1  # 244 steps
    with pytest.raises(
        ConfigError,
        match=r"^config error at train: point L1-d32-h2_D500k_s0 trains 244 steps of 2048 tokens, all within "
        r"its warmup of 244 steps \(train.warmup_tokens = 497665\), so it ends in warmup; shorten the warmup "
        r"\(train.warmup_tokens, or warmup_fraction\), give the point a larger budget, or drop the budget$",
    ):
        check_config(config)
    # The default design under warmup_fraction (5% of each run's longest point): the smallest shape's
    # 250k-token branch (488 steps) would end in its warmup of 676 steps, at 72% of its peak lr.
    default = copy.deepcopy(default_config)
    default["train"]["warmup_tokens"] = None
    with pytest.raises(ConfigError, match=r"point L1-d24-h2_WSD-C8e11_s0@D250k trains 488 steps .* warmup of 676 "):
        check_config(default)


def test_a_wsd_branch_whose_warmup_shortens_its_cooldown_is_refused(config, default_config):
    config["train"].update(schedule="wsd", warmup_tokens=195 * 2048)  # forks at 195: the designed 49 steps
    assert check_config(config)["L1-d32-h2_WSD2M_s0"].branch_tokens[0] == 500_000
    config["train"]["warmup_tokens"] += 1  # 196 steps
    with pytest.raises(
        ConfigError,
        match=r"^config error at train: point L1-d32-h2_WSD2M_s0@D500k cools down for 48 of its 244 steps, not "
        r"the 49 of wsd_decay_fraction = 0.2, since its warmup of 196 steps \(train.warmup_tokens = 399361\) "
        r"ends after step 195; shorten the warmup",
    ):
        check_config(config)
    # The default design under warmup_fraction, without its smallest shape: the next one's 250k-token
    # branch would cool down for 35 of its 488 steps (7%), not 20%.
    default = copy.deepcopy(default_config)
    default["train"]["warmup_tokens"] = None
    for grid in ("grid", "isoflop"):
        del default["train"][grid]["shapes"][0]
    with pytest.raises(ConfigError, match=r"point L1-d32-h2_WSD-C8e11_s0@D250k cools down for 35 of its 488 steps"):
        check_config(default)


def test_warmup_tokens_in_an_override_change_and_are_checked_with_its_run(config):
    run = "L1-d32-h2_D500k_s0"
    before = check_config(config)
    config["train"]["overrides"] = {run: {"warmup_tokens": 4096}}
    after = check_config(config)
    assert [r for r in before if spec_json(before[r]) != spec_json(after[r])] == [run]
    assert after[run].warmup_tokens == 4096
    config["train"]["overrides"] = {run: {"warmup_tokens": 1_000_000}}
    with pytest.raises(ConfigError, match=f"config error at train.overrides.{run}: point {run} trains 244 steps"):
        check_config(config)


def test_spec_text_leaves_out_warmup_tokens_while_it_is_null(config):
    """Adding the key kept the spec text (and so the trained runs) of every study that does not set it."""
    config["train"].pop("warmup_tokens", None)
    without = {r: spec_json(s) for r, s in expand_runs(config).items()}
    config["train"]["warmup_tokens"] = None
    assert {r: spec_json(s) for r, s in expand_runs(config).items()} == without
    assert all("warmup_tokens" not in json.loads(text) for text in without.values())
    config["train"]["warmup_tokens"] = 8192
    for run_id, spec in expand_runs(config).items():
        recorded = json.loads(spec_json(spec))
        assert recorded.pop("warmup_tokens") == 8192 and recorded == json.loads(without[run_id])
