# Fit: collect every run into tables, then fit the scaling laws. The module
# sources are inputs, so editing the analysis code reruns the analysis.


rule study_config:
    output:
        "results/config.yaml",
    log:
        "results/logs/study_config.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        config=lambda wildcards: json.dumps(config, sort_keys=True),
    shell:
        "python -m workflow.config --config-json {params.config:q} --write {output:q} > {log:q} 2>&1"


rule collect:
    input:
        summaries=run_files("results/runs/{run}/summary.json"),
        evaluations=run_files("results/runs/{run}/eval.json"),
        metrics=run_files("results/runs/{run}/metrics.csv"),
        code=source_files("collect"),
    output:
        runs_csv=report("results/tables/runs.csv", caption="captions/runs.rst", category="Tables"),
        runs="results/tables/runs.parquet",
        curves="results/tables/curves.parquet",
        curves_csv="results/tables/curves.csv",
    log:
        "results/logs/collect.log",
    conda:
        "../envs/analysis.yaml"
    threads: stage_threads("default")
    resources:
        mem_mb=stage_mem_mb("default"),
    params:
        run_dirs=run_files("results/runs/{run}"),
        flop_convention=config["fit"]["flop_convention"],
        parameter_count=config["fit"]["parameter_count"],
    shell:
        "python -m workflow.collect {params.run_dirs:q}"
        " --flop-convention {params.flop_convention} --parameter-count {params.parameter_count}"
        " --out-runs results/tables/runs --out-curves results/tables/curves > {log:q} 2>&1"


rule fit:
    input:
        table=rules.collect.output.runs,
        curves=rules.collect.output.curves,
        # Its known entropy rate, on a calibration corpus, is compared with the fitted floors.
        corpus="results/data/corpus.json",
        # The study card names the tokenizer and the splits' sizes (workflow/fit/study_card.py).
        tokenizer="results/data/tokenizer.json",
        dataset="results/data/dataset.json",
        code=source_files("fit"),
    output:
        report("results/fits/fits.json", caption="captions/fits.rst", category="Fits"),
    log:
        "results/logs/fit.log",
    conda:
        "../envs/analysis.yaml"
    threads: stage_threads("fit")
    resources:
        mem_mb=stage_mem_mb("fit"),
    params:
        flop_convention=config["fit"]["flop_convention"],
        parameter_count=config["fit"]["parameter_count"],
        huber_delta=config["fit"]["huber_delta"],
        refine=config["fit"]["refine_starts"],
        bootstrap=config["fit"]["bootstrap_samples"],
        seed=config["fit"]["bootstrap_seed"],
        predict=",".join(f"{flops:g}" for flops in config["fit"]["predict_flops"]),
        extrapolation_flag=config["fit"]["extrapolation_flag"],
        # With arms, each arm fitted and compared with the baseline (the runs table's arm column). One
        # param with the variant's, so that a study without arms keeps its params and command (no rerun).
        variant=" ".join(args for args in (fit_variant_args(), fit_arms_args()) if args),
    shell:
        "python -m workflow.fit {input.table:q} --curves {input.curves:q} --corpus-manifest {input.corpus:q}"
        " --tokenizer-manifest {input.tokenizer:q} --dataset-manifest {input.dataset:q} --out {output:q}"
        " --huber-delta {params.huber_delta} --refine {params.refine}"
        " --bootstrap {params.bootstrap} --seed {params.seed} --workers {threads} --predict={params.predict:q} {params.variant}"
        " --extrapolation-flag {params.extrapolation_flag}"
        " --flop-convention {params.flop_convention} --parameter-count {params.parameter_count} > {log:q} 2>&1"
