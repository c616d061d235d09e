# Report: nine Altair charts, and the tune stage's sweep when the study is tuned (self-contained
# HTML, SVG and PNG), their RST captions with the fitted numbers, the parameters, sensitivity and
# look-up tables and an index page; for a study with arms, a comparison page and each arm's report.
# The captions are written by the report job itself, so `snakemake --report`
# shows the same numbers as results/report/index.html.


rule report:
    input:
        runs=rules.collect.output.runs,
        curves=rules.collect.output.curves,
        fits=rules.fit.output[0],
        tune=[TUNING_FILE, SWEEP_TABLE] if TUNING else [],
        code=source_files("report"),
    output:
        **{f"{name}_svg": report_chart(name, title) for name, title in SHOWN_CHARTS.items()},
        **{f"{name}_{fmt}": f"{REPORT_DIR}/{name}.{fmt}" for name in SHOWN_CHARTS for fmt in ("html", "png")},
        **report_tables(),
        index=report(f"{REPORT_DIR}/index.html", caption=f"../{REPORT_DIR}/captions/index.rst", category="Report"),
        captions=[f"{REPORT_DIR}/captions/{name}.rst" for name in [*SHOWN_CHARTS, "index"]],
    log:
        "results/logs/report.log",
    conda:
        "../envs/analysis.yaml"
    threads: stage_threads("default")
    resources:
        mem_mb=stage_mem_mb("default"),
    params:
        tune="--tune-dir results/tune" if TUNING else "",
    shell:
        "python -m workflow.report --runs {input.runs:q} --curves {input.curves:q} --fits {input.fits:q}"
        " {params.tune} --out-dir results/report > {log:q} 2>&1"
