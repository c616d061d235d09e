# Evaluate: every run on the same validation tokens. The device is a resource, not a param:
# where a run is scored does not change its score, so changing it re-evaluates nothing.


rule evaluate:
    input:
        weights=rules.train.output.weights,
        summary=rules.train.output.summary,
        dataset=rules.dataset.output.shards,
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
        "python -m workflow.evaluate --weights {input.weights:q} --summary {input.summary:q}"
        " --dataset {input.dataset:q}/manifest.json --batch-size {params.batch_size}"
        " --device {resources.device} --threads {threads} --out {output:q} > {log:q} 2>&1"
