"""The training grid: from config to one readable, settings-derived run id per run.

Each run's settings are a ``workflow.spec.RunSpec``. Checks that JSON Schema
cannot express (n_head dividing d_model, duplicate run ids, an IsoFLOP budget
too small for a shape) also live here, so that a bad config stops before any
job runs with a message naming the key.

The Snakefile imports this module on every invocation: it imports no torch,
numpy or polars (a test makes sure).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
from pathlib import Path

import yaml

from workflow.families import get_family
from workflow.io import run_stage
from workflow.spec import Execution, ModelConfig, OptimizerSettings, RunSpec, ScalingRules

# Keys of the train section copied into each run's spec: its optimizer settings,
# the model settings a grid shape does not give, and the run's other settings.
OPTIM_KEYS = tuple(field.name for field in dataclasses.fields(OptimizerSettings))
MODEL_KEYS = ("seq_len", "mlp_ratio", "norm", "positions", "tie_embeddings", "bias")
RUN_KEYS = ("schedule", "wsd_decay_fraction", "data_order")
# ... and how it is executed: these never retrain a run (workflow.spec.Execution).
EXECUTION_KEYS = tuple(field.name for field in dataclasses.fields(Execution))


class ConfigError(ValueError):
    """A config that cannot run; the message names the offending key."""


def format_count(value: float) -> str:
    """500000 -> '500k', 2500000 -> '2.5M'; exact, so distinct counts never collide."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            scaled = value / scale
            text = f"{scaled:.6g}"
            if float(text) * scale == value:
                return text + suffix
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def format_flops(value: float) -> str:
    """3e15 -> '3e15', 2.5e15 -> '2.5e15'."""
    exponent = int(math.floor(math.log10(value)))
    mantissa = value / 10**exponent
    return f"{mantissa:.6g}e{exponent}"


def model_settings(train: dict, vocab_size: int, shape: dict, where: str) -> ModelConfig:
    """The model of a grid shape; a shape that cannot be built is a config error.

    A shape's family is its own ``family`` key, or else ``train.family``.
    """
    try:
        family = get_family(shape.get("family", train["family"]))
    except ValueError as e:
        raise ConfigError(f"config error at {where}: {e}") from None
    missing = [key for key in family.SHAPE_KEYS if key not in shape]
    if missing:
        raise ConfigError(f"config error at {where}: a {family.NAME} shape needs {', '.join(missing)}")
    try:
        return ModelConfig(
            family=family.NAME,
            vocab_size=vocab_size,
            n_layer=shape["n_layer"],
            d_model=shape["d_model"],
            # Recorded for every family, so that the spec text is the same as it always was.
            n_head=shape.get("n_head", 1),
            **{k: train[k] for k in MODEL_KEYS},
        )
    except ValueError as e:
        raise ConfigError(f"config error at {where}: {e}") from None


def shape_id(model: ModelConfig) -> str:
    """The run id's model part, e.g. ``L2-d64-h4`` or ``lstm-L2-d64``."""
    return get_family(model.family).label(model)


def scaled_hyperparameters(train: dict, model: ModelConfig) -> tuple[float, int]:
    """(lr, batch_tokens) following rules in N, the non-embedding parameters:

    lr x (N / reference_params)^lr_exponent, and batch_tokens x (N / reference_params)^batch_exponent
    rounded to a whole number of micro-batches (at least one). Exponents of 0 leave both as set.
    """
    rule = train["scaling"]
    ratio = get_family(model.family).parameter_counts(model).non_embedding / rule["reference_params"]
    lr = train["lr"] * ratio ** rule["lr_exponent"] if rule["lr_exponent"] else train["lr"]
    batch = train["batch_tokens"]
    if rule["batch_exponent"]:
        micro = train["micro_batch_size"] * train["seq_len"]
        batch = max(1, round(batch * ratio ** rule["batch_exponent"] / micro)) * micro
    return lr, batch


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
    lr, batch_tokens = scaled_hyperparameters(train, model)
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
        scaling=ScalingRules(**train["scaling"]),
        **{k: train[k] for k in RUN_KEYS},
        # shard and nodes have defaults (configs written before them still hold)
        execution=Execution(**{k: train[k] for k in EXECUTION_KEYS if k in train}),
    )


def check_batch(train: dict) -> int:
    step_rows = train["micro_batch_size"] * train["seq_len"]
    if train["batch_tokens"] % step_rows:
        raise ConfigError(
            f"config error at train.batch_tokens: {train['batch_tokens']} is not a multiple of "
            f"micro_batch_size x seq_len = {step_rows}, so gradient accumulation cannot reach it exactly"
        )
    return train["batch_tokens"]


def expand_runs(config: dict) -> dict[str, RunSpec]:
    """Every run of the study, keyed by run id, each with its full settings.

    Under the ``wsd`` schedule each shape and seed trains one run, with a cooldown branch (a point
    of the study) at each token budget of the shapes x token budgets grid and at the tokens each
    IsoFLOP budget buys that shape: a shape listed in both grids trains once for both.
    """
    train = config["train"]
    vocab_size = config["tokenizer"]["vocab_size"]
    batch_tokens = check_batch(train)
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
                run_id = f"{shape_id(model)}_D{format_count(tokens)}_s{seed}"
                add(build_spec(config, run_id, model, tokens, seed, "tokens", None, [tokens]), where)

    iso = train["isoflop"]
    convention = config["fit"]["flop_convention"]
    for i, shape in enumerate(iso["shapes"]):
        where = f"train.isoflop.shapes[{i}]"
        model = model_settings(train, vocab_size, shape, where)
        per_token = get_family(model.family).flops_per_token(convention, model)
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
                run_id = f"{shape_id(model)}_C{format_flops(budget)}_s{seed}"
                add(build_spec(config, run_id, model, tokens, seed, "isoflop", float(budget), [tokens]), where)

    for (label, seed), (model, points, grids, where) in branches.items():
        tokens = sorted(points)
        longest = points[tokens[-1]]
        # Named after its longest branch: its tokens, or the IsoFLOP budget it trains to.
        length = f"-C{format_flops(longest)}" if longest is not None else format_count(tokens[-1])
        run_id = f"{label}_WSD{length}_s{seed}"
        spec = build_spec(config, run_id, model, tokens[-1], seed, "+".join(grids), None, tokens)
        if any(points[t] is not None for t in tokens):
            spec = dataclasses.replace(spec, branch_compute_budgets=tuple(points[t] for t in tokens))
        add(spec, where)

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


def check_run(spec: RunSpec, where: str) -> None:
    """What every run must satisfy, whether the grid made it or an override changed it: a batch of
    whole micro-batches, at least one step at each of its budgets, and micro-batches that divide among
    its devices. The error names ``where`` (the override, or train)."""
    optim = spec.optim
    step_rows = optim.micro_batch_size * spec.model.seq_len
    if optim.batch_tokens % step_rows:
        raise ConfigError(
            f"config error at {where}: batch_tokens {optim.batch_tokens} is not a multiple of micro_batch_size "
            f"x seq_len = {optim.micro_batch_size} x {spec.model.seq_len} = {step_rows}, so gradient accumulation "
            f"cannot reach it exactly"
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
    accumulation = optim.batch_tokens // step_rows
    world = spec.execution.world_size
    if accumulation % world:
        among = f"{world} devices" if spec.execution.nodes == 1 else f"{world} devices ({spec.execution.nodes} nodes)"
        raise ConfigError(
            f"config error at {where}: run {spec.run_id} has {accumulation} micro-batches per step "
            f"(batch_tokens {optim.batch_tokens} / {step_rows}), which do not divide among its "
            f"{among}; change micro_batch_size, devices or nodes"
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


def settings_key(*parts) -> str:
    """12 hex digits naming a set of settings: equal settings, equal key."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def artefact_keys(config: dict) -> dict[str, str]:
    """Keys of the corpus, tokenizer and dataset made by this config, each covering every setting that
    produces it (and, through the one before, everything upstream). Their work-directory paths carry
    them, so two studies sharing one work_dir (scratch storage) never read each other's artefacts, and
    reuse them where their settings are the same."""
    corpus = config["corpus"]
    corpus_key = settings_key("corpus", corpus["sources"], corpus.get("dedup", False))
    tokenizer_key = settings_key("tokenizer", corpus_key, config["tokenizer"])
    dataset_key = settings_key("dataset", tokenizer_key, config["dataset"])
    return {"corpus": corpus_key, "tokenizer": tokenizer_key, "dataset": dataset_key}


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
    return expand_runs(config)


def trained_tokens(spec: RunSpec) -> float:
    """Tokens a run trains: its budget, plus under WSD every cooldown branch but the last (extra work)."""
    tokens = spec.tokens
    if spec.schedule == "wsd":
        tokens += sum(b * spec.wsd_decay_fraction for b in spec.branch_tokens[:-1])
    return tokens


def training_seconds(spec: RunSpec, cluster: dict) -> float:
    """A run's estimated training time: its PaLM FLOPs over cluster.train_flops_per_s per device."""
    per_token = get_family(spec.model.family).flops_per_token("palm", spec.model)
    return per_token * trained_tokens(spec) / (cluster["train_flops_per_s"] * spec.execution.world_size)


def train_runtime_minutes(spec: RunSpec, cluster: dict, attempt: int = 1) -> int:
    """Slurm time limit for a run: its training FLOPs over an assumed throughput,
    times a safety factor, times the attempt (a retry after a time limit resumes
    from its checkpoint with more time), at least ``min_runtime_minutes``."""
    seconds = training_seconds(spec, cluster) * cluster["runtime_factor"] * attempt
    return max(cluster["min_runtime_minutes"], math.ceil(seconds / 60))


def train_slurm_resources(execution: Execution) -> dict[str, int | str | None]:
    """The Slurm executor plugin's resources for a run's training job; None leaves a key out, so a
    one-node run asks for what it always did. One node: `gpu` GPUs (none on the CPU). n > 1 nodes: n
    nodes and n tasks, one per node (the trainer calls srun, one torchrun each), `gres` for the GPUs
    of each node (the plugin's `gpu` counts the job's), `tasks_per_gpu` 0 so that the plugin does not
    turn `tasks` into --ntasks-per-gpu, and `mpi`, which tells it that the job's command starts its
    own tasks."""
    gpus = 0 if execution.device == "cpu" else execution.devices
    if execution.nodes == 1:
        return {"gpu": gpus, "nodes": None, "tasks": None, "mpi": None, "gres": None, "tasks_per_gpu": None}
    per_node = f"gpu:{gpus}" if gpus else None
    return {
        "gpu": None,
        "nodes": execution.nodes,
        "tasks": execution.nodes,
        "mpi": "srun",
        "gres": per_node,
        "tasks_per_gpu": 0 if per_node else None,
    }


def write_study_config(config: dict, path: Path) -> None:
    """The study's validated config, kept in results/ so that a reviewer can
    regenerate the fits and the report from results/ alone."""
    from workflow.io import write_text_atomic

    study = {k: v for k, v in config.items() if k != "regenerate_from_results"}
    header = (
        "# The config this study ran with (written by the pipeline). Regenerate the fits and\n"
        "# the report from results/ alone: see README.md, 'Reviewers: regenerate from results'.\n"
    )
    write_text_atomic(Path(path), header + yaml.safe_dump(study, sort_keys=False))


DEFAULT_CONFIG = Path("config/config.yaml")
SCHEMA = Path(__file__).resolve().parents[1] / "config" / "config.schema.yaml"


def config_files_in(snakemake_args: list[str]) -> list[Path]:
    """The config files a Snakemake command line loads: config/config.yaml (the Snakefile's own), then
    those given with --configfile / --configfiles, in order."""
    files, taking = [DEFAULT_CONFIG], False
    for arg in snakemake_args:
        if arg in ("--configfile", "--configfiles"):
            taking = True
        elif arg.startswith(("--configfile=", "--configfiles=")):
            files.append(Path(arg.split("=", 1)[1]))
            taking = False
        elif taking and not arg.startswith("-"):
            files.append(Path(arg))
        else:
            taking = False
    return files


def check_files(paths: list[Path]) -> dict[str, RunSpec]:
    """The runs of config files (``load_config_files``). Snakemake reads config files before the
    Snakefile and reports a syntax error without file or line, so `./pipeline.sh run` calls this
    first."""
    return check_config(load_config_files(paths))


def load_config_files(paths: list[Path]) -> dict:
    """Load, merge (later files win, key by key), validate and expand config files; ConfigError names
    the file and line of a YAML syntax error, or the key of a bad value."""
    from snakemake.utils import update_config
    from snakemake_interface_common.exceptions import WorkflowError

    config: dict = {}
    for path in paths:
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
        update_config(config, loaded)
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
        help="check the config files a snakemake command line would load (config/config.yaml and --configfile)",
    )
    parser.add_argument("--write", type=Path, help="YAML file to write")
    args = parser.parse_args(argv)
    if args.check is not None:
        try:
            runs = check_files(config_files_in(args.check))
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"config: {len(runs)} runs")
        return 0
    if args.write is None:
        parser.error("--config-json needs --write")
    write_study_config(json.loads(args.config_json), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "config"))
