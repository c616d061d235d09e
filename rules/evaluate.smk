# Evaluate: every run on the same validation tokens.


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
    params:
        batch_size=config["evaluate"]["batch_size"],
        device=config["train"]["device"],
    shell:
        "python -m workflow.evaluate --weights {input.weights:q} --summary {input.summary:q}"
        " --dataset {input.dataset:q}/manifest.json --batch-size {params.batch_size}"
        " --device {params.device} --threads {threads} --out {output:q} > {log:q} 2>&1"
