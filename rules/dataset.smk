# Dataset: train and validation token shards (work dir) and their manifest (results).


rule dataset:
    input:
        documents=rules.corpus.output.documents,
        tokenizer=rules.tokenizer.output.model,
    output:
        shards=directory(DATASET_DIR),
        manifest="results/data/dataset.json",
    log:
        "results/logs/dataset.log",
    conda:
        "../envs/data.yaml"
    threads: stage_threads("dataset")
    resources:
        mem_mb=stage_mem_mb("dataset"),
    params:
        validation_fraction=config["dataset"]["validation_fraction"],
        validation_max_tokens=config["dataset"]["validation_max_tokens"],
        shard_tokens=config["dataset"]["shard_tokens"],
    shell:
        "python -m workflow.dataset --documents {input.documents:q} --tokenizer {input.tokenizer:q}"
        " --validation-fraction {params.validation_fraction}"
        " --validation-max-tokens {params.validation_max_tokens}"
        " --shard-tokens {params.shard_tokens} --threads {threads}"
        " --out-dir {output.shards:q} --out-summary {output.manifest:q} > {log:q} 2>&1"
