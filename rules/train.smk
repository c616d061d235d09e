# Train: one job per run of the grid. The settings that define a run's result are a param, so
# changing them reruns that run (and what depends on it) alone. How it is executed (device,
# logging and checkpoint intervals, kernels) travels as a resource, which Snakemake does not
# compare: changing it never retrains a run (workflow.spec.Execution).
# The checkpoint is not an output: Snakemake leaves it in place when it reruns
# an interrupted job, and the trainer resumes from it.


rule train:
    input:
        # The run's arm's dataset (the study's outside arms).
        dataset=run_dataset,
        tuned=tuned,
    output:
        summary="results/runs/{run}/summary.json",
        metrics="results/runs/{run}/metrics.csv",
        weights=directory(f"{RUNS_DIR}/{{run}}/weights"),
    log:
        "results/logs/train/{run}.log",
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=stage_mem_mb("train"),
        runtime=train_runtime,
        gpu=train_slurm("gpu"),
        nodes=train_slurm("nodes"),
        tasks=train_slurm("tasks"),
        mpi=train_slurm("mpi"),
        gres=train_slurm("gres"),
        tasks_per_gpu=train_slurm("tasks_per_gpu"),
        execution=run_execution,
    params:
        spec=run_spec,
        checkpoint=lambda wildcards: f"{RUNS_DIR}/{wildcards.run}/checkpoint.pt",
    shell:
        "python -m workflow.train --spec {params.spec:q} --execution {resources.execution:q}"
        " --dataset {input.dataset:q}/manifest.json"
        " --out-dir results/runs/{wildcards.run} --weights {output.weights:q}"
        " --checkpoint {params.checkpoint:q} > {log:q} 2>&1"
