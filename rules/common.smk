# Helpers shared by the rules: the expanded grid, paths and per-run settings.
import json
import os
import re
import shlex

from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from workflow.arms import arm_configs
from workflow.download import download_plan
from workflow.config import ConfigError, check_config, expand_paths, spec_json
from workflow.names import artefact_keys, yardstick_key
from workflow.regenerate import check_files, check_recorded_config
from workflow.slurm_resources import train_runtime_minutes, train_slurm_resources
from workflow.report import ARMS_CHARTS, CHARTS as REPORT_CHARTS, TUNE_CHARTS
from workflow.tune import SWEEP_TABLE, TUNING_FILE, apply_tuning, read_tuning, selection_plan, sweep_runs

try:
    expand_paths(config)
    RUNS = check_config(config)
    # The tune stage's sweep points (tune.enabled): training runs like the grid's, trained first.
    SWEEP = sweep_runs(config, RUNS)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
TUNING = bool(SWEEP)
TRAINING_RUNS = {**RUNS, **SWEEP}

# Jobs run `python -m workflow.<stage>` in the working directory; under `snakemake --directory ELSEWHERE`
# that holds no workflow/ package, and the jobs imported whichever `workflow` was installed (another
# checkout, say), not this Snakefile's. This Snakefile's package comes first on their path. (Snakemake
# formats the prefix with each job's command: braces are doubled.)
PACKAGE_ROOT = shlex.quote(workflow.basedir).replace("{", "{{").replace("}", "}}")
shell.prefix(f"export PYTHONPATH={PACKAGE_ROOT}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

WORK = config["work_dir"].rstrip("/")
# A study with arms (workflow.arms): each arm's config, by name. The corpus, tokenizer and dataset rules
# make the baseline arm's (BASE); the arm_* rules make those of arms whose settings differ from it.
ARMS = arm_configs(config)
BASE = ARMS[config["arms"]["baseline"]] if ARMS else config
# Work-directory paths carry the key of the settings that made them (workflow.names.artefact_keys):
# studies sharing one work_dir (scratch) reuse what is identical and never read each other's artefacts,
# and so do arms of one study.
KEYS = artefact_keys(BASE)
CORPUS_DIR = f"{WORK}/corpus/{KEYS['corpus']}"
TOKENIZER_DIR = f"{WORK}/tokenizer/{KEYS['tokenizer']}"
DATASET_DIR = f"{WORK}/dataset/{KEYS['dataset']}"
# Every run's weights go under the base dataset's key, arms' too (their run ids differ); a run's own
# data is recorded in its weights and checked by the evaluation (workflow.shards.data_identity).
RUNS_DIR = f"{WORK}/runs/{KEYS['dataset']}"
ARM_KEYS = {arm: artefact_keys(arm_config) for arm, arm_config in ARMS.items()}
# The settings behind each corpus, tokenizer and dataset key of an arm that the base's rules do not make.
ARM_STAGES = {
    stage: {keys[stage]: ARMS[arm] for arm, keys in ARM_KEYS.items() if keys[stage] != KEYS[stage]}
    for stage in ("corpus", "tokenizer", "dataset")
}
# ... and the keys of the arm behind each of those (the corpus of its tokenizer, say).
ARM_KEYS_BY = {stage: {keys[stage]: keys for keys in ARM_KEYS.values()} for stage in ("corpus", "tokenizer", "dataset")}
# Arms on other token ids than the base's are all scored on the base arm's validation text, in bits per
# byte (workflow.yardstick): each tokenizer's yardstick, by its key.
YARDSTICKS = (
    {yardstick_key(KEYS["dataset"], keys["tokenizer"]): keys for keys in ARM_KEYS.values()}
    if any(keys["dataset"] != KEYS["dataset"] for keys in ARM_KEYS.values())
    else {}
)
SOURCES = {source["name"]: source for arm in [config, *ARMS.values()] for source in arm["corpus"]["sources"]}


def run_keys(run):
    """The artefact keys of a run's arm (the study's outside arms)."""
    arm = TRAINING_RUNS[run].arm
    return ARM_KEYS[arm] if arm else KEYS


def run_dataset(wildcards):
    """The token shards a run trains on: its arm's dataset."""
    return f"{WORK}/dataset/{run_keys(wildcards.run)['dataset']}"


def run_yardstick(wildcards):
    """The yardstick a run is scored on where arms differ in tokens; none otherwise."""
    if not YARDSTICKS:
        return []
    return f"{WORK}/yardstick/{yardstick_key(KEYS['dataset'], run_keys(wildcards.run)['tokenizer'])}"


def fit_arms_args():
    """The fit's comparison of the arms with the baseline (workflow.fit, --arms); nothing outside arms."""
    return f"--arms arm --baseline {config['arms']['baseline']}" if ARMS else ""


wildcard_constraints:
    run="|".join(re.escape(run_id) for run_id in TRAINING_RUNS),
    source="|".join(re.escape(name) for name in SOURCES),


RESOURCES = config["resources"]


def stage_threads(stage):
    """CPU threads of a stage's jobs (config resources; Slurm's --cpus-per-task)."""
    return RESOURCES.get(stage, {}).get("threads", RESOURCES["default"]["threads"])


def stage_mem_mb(stage):
    """Memory of a stage's jobs in MB (config resources; Slurm's --mem)."""
    return RESOURCES.get(stage, {}).get("mem_mb", RESOURCES["default"]["mem_mb"])


def source_files(module):
    """The Python files of a stage's module or package, for rules that rerun when their analysis code changes.
    Relative to the working directory: Snakemake reruns a job whose set of input paths changed, so absolute
    paths reran the analysis of a study whose directory was copied or moved."""
    package = Path(workflow.basedir) / "workflow" / module
    paths = sorted(package.rglob("*.py")) if package.is_dir() else [package.with_suffix(".py")]
    return [os.path.relpath(path) for path in paths]


def analysis_inputs(rules):
    """The files the given rules read and none of them makes (input functions left out)."""
    inputs = {str(path) for rule in rules for path in rule.input if isinstance(path, str)}
    return sorted(inputs - {str(path) for rule in rules for path in rule.output})


def fit_variant_args():
    """The fit CLI's options for the form of Approach 3's law (fit.tie_exponents, fit.fix)."""
    args = ["--tie-exponents"] if config["fit"].get("tie_exponents") else []
    args += [f"--fix {name}={value!r}" for name, value in sorted(config["fit"].get("fix", {}).items())]
    return " ".join(args)


def tuned(wildcards):
    """A grid run of a tuned study waits for the tune checkpoint. Once the selection is made this is
    no input at all, so a new selection retrains only the runs whose spec text (their tuned values)
    changed, not every run whose input got a newer time stamp."""
    if TUNING and wildcards.run in RUNS:
        checkpoints.tune.get()
    return []


def run_spec(wildcards):
    """The settings that define the run's result: Snakemake reruns the run when this text changes.
    In a tuned study, a grid run's optimizer settings come from the tune checkpoint's tuning.json."""
    spec = TRAINING_RUNS[wildcards.run]
    if TUNING and wildcards.run in RUNS:
        tuning = read_tuning(checkpoints.tune.get().output.tuning)
        try:
            spec = apply_tuning(spec, tuning, set(config["train"]["overrides"].get(wildcards.run, {})))
        except ConfigError as error:
            raise WorkflowError(str(error)) from None
    return spec_json(spec)


def run_execution(wildcards):
    """How the run is executed (a resource, so never compared: changing it never retrains)."""
    return TRAINING_RUNS[wildcards.run].execution_json()


def train_runtime(wildcards, attempt):
    """Minutes of Slurm time for a run, from its FLOPs; more on each retry."""
    return train_runtime_minutes(TRAINING_RUNS[wildcards.run], config["cluster"], attempt)


def train_slurm(key):
    """An input function for one of a training job's Slurm resources (workflow.slurm_resources's
    train_slurm_resources: GPUs, and for a multi-node run its nodes, tasks and GPUs per node)."""
    return lambda wildcards: train_slurm_resources(TRAINING_RUNS[wildcards.run].execution)[key]


# Evaluation scores a run on one device: a GPU unless the study trains on the CPU.
EVALUATE_GPUS = 0 if config["train"]["device"] == "cpu" else 1


GIVEN_TOKENIZER_DOWNLOAD = (
    f"{WORK}/downloads/tokenizer/{BASE['tokenizer'].get('model_sha256', '')[:12]}/tokenizer.model"
)


def given_tokenizer():
    """The tokenizer model to use instead of training one: tokenizer.model_file, the download of
    tokenizer.model_url, or None."""
    if "model_url" in BASE["tokenizer"]:
        return GIVEN_TOKENIZER_DOWNLOAD
    return BASE["tokenizer"].get("model_file")


def tokenizer_source(wildcards, input):
    """Train on the documents, or check and use the given model. tokenizer.character_coverage is
    given only where it is not the default, so that the command (and so the rerun triggers) of a
    study from before the setting stays as it was. An arm's tokenizer (wildcard tokenizer_key) reads
    its arm's settings."""
    arm = ARM_STAGES["tokenizer"][wildcards.tokenizer_key] if "tokenizer_key" in wildcards.keys() else BASE
    given = given_tokenizer() if arm is BASE else arm["tokenizer"].get("model_file")
    if given:
        return f"--given-model {shlex.quote(given)}"
    from workflow.names import CHARACTER_COVERAGE

    coverage = arm["tokenizer"]["character_coverage"]
    coverage = f" --character-coverage {coverage}" if coverage != CHARACTER_COVERAGE else ""
    return f"--documents {shlex.quote(input.documents)}{coverage}"


def corpus_file(wildcards):
    """The download plan's entry (url, sha256) of one file of a url source."""
    return CORPUS_FILES[f"{wildcards.source}/{wildcards.file}"]


def local_source(wildcards):
    """The local file behind a file:// URL of the download plan (nothing for http and https)."""
    url = corpus_file(wildcards)["url"]
    return url2pathname(urlsplit(url).path) if url.startswith("file://") else []


def run_files(pattern):
    return expand(pattern, run=sorted(RUNS))


def sweep_files(pattern):
    """The tune stage's sweep runs' files (none unless tune.enabled)."""
    return expand(pattern, run=sorted(SWEEP))


# The report draws the sweep when the study is tuned (results/tune/ from the tune checkpoint, or
# from results/ alone when a reviewer regenerates it). A study with arms gets a comparison page with
# its own charts, each arm's own report beneath it (results/report/arms/ARM/).
SHOWN_CHARTS = ARMS_CHARTS if ARMS else {**REPORT_CHARTS, **(TUNE_CHARTS if TUNING else {})}


REPORT_DIR = "results/report"


def report_tables():
    """The report's tables: a study's parameters, sensitivity panel and look-up table; a study with
    arms' comparison table and each arm's own page."""
    if ARMS:
        return {
            "comparison": report(
                f"{REPORT_DIR}/comparison.csv",
                caption="captions/comparison.rst",
                category="Tables",
            ),
            **{f"arm_{arm}": f"{REPORT_DIR}/arms/{arm}/index.html" for arm in ARMS},
        }
    return {
        name: report(f"{REPORT_DIR}/{name}.csv", caption=f"captions/{name}.rst", category="Tables")
        for name in ("parameters", "sensitivity", "lookup")
    }


def report_chart(name, title):
    """A chart's SVG as a report() item, with the caption the report job writes beside it."""
    return report(
        f"{REPORT_DIR}/{name}.svg",
        caption=f"../{REPORT_DIR}/captions/{name}.rst",
        category="Charts",
        labels={"chart": title},
    )


def known_specs():
    """The settings each run trains with, where they are known before any job: a tuned study's grid
    runs only once its selection (results/tune/tuning.json) exists."""
    specs = dict(SWEEP)
    if not TUNING:
        specs.update(RUNS)
    elif Path(TUNING_FILE).exists():
        tuning = read_tuning(TUNING_FILE)
        for run, spec in RUNS.items():
            specs[run] = apply_tuning(spec, tuning, set(config["train"]["overrides"].get(run, {})))
    return specs


# Two studies sharing a work_dir share each run's directory (keyed by the data, not the run's other
# settings): with different settings they retrained each other's runs back and forth. Refused before
# any job (workflow/work_dir_check.py); in the main process only, as the jobs train what it checked.
if workflow.is_main_process and not config["regenerate_from_results"]:
    from workflow.work_dir_check import SharedRunError, check_shared_runs

    try:
        check_shared_runs(known_specs(), Path(RUNS_DIR), config)
    except (ConfigError, SharedRunError) as error:
        raise WorkflowError(str(error)) from None


def corpus_plan(study):
    """The files of a corpus's url sources, by their download path under WORK/downloads."""
    return {f"{item['source']}/{item['file']}": item for item in download_plan(study["corpus"]["sources"])}


def corpus_downloads(study):
    """The corpus rule's download arguments: each file of its plan with its downloaded path."""
    return lambda wildcards, input: " ".join(
        shlex.quote(f"--download={item['source']}={path}")
        for item, path in zip(corpus_plan(study).values(), input.downloads)
    )


def arm_tokenizer_setting(key):
    """An input function for a setting of an arm's tokenizer (wildcard tokenizer_key)."""
    return lambda wildcards: ARM_STAGES["tokenizer"][wildcards.tokenizer_key]["tokenizer"][key]
