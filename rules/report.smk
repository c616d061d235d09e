# Report: Altair charts (self-contained HTML and SVG) and an index page.

REPORT_CHARTS = {
    "loss_vs_compute": "Loss against compute",
    "loss_vs_params": "Loss against parameters",
    "training_curves": "Training curves",
}


rule report:
    input:
        runs=rules.collect.output.runs,
        curves=rules.collect.output.curves,
        fits=rules.fit.output[0],
        code=source_file("report"),
    output:
        index=report("results/report/index.html", caption="captions/index.rst", category="Report"),
        **{
            f"{name}_svg": report(
                f"results/report/{name}.svg",
                caption=f"captions/{name}.rst",
                category="Charts",
                labels={"chart": title},
            )
            for name, title in REPORT_CHARTS.items()
        },
        **{f"{name}_html": f"results/report/{name}.html" for name in REPORT_CHARTS},
    conda:
        "../envs/analysis.yaml"
    log:
        "results/logs/report.log",
    shell:
        "python -m workflow.report --runs {input.runs:q} --curves {input.curves:q} --fits {input.fits:q}"
        " --out-dir results/report > {log:q} 2>&1"
