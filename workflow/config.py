"""A study's config: loading, validation, grid expansion into runs, and the CLI.

    python -m workflow.config --check [SNAKEMAKE_ARGS]       check what a snakemake command would load
                                                            (its files and --config, read by workflow.cli_args)
    python -m workflow.config --config-json JSON --write F   record the study's validated config

Config files are loaded and merged like Snakemake's, validated against config/config.schema.yaml,
and expanded into one ``workflow.spec.RunSpec`` per run, keyed by its run id (``workflow.names``).
Checks that JSON Schema cannot express (n_head dividing d_model, duplicate run ids, an IsoFLOP budget
too small for a shape, a point that would end in its warmup) also live here, so that a bad config
stops before any job runs with a message naming the key. What a run's settings derive from lives
below this module, each in its own: names and artefact keys (``workflow.names``), the scaling rules
(``workflow.scaling``), the steps of each point (``workflow.steps``), the counts and validation of a
model (``workflow.families``), its Slurm request (``workflow.slurm_resources``).

The Snakefile imports this module on every invocation: it imports no torch, numpy or polars, and
nothing of ``workflow`` above it (``workflow.plan``, ``workflow.tune``); tests make sure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from pathlib import Path

import yaml

from workflow import families
from workflow.arms import ArmError, arm_configs, check_overlays

# DEFAULT_CONFIG is re-exported: the plan and the tests name it from here.
from workflow.cli_args import (  # noqa: F401
    DEFAULT_CONFIG,
    CommandLineError,
    snakemake_config_args,
    unknown_snakemake_flags,
)
from workflow.files import run_stage
from workflow.names import arm_run_id, isoflop_run_id, point_id, shape_id, token_run_id, wsd_run_id
from workflow.scaling import scaled_hyperparameters
from workflow.spec import Execution, ModelConfig, OptimizerSettings, RunSpec, ScalingRules
from workflow.steps import run_points

# Keys of the train section copied into each run's spec: its optimizer settings,
# the model settings a grid shape does not give, and the run's other settings.
OPTIM_KEYS = tuple(field.name for field in dataclasses.fields(OptimizerSettings))
MODEL_KEYS = ("seq_len", "mlp_ratio", "norm", "positions", "tie_embeddings", "bias")
RUN_KEYS = ("schedule", "wsd_decay_fraction", "data_order")
# ... and how it is executed: these never retrain a run (workflow.spec.Execution).
EXECUTION_KEYS = tuple(field.name for field in dataclasses.fields(Execution))


class ConfigError(ValueError):
    """A config that cannot run; the message names the offending key."""


def model_settings(train: dict, vocab_size: int, shape: dict, where: str) -> ModelConfig:
    """The model of a grid shape; a shape that cannot be built is a config error.

    A shape's family is its own ``family`` key, or else ``train.family``.
    """
    try:
        family = families.get_family(shape.get("family", train["family"]))
    except ValueError as e:
        raise ConfigError(f"config error at {where}: {e}") from None
    missing = [key for key in family.SHAPE_KEYS if key not in shape]
    if missing:
        raise ConfigError(f"config error at {where}: a {family.NAME} shape needs {', '.join(missing)}")
    model = ModelConfig(
        family=family.NAME,
        vocab_size=vocab_size,
        n_layer=shape["n_layer"],
        d_model=shape["d_model"],
        # Recorded for every family, so that the spec text is the same as it always was.
        n_head=shape.get("n_head", 1),
        **{k: train[k] for k in MODEL_KEYS},
    )
    try:
        families.validate(model)
    except ValueError as e:
        raise ConfigError(f"config error at {where}: {e}") from None
    return model


def build_spec(
    config: dict,
    run_id: str,
    model: ModelConfig,
    tokens: int,
    seed: int,
    grid: str,
    compute_budget: float | None,
    branch_tokens: list[int],
) -> RunSpec:
    """One run's settings from the train section: its model, budget, seed and the grid that made it."""
    train = config["train"]
    scaling = ScalingRules(**train["scaling"])
    lr, batch_tokens = scaled_hyperparameters(
        scaling, model, lr=train["lr"], batch_tokens=train["batch_tokens"], micro_batch_size=train["micro_batch_size"]
    )
    optim = OptimizerSettings(**{**{k: train[k] for k in OPTIM_KEYS}, "lr": lr, "batch_tokens": batch_tokens})
    return RunSpec(
        run_id=run_id,
        grid=grid,
        compute_budget=compute_budget,
        model=model,
        tokens=int(tokens),
        branch_tokens=tuple(int(b) for b in branch_tokens),
        seed=int(seed),
        optim=optim,
        scaling=scaling,
        **{k: train[k] for k in RUN_KEYS},
        # null by default (the schema fills it in; configs written before it still hold)
        warmup_tokens=train.get("warmup_tokens"),
        # shard and nodes have defaults (configs written before them still hold)
        execution=Execution(**{k: train[k] for k in EXECUTION_KEYS if k in train}),
    )


def expand_runs(config: dict, arm: str | None = None) -> dict[str, RunSpec]:
    """Every run of the study (or of its arm ``arm``, whose name starts the run ids), keyed by run id,
    each with its full settings.

    Under the ``wsd`` schedule each shape and seed trains one run, with a cooldown branch (a point
    of the study) at each token budget of the shapes x token budgets grid and at the tokens each
    IsoFLOP budget buys that shape: a shape listed in both grids trains once for both.
    """
    train = config["train"]
    vocab_size = config["tokenizer"]["vocab_size"]
    # The configured batch first (named as its key), then each run's own (after the scaling rules and
    # overrides) in check_run.
    batch_tokens = train["batch_tokens"]
    check_whole_micro_batches(batch_tokens, train["micro_batch_size"], train["seq_len"], "train.batch_tokens")
    wsd = train["schedule"] == "wsd"
    runs: dict[str, RunSpec] = {}
    # (shape id, seed) -> the model, {branch tokens: IsoFLOP budget or None}, the grids it comes from
    branches: dict[tuple[str, int], tuple[ModelConfig, dict[int, float | None], list[str], str]] = {}

    def add(spec: RunSpec, where: str) -> None:
        run_id = spec.run_id
        if run_id in runs:
            raise ConfigError(f"config error at {where}: duplicate run id {run_id!r}")
        runs[run_id] = spec

    def add_branch(model: ModelConfig, seed: int, tokens: int, budget: float | None, grid: str, where: str) -> None:
        _, points, grids, _ = branches.setdefault((shape_id(model), seed), (model, {}, [], where))
        if tokens in points and points[tokens] != budget:
            raise ConfigError(
                f"config error at {where}: shape {shape_id(model)} trains {tokens} tokens both as a token "
                f"budget and for an IsoFLOP budget; change one"
            )
        points[tokens] = budget
        if grid not in grids:
            grids.append(grid)

    grid = train["grid"]
    for j, tokens in enumerate(grid["token_budgets"]):
        if tokens < batch_tokens:
            raise ConfigError(
                f"config error at train.grid.token_budgets[{j}]: {tokens} tokens is less than one step "
                f"of train.batch_tokens = {batch_tokens}"
            )
    for i, shape in enumerate(grid["shapes"]):
        where = f"train.grid.shapes[{i}]"
        model = model_settings(train, vocab_size, shape, where)
        for seed in grid["seeds"]:
            for tokens in grid["token_budgets"]:
                if wsd:
                    add_branch(model, seed, tokens, None, "tokens", where)
                    continue
                run_id = arm_run_id(arm, token_run_id(model, tokens, seed))
                add(build_spec(config, run_id, model, tokens, seed, "tokens", None, [tokens]), where)

    iso = train["isoflop"]
    convention = config["fit"]["flop_convention"]
    for i, shape in enumerate(iso["shapes"]):
        where = f"train.isoflop.shapes[{i}]"
        model = model_settings(train, vocab_size, shape, where)
        per_token = families.flops_per_token(convention, model)
        for j, budget in enumerate(iso["compute_budgets"]):
            tokens = int(budget // per_token)
            if tokens < batch_tokens:
                raise ConfigError(
                    f"config error at train.isoflop.compute_budgets[{j}]: budget {budget:g} FLOPs "
                    f"buys {tokens} tokens for shape {shape_id(model)} ({per_token:g} FLOPs/token "
                    f"under '{convention}'), less than one step of {batch_tokens} tokens"
                )
            for seed in iso["seeds"]:
                if wsd:
                    add_branch(model, seed, tokens, float(budget), "isoflop", where)
                    continue
                run_id = arm_run_id(arm, isoflop_run_id(model, budget, seed))
                add(build_spec(config, run_id, model, tokens, seed, "isoflop", float(budget), [tokens]), where)

    for (_, seed), (model, points, grids, where) in branches.items():
        tokens = sorted(points)
        # Named after its longest branch: its tokens, or the IsoFLOP budget it trains to.
        run_id = arm_run_id(arm, wsd_run_id(model, tokens[-1], points[tokens[-1]], seed))
        spec = build_spec(config, run_id, model, tokens[-1], seed, "+".join(grids), None, tokens)
        if any(points[t] is not None for t in tokens):
            spec = dataclasses.replace(spec, branch_compute_budgets=tuple(points[t] for t in tokens))
        add(spec, where)

    if arm is not None:
        runs = {run_id: dataclasses.replace(spec, arm=arm) for run_id, spec in runs.items()}
    for run_id, changes in train.get("overrides", {}).items():
        if run_id not in runs:
            raise ConfigError(
                f"config error at train.overrides: {run_id!r} is not a run of this grid "
                f"(runs: {', '.join(sorted(runs)) or 'none'})"
            )
        optim = {k: v for k, v in changes.items() if k in OPTIM_KEYS}
        execution = {k: v for k, v in changes.items() if k in EXECUTION_KEYS}
        others = {k: v for k, v in changes.items() if k not in OPTIM_KEYS and k not in EXECUTION_KEYS}
        spec = runs[run_id]
        runs[run_id] = dataclasses.replace(
            spec,
            optim=dataclasses.replace(spec.optim, **optim),
            execution=dataclasses.replace(spec.execution, **execution),
            **others,
        )

    if not runs:
        raise ConfigError("config error at train: the grid defines no runs")
    # Every run, as the grid made it or as an override changed it (then the error names the override).
    for spec in runs.values():
        check_run(spec, f"train.overrides.{spec.run_id}" if spec.run_id in train.get("overrides", {}) else "train")
    return runs


def check_whole_micro_batches(
    batch_tokens: int, micro_batch_size: int, seq_len: int, where: str, sep: str = ": "
) -> None:
    """A batch that gradient accumulation reaches exactly: a whole number of micro-batches."""
    step_rows = micro_batch_size * seq_len
    if batch_tokens % step_rows:
        raise ConfigError(
            f"config error at {where}{sep}{batch_tokens} is not a multiple of micro_batch_size x seq_len = "
            f"{micro_batch_size} x {seq_len} = {step_rows}, so gradient accumulation cannot reach it exactly"
        )


def check_run(spec: RunSpec, where: str) -> None:
    """What every run must satisfy, whether the grid made it or an override changed it: a batch of
    whole micro-batches, at least one step at each of its budgets, each point trained as designed
    (``check_points``), and micro-batches that divide among its devices. The error names ``where``
    (the override, or train)."""
    optim = spec.optim
    step_rows = optim.micro_batch_size * spec.model.seq_len
    check_whole_micro_batches(
        optim.batch_tokens, optim.micro_batch_size, spec.model.seq_len, f"{where}: batch_tokens", sep=" "
    )
    smallest = min(spec.branch_tokens)
    if smallest < optim.batch_tokens:
        raise ConfigError(
            f"config error at {where}: run {spec.run_id} trains {smallest} tokens, less than one step of "
            f"batch_tokens = {optim.batch_tokens}"
        )
    for a, b in zip(spec.branch_tokens, spec.branch_tokens[1:]):
        if a // optim.batch_tokens == b // optim.batch_tokens:
            raise ConfigError(
                f"config error at {where}: run {spec.run_id} has cooldown branches at {a} and {b} tokens, "
                f"the same number of whole steps of batch_tokens = {optim.batch_tokens}; move one budget"
            )
    check_points(spec, where)
    accumulation = optim.batch_tokens // step_rows
    world = spec.execution.world_size
    if accumulation % world:
        among = f"{world} devices" if spec.execution.nodes == 1 else f"{world} devices ({spec.execution.nodes} nodes)"
        raise ConfigError(
            f"config error at {where}: run {spec.run_id} has {accumulation} micro-batches per step "
            f"(batch_tokens {optim.batch_tokens} / {step_rows}), which do not divide among its "
            f"{among}; change micro_batch_size, devices or nodes"
        )


def check_points(spec: RunSpec, where: str) -> None:
    """Every point of the run trained as designed, with its steps, warmup and fork counted as the
    trainer counts them (``workflow.steps``): some steps past the warmup, and for a WSD branch the
    cooldown of ``wsd_decay_fraction`` of its steps, which a warmup reaching past the fork would
    shorten. A point that ends in warmup never trains at its peak learning rate (nor, under WSD, cools
    down): its loss measures the warmup, not the model and budget."""
    optim = spec.optim
    if spec.warmup_tokens is not None:
        warmup = f"train.warmup_tokens = {spec.warmup_tokens}"
    else:
        warmup = f"train.warmup_fraction = {optim.warmup_fraction:g} of the run's longest point"
    fix = (
        "shorten the warmup (train.warmup_tokens, or warmup_fraction), give the point a larger budget, "
        "or drop the budget"
    )
    for point in run_points(spec):
        pid = point_id(spec.run_id, point.tokens, spec.schedule, spec.point_budget(point.tokens))
        if point.ends_in_warmup:
            raise ConfigError(
                f"config error at {where}: point {pid} trains {point.steps} steps of {optim.batch_tokens} "
                f"tokens, all within its warmup of {point.warmup} steps ({warmup}), so it ends in warmup; {fix}"
            )
        if point.cooldown_shortened:
            raise ConfigError(
                f"config error at {where}: point {pid} cools down for {point.cooldown} of its {point.steps} "
                f"steps, not the {point.designed_cooldown} of wsd_decay_fraction = {spec.wsd_decay_fraction:g}, "
                f"since its warmup of {point.warmup} steps ({warmup}) ends after step {point.designed_fork}; {fix}"
            )


def spec_json(spec: RunSpec) -> str:
    """Canonical text of a run's settings: Snakemake reruns a run when it changes."""
    return spec.to_json()


# --------------------------------------------------------------------------- paths and artefacts

# Settings that name files on this machine: `~` and environment variables in them are expanded.
PATH_KEYS = (("work_dir",), ("corpus", "lock_file"), ("tokenizer", "model_file"))
UNSET_VARIABLE = re.compile(r"\$(\w+|\{\w+\})")


def expand_paths(config: dict) -> None:
    """Expand `~` and `$VARS` in the settings that name local paths, in place; a variable that is not
    set is a config error naming the key (a literal folder named `$SCRATCH` would be made otherwise)."""
    for keys in PATH_KEYS:
        section = config
        for key in keys[:-1]:
            section = section.get(key, {})
        value = section.get(keys[-1])
        if not isinstance(value, str):
            continue
        expanded = os.path.expandvars(os.path.expanduser(value))
        unset = UNSET_VARIABLE.search(expanded)
        if unset:
            raise ConfigError(
                f"config error at {'.'.join(keys)}: {value!r} uses the environment variable "
                f"{unset.group(1).strip('{}')}, which is not set here; set it, or write the path out"
            )
        section[keys[-1]] = expanded


NUMBER_AS_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def numbers_written_as_text(config, where: str = "") -> list[str]:
    """Keys whose value is text that reads as a number (YAML 1.1 reads `4e-3` as a string), each with a hint."""
    found = []
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else []
    for key, value in items:
        path = f"{where}.{key}" if where and not isinstance(key, int) else f"{where}[{key}]" if where else str(key)
        if isinstance(value, str) and NUMBER_AS_TEXT.match(value):
            mantissa, exponent = re.split("[eE]", value)
            mantissa = mantissa if "." in mantissa else mantissa + ".0"
            sign = exponent if exponent[0] in "+-" else "+" + exponent
            found.append(f"{path} is {value!r}, which YAML reads as text: write {mantissa}e{sign}")
        elif isinstance(value, (dict, list)):
            found += numbers_written_as_text(value, path)
    return found


def check_config(config: dict) -> dict[str, RunSpec]:
    """Semantic checks beyond the schema; returns the expanded runs."""
    sources = config["corpus"]["sources"]
    names = [s["name"] for s in sources]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"config error at corpus.sources: duplicate source name {name!r}")
    fit = config["fit"]
    mismatch = families.axis_mismatch(fit["flop_convention"], fit["parameter_count"])
    if mismatch:
        raise ConfigError(
            f"config error at fit.flop_convention ({fit['flop_convention']}) and fit.parameter_count "
            f"({fit['parameter_count']}): {mismatch}"
        )
    runs = expand_arms(config) if config.get("arms") else expand_runs(config)
    check_tune_shapes(config, runs)
    return runs


def expand_arms(config: dict) -> dict[str, RunSpec]:
    """Every run of every arm (``workflow.arms``); an error in an arm's settings names the arm."""
    if (config.get("tune") or {}).get("enabled"):
        raise ConfigError("config error at tune.enabled: a study with arms cannot be tuned yet; tune each arm alone")
    try:
        arms = arm_configs(config)
    except ArmError as e:
        raise ConfigError(str(e)) from None
    runs: dict[str, RunSpec] = {}
    sources: dict[str, tuple[str, dict]] = {}
    for name, arm in arms.items():
        tokenizer = arm["tokenizer"]
        if "model_file" in tokenizer and "model_url" in tokenizer:
            raise ConfigError(
                f"config error at arms.overlays.{name}.tokenizer.model_file: the study gives tokenizer.model_url; "
                f"an arm with a tokenizer file of its own needs a study without one"
            )
        for source in arm["corpus"]["sources"]:
            first = sources.setdefault(source["name"], (name, source))
            if first[1] != source:
                raise ConfigError(
                    f"config error at arms.overlays.{name}.corpus.sources: source {source['name']!r} differs from "
                    f"arm {first[0]}'s source of that name; give it a name of its own"
                )
        try:
            runs.update(expand_runs(arm, arm=name))
        except ConfigError as e:
            raise ConfigError(str(e).replace("config error at ", f"config error in arm {name} at ", 1)) from None
    return runs


def check_tune_shapes(config: dict, runs: dict[str, RunSpec]) -> None:
    """Each shape of tune.shapes (when tuning) is a shape the study trains: a typo (n_head 4 for 2)
    would sweep a shape of no run, and the intended shape would take the fitted rule unnoticed. Here,
    not in workflow.tune, so that the config check (which imports nothing above this module) refuses it."""
    tune = config.get("tune") or {}
    if not tune.get("enabled"):
        return
    study = sorted({shape_id(spec.model) for spec in runs.values()})
    for i, shape in enumerate(tune.get("shapes") or []):
        label = shape_id(model_settings(config["train"], config["tokenizer"]["vocab_size"], shape, f"tune.shapes[{i}]"))
        if label not in study:
            raise ConfigError(
                f"config error at tune.shapes[{i}]: shape {label} is not a shape of the study, so its sweep "
                f"would choose values for no run; the study's shapes: {', '.join(study)}"
            )


def write_study_config(config: dict, path: Path) -> None:
    """The study's validated config, kept in results/ so that a reviewer can
    regenerate the fits and the report from results/ alone."""
    from workflow.files import write_text_atomic

    study = {k: v for k, v in config.items() if k != "regenerate_from_results"}
    header = (
        "# The config this study ran with (written by the pipeline). Regenerate the fits and\n"
        "# the report from results/ alone: see README.md, 'Reviewers: regenerate from results'.\n"
    )
    write_text_atomic(Path(path), header + yaml.safe_dump(study, sort_keys=False))


SCHEMA = Path(__file__).resolve().parents[1] / "config" / "config.schema.yaml"


def config_files_in(snakemake_args: list[str]) -> list[Path]:
    """The config files a Snakemake command line loads: config/config.yaml (the Snakefile's own), then
    those given with --configfile / --configfiles, in order (``workflow.cli_args``)."""
    try:
        return snakemake_config_args(snakemake_args).config_files()
    except CommandLineError as e:
        raise ConfigError(str(e)) from None


def load_command_line(snakemake_args: list[str], only_config: bool = False, warnings: list | None = None) -> dict:
    """The config a Snakemake command line runs with: its config files and --config entries, read as
    Snakemake reads them (``workflow.cli_args``), merged, validated and expanded. With ``only_config``,
    an argument other than --configfile and --config is refused. ConfigError: one line. ``warnings``
    (a list) receives a line for each overlay that drops an earlier file's corpus source."""
    try:
        args = snakemake_config_args(snakemake_args, only_config=only_config)
    except CommandLineError as e:
        raise ConfigError(str(e)) from None
    return load_config_files(args.config_files(), overrides=args.overrides(), warnings=warnings)


def dropped_sources(config: dict, loaded: dict, path: Path, set_by: dict) -> str | None:
    """A line when the file ``path`` replaces corpus.sources that an earlier config file (not the
    first, config/config.yaml, whose corpus every study replaces) set, dropping a source of it. Lists are
    replaced, not merged: an overlay meant to shrink a study (`calibration.yaml tiny.yaml`) would
    otherwise run another study. ``set_by`` records which file set the list; updated here."""
    new = (loaded.get("corpus") or {}).get("sources") if isinstance(loaded.get("corpus"), dict) else None
    if not isinstance(new, list):
        return None
    earlier, set_by["corpus.sources"] = set_by.get("corpus.sources"), path
    old = (config.get("corpus") or {}).get("sources") or []
    names = {s.get("name") for s in new if isinstance(s, dict)}
    dropped = [s.get("name") for s in old if isinstance(s, dict) and s.get("name") not in names]
    if earlier is None or not dropped:
        return None
    return (
        f"{path} replaces corpus.sources, which {earlier} set, dropping its source{'s' if len(dropped) > 1 else ''} "
        f"{', '.join(map(str, dropped))} (a list is replaced, not merged); to keep it, leave corpus out of {path} "
        f"or list the source there too (docs/configuration.md, Overlays)"
    )


def check_files(paths: list[Path]) -> dict[str, RunSpec]:
    """The runs of config files (``load_config_files``). Snakemake reads config files before the
    Snakefile and reports a syntax error without file or line, so `./pipeline.sh run` calls this
    first."""
    return check_config(load_config_files(paths))


def load_config_files(paths: list[Path], overrides: dict | None = None, warnings: list | None = None) -> dict:
    """Load, merge (later files win, key by key, then ``overrides``: Snakemake's --config), validate
    and expand config files; ConfigError names the file and line of a YAML syntax error, or the key of
    a bad value. ``warnings`` receives a line per overlay dropping an earlier file's corpus source."""
    from snakemake.utils import update_config
    from snakemake_interface_common.exceptions import WorkflowError

    config: dict = {}
    set_by: dict = {}
    for i, path in enumerate(paths):
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"config file {path}: {e.strerror}") from None
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark
            raise ConfigError(
                f"config file {path}, line {mark.line + 1}, column {mark.column + 1}: {e.problem}"
                + (f" ({e.context})" if e.context else "")
            ) from None
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {path}: the top level must be a mapping of keys, not {type(loaded).__name__}"
            )
        if i and (line := dropped_sources(config, loaded, path, set_by)) and warnings is not None:
            warnings.append(line)
        update_config(config, loaded)
    update_config(config, overrides or {})
    try:
        validate_config(config, SCHEMA)
    except WorkflowError as e:
        raise ConfigError(schema_error_line(str(e))) from None
    expand_paths(config)
    return config


def validate_config(config: dict, schema: str | os.PathLike) -> None:
    """Snakemake's schema validation (which fills in defaults). A config holding a number that YAML
    read as text (`4e-3`) fails with a ConfigError naming each such key and how to write it; any other
    failure is Snakemake's own error, unchanged."""
    from snakemake.utils import validate
    from snakemake_interface_common.exceptions import WorkflowError

    try:
        check_overlays(config)
    except ArmError as e:
        raise ConfigError(str(e)) from None
    try:
        validate(config, str(schema))
    except WorkflowError:
        if hints := numbers_written_as_text(config):
            raise ConfigError("config error: " + "; ".join(hints)) from None
        raise


def schema_error_line(message: str) -> str:
    """Snakemake's multi-line schema error as one line: the key (from its "On instance[...]" line) and
    what is wrong (its "ValidationError:" line); the whole text where those are not found."""
    reason = re.search(r"^ValidationError: (.*)$", message, flags=re.M)
    where = re.search(r"^On instance((?:\[[^\]]*\])*):", message, flags=re.M)
    if not reason:
        return "config error: " + " ".join(message.split())
    key = ".".join(part.strip("'") for part in re.findall(r"\[([^\]]*)\]", where.group(1))) if where else ""
    return f"config error{f' at {key}' if key else ''}: {reason.group(1)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.config", description="Check or record a study's config.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--config-json", help="the validated config as JSON (with --write)")
    action.add_argument(
        "--check",
        nargs=argparse.REMAINDER,
        metavar="SNAKEMAKE_ARGS",
        help="check the config a snakemake command line would load (config/config.yaml, --configfile and "
        "--config, read as Snakemake reads them); the rest of the line is Snakemake's to check",
    )
    parser.add_argument("--write", type=Path, help="YAML file to write")
    args = parser.parse_args(argv)
    if args.check is not None:
        if unknown := unknown_snakemake_flags(args.check):
            print(f"error: {unknown[0]} is not a flag of Snakemake's (snakemake --help lists them)", file=sys.stderr)
            return 2
        warnings: list[str] = []
        try:
            runs = check_config(load_command_line(args.check, warnings=warnings))
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        files = snakemake_config_args(args.check).config_files()
        print(f"config: {len(runs)} runs ({', '.join(str(f) for f in files)})")
        return 0
    if args.write is None:
        parser.error("--config-json needs --write")
    write_study_config(json.loads(args.config_json), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "config"))
