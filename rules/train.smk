# Train: one job per run of the grid. The run's full settings are a param, so
# changing one run's settings reruns that run (and what depends on it) alone.


rule train:
    input:
        dataset=rules.dataset.output.shards,
    output:
        summary="results/runs/{run}/summary.json",
        metrics="results/runs/{run}/metrics.csv",
        model=f"{WORK}/runs/{{run}}/model.pt",
    params:
        spec=run_spec,
    threads: config["train"]["threads"]
    conda:
        "../envs/train.yaml"
    log:
        "results/logs/train/{run}.log",
    shell:
        "python -m workflow.train --spec {params.spec:q} --dataset {input.dataset:q}/manifest.json"
        " --out-dir results/runs/{wildcards.run} --model {output.model:q} > {log:q} 2>&1"
