# Scaling-law pipeline: corpus -> tokenizer -> dataset -> train grid -> evaluate -> fit -> report.
# Rules only wire files; the logic lives in the Python package workflow/ (python -m workflow.<stage>).
# Inside this file `workflow` is Snakemake's own object: import ours as `from workflow.x import y`.

from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


# A second --configfile (or --config) flag replaces the first in Snakemake, silently: the study of the
# last flag's files ran, without the earlier ones. Refused here too, for snakemake run directly (not
# through ./pipeline.sh run's check), by the check's own reading of the command line. Only in the
# main process: job subprocesses parse this file again with a command line of Snakemake's making.
import sys
from pathlib import Path

from workflow.cli_args import CommandLineError, snakemake_config_args

# sys.argv is Snakemake's own when it runs as `snakemake` or `python -m snakemake` (not its API).
PROGRAM = Path(sys.argv[0])
if workflow.is_main_process and "snakemake" in (PROGRAM.name, PROGRAM.parent.name):
    try:
        snakemake_config_args(sys.argv[1:])
    except CommandLineError as error:
        raise WorkflowError(str(error)) from None


# Snakemake's validate, naming a number YAML 1.1 read as text (4e-3) with how to write it.
from workflow.config import ConfigError, validate_config

try:
    validate_config(config, f"{workflow.basedir}/config/config.schema.yaml")
except ConfigError as error:
    raise WorkflowError(str(error)) from None


include: "rules/common.smk"


# Reviewers (--config regenerate_from_results=true): only the analysis rules
# exist, so the runs' summaries, evaluations and metrics in results/ are plain
# inputs and no download, tokenizer, dataset, training or evaluation job can run.
if not config["regenerate_from_results"]:

    include: "rules/corpus.smk"
    include: "rules/tokenizer.smk"
    include: "rules/dataset.smk"
    include: "rules/train.smk"
    include: "rules/evaluate.smk"

    if TUNING:

        include: "rules/tune.smk"


include: "rules/fit.smk"
include: "rules/report.smk"


# Every run's files are targets too, not only the report: Snakemake does not rebuild
# a missing intermediate file when everything downstream of it is present, so a run
# whose job was killed after its outputs were removed would otherwise stay missing.
rule all:
    default_target: True
    input:
        "results/report/index.html",
        "results/config.yaml",
        run_files("results/runs/{run}/summary.json"),
        run_files("results/runs/{run}/metrics.csv"),
        run_files("results/runs/{run}/eval.json"),


# Regenerating: a file the analysis reads that is missing has no job to make it, and Snakemake would
# keep the old tables, fits and report; a config edited by hand no longer says what the runs trained
# with. Both stop here, in one line, before any job (workflow/regenerate.py).
if config["regenerate_from_results"]:
    try:
        check_files(analysis_inputs(workflow.rules))
        check_recorded_config(config, RUNS, TUNING_FILE if TUNING else None, workflow.overwrite_configfiles)
    except ConfigError as error:
        raise WorkflowError(str(error)) from None


# A failed collect or fit loses its outputs (Snakemake removes them), but the report built from the
# previous ones stayed beside the new study's config and looked current: it is moved aside
# (workflow/stale_report.py).
from workflow.stale_report import set_aside_stale_report


onerror:
    if stale := set_aside_stale_report():
        print(f"error: {stale}", file=sys.stderr)
