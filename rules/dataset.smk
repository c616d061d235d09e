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


# The dataset of each arm whose corpus or tokenizer differs from the base arm's, by its key (the split
# settings are the study's: an arm cannot change them).
if ARM_STAGES["dataset"]:

    use rule dataset as arm_dataset with:
        input:
            documents=lambda wildcards: f"{WORK}/corpus/{ARM_KEYS_BY['dataset'][wildcards.dataset_key]['corpus']}/documents.parquet",
            tokenizer=lambda wildcards: f"{WORK}/tokenizer/{ARM_KEYS_BY['dataset'][wildcards.dataset_key]['tokenizer']}/tokenizer.model",
        output:
            shards=directory(f"{WORK}/dataset/{{dataset_key}}"),
            manifest="results/data/arms/{dataset_key}/dataset.json",
        log:
            "results/logs/arms/{dataset_key}/dataset.log",
        wildcard_constraints:
            dataset_key="|".join(ARM_STAGES["dataset"]),


# Where arms differ in tokens: the base arm's validation documents, encoded with each arm's tokenizer
# (the base arm's too), which every run of that tokenizer is scored on (workflow.yardstick).
if YARDSTICKS:

    rule yardstick:
        input:
            documents=rules.corpus.output.documents,
            base_tokenizer=rules.tokenizer.output.model,
            base_dataset=rules.dataset.output.shards,
            tokenizer=lambda wildcards: f"{WORK}/tokenizer/{YARDSTICKS[wildcards.yardstick_key]['tokenizer']}/tokenizer.model",
        output:
            directory(f"{WORK}/yardstick/{{yardstick_key}}"),
        log:
            "results/logs/yardstick/{yardstick_key}.log",
        wildcard_constraints:
            yardstick_key="|".join(YARDSTICKS),
        conda:
            "../envs/data.yaml"
        threads: stage_threads("default")
        resources:
            mem_mb=stage_mem_mb("default"),
        shell:
            "python -m workflow.yardstick --documents {input.documents:q} --base-tokenizer {input.base_tokenizer:q}"
            " --base-dataset {input.base_dataset:q}/manifest.json --tokenizer {input.tokenizer:q}"
            " --out-dir {output:q} > {log:q} 2>&1"
