# Evaluate: every run on the same validation tokens (where arms differ in tokenizer or corpus, on the
# base arm's validation text in its own tokens: the yardstick). The device is a resource, not a param:
# where a run is scored does not change its score, so changing it re-evaluates nothing.
# The yardstick's flag and param exist only where there is one: a study without keeps its command and
# params, which Snakemake compares (a change would re-evaluate every run).
EVALUATE_COMMAND = (
    "python -m workflow.evaluate --weights {input.weights:q} --summary {input.summary:q}"
    " --dataset {input.dataset:q}/manifest.json"
    + (" --yardstick {input.yardstick:q}/manifest.json" if YARDSTICKS else "")
    + " --batch-size {params.batch_size}"
    " --device {resources.device} --threads {threads} --out {output:q} > {log:q} 2>&1"
)


rule evaluate:
    input:
        weights=rules.train.output.weights,
        summary=rules.train.output.summary,
        dataset=run_dataset,
        yardstick=run_yardstick,
    output:
        "results/runs/{run}/eval.json",
    log:
        "results/logs/evaluate/{run}.log",
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=stage_mem_mb("evaluate"),
        gpu=EVALUATE_GPUS,
        device=config["train"]["device"],
    params:
        batch_size=config["evaluate"]["batch_size"],
    shell:
        EVALUATE_COMMAND
