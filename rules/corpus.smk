# Corpus: downloads (on the submit host: compute nodes often have no internet),
# then one documents table and its manifest.


localrules:
    download,


rule download:
    output:
        f"{WORK}/downloads/{{source}}",
    params:
        url=lambda wildcards: SOURCES[wildcards.source]["url"],
        sha256=lambda wildcards: SOURCES[wildcards.source]["sha256"],
    conda:
        "../envs/data.yaml"
    log:
        "results/logs/download/{source}.log",
    shell:
        "python -m workflow.corpus download --url {params.url:q} --sha256 {params.sha256}"
        " --out {output:q} > {log:q} 2>&1"


rule corpus:
    input:
        downloads=[download_path(name) for name in URL_SOURCES],
    output:
        documents=f"{WORK}/corpus/documents.parquet",
        manifest="results/data/corpus.json",
    params:
        sources=json.dumps(config["corpus"]["sources"], sort_keys=True),
        downloads=download_args,
    conda:
        "../envs/data.yaml"
    log:
        "results/logs/corpus.log",
    shell:
        "python -m workflow.corpus build --sources {params.sources:q} {params.downloads}"
        " --out-documents {output.documents:q} --out-manifest {output.manifest:q} > {log:q} 2>&1"
