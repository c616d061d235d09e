# Tune: the sweep's runs train and are evaluated by the train and evaluate rules like any other run
# (run ids tune_...); this checkpoint chooses each shape's settings by validation loss and fits
# their rules in N. The grid's runs read its tuning.json (common.smk: run_spec), so Snakemake
# re-evaluates them once it is made and retrains those whose chosen values changed.


checkpoint tune:
    input:
        summaries=sweep_files("results/runs/{run}/summary.json"),
        evaluations=sweep_files("results/runs/{run}/eval.json"),
        code=source_files("tune"),
    output:
        tuning=TUNING_FILE,
        sweep=report(SWEEP_TABLE, caption="captions/sweep.rst", category="Tables"),
    log:
        "results/logs/tune.log",
    conda:
        "../envs/analysis.yaml"
    threads: stage_threads("default")
    resources:
        mem_mb=stage_mem_mb("default"),
    params:
        run_dirs=sweep_files("results/runs/{run}"),
        plan=json.dumps(selection_plan(config, RUNS, SWEEP), sort_keys=True),
    shell:
        "python -m workflow.tune {params.run_dirs:q} --plan {params.plan:q} --out-dir results/tune > {log:q} 2>&1"
