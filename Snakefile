# Scaling-law pipeline: corpus -> tokenizer -> dataset -> train grid -> evaluate -> fit -> report.
# Rules only wire files; the logic lives in the Python package workflow/ (python -m workflow.<stage>).
# Inside this file `workflow` is Snakemake's own object: import ours as `from workflow.x import y`.

from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config/config.yaml"


try:
    validate(config, "config/config.schema.yaml")
except WorkflowError:
    # YAML 1.1 reads 4e-3 as text: say which key and how to write it, rather than "not of type 'number'".
    from workflow.config import numbers_written_as_text

    if hints := numbers_written_as_text(config):
        raise WorkflowError("config error: " + "; ".join(hints)) from None
    raise


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
