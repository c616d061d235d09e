# Corpus: downloads, one job per file of each url source (on the submit host:
# compute nodes often have no internet), then one documents table and its manifest.
from workflow.download import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_S, DEFAULT_LOCK_FILE, DEFAULT_TIMEOUT_S, download_plan

# Every arm's files (workflow.config checks that arms naming one source agree on it).
CORPUS_FILES = {key: item for study in [BASE, *ARMS.values()] for key, item in corpus_plan(study).items()}
CORPUS_FETCH = config["corpus"].get("download", {})


localrules:
    download,


rule download:
    input:
        # A local file is an input: editing it reruns the download, which checks it against its pin.
        local=local_source,
    output:
        f"{WORK}/downloads/{{source}}/{{file}}",
    log:
        "results/logs/download/{source}/{file}.log",
    wildcard_constraints:
        file=r"[^/]+",
    conda:
        "../envs/data.yaml"
    params:
        url=lambda wildcards: corpus_file(wildcards)["url"],
        sha256=lambda wildcards: (
            f"--sha256 {corpus_file(wildcards)['sha256']}" if corpus_file(wildcards)["sha256"] else ""
        ),
        lock_file=config["corpus"].get("lock_file", DEFAULT_LOCK_FILE),
        attempts=CORPUS_FETCH.get("attempts", DEFAULT_ATTEMPTS),
        backoff_s=CORPUS_FETCH.get("backoff_s", DEFAULT_BACKOFF_S),
        timeout_s=CORPUS_FETCH.get("timeout_s", DEFAULT_TIMEOUT_S),
    shell:
        "python -m workflow.download --url {params.url:q} {params.sha256} --lock-file {params.lock_file:q}"
        " --attempts {params.attempts} --backoff-s {params.backoff_s} --timeout-s {params.timeout_s}"
        " --out {output:q} > {log:q} 2>&1"


rule corpus:
    input:
        downloads=[f"{WORK}/downloads/{key}" for key in corpus_plan(BASE)],
    output:
        documents=f"{CORPUS_DIR}/documents.parquet",
        manifest="results/data/corpus.json",
    log:
        "results/logs/corpus.log",
    conda:
        "../envs/data.yaml"
    threads: stage_threads("default")
    resources:
        mem_mb=stage_mem_mb("default"),
    params:
        sources=json.dumps(BASE["corpus"]["sources"], sort_keys=True),
        downloads=corpus_downloads(BASE),
        dedup="--dedup" if BASE["corpus"].get("dedup") else "",
    shell:
        "python -m workflow.corpus --sources {params.sources:q} {params.downloads} {params.dedup}"
        " --out-documents {output.documents:q} --out-manifest {output.manifest:q} > {log:q} 2>&1"


# The corpus of each arm whose corpus settings differ from the base arm's (workflow.arms), by its key.
if ARM_STAGES["corpus"]:

    use rule corpus as arm_corpus with:
        input:
            downloads=lambda wildcards: [
                f"{WORK}/downloads/{key}" for key in corpus_plan(ARM_STAGES["corpus"][wildcards.corpus_key])
            ],
        output:
            documents=f"{WORK}/corpus/{{corpus_key}}/documents.parquet",
            manifest="results/data/arms/{corpus_key}/corpus.json",
        log:
            "results/logs/arms/{corpus_key}/corpus.log",
        wildcard_constraints:
            corpus_key="|".join(ARM_STAGES["corpus"]),
        params:
            sources=lambda wildcards: json.dumps(
                ARM_STAGES["corpus"][wildcards.corpus_key]["corpus"]["sources"], sort_keys=True
            ),
            downloads=lambda wildcards, input: corpus_downloads(ARM_STAGES["corpus"][wildcards.corpus_key])(
                wildcards, input
            ),
            dedup=lambda wildcards: (
                "--dedup" if ARM_STAGES["corpus"][wildcards.corpus_key]["corpus"].get("dedup") else ""
            ),
