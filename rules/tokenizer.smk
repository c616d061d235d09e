# Tokenizer: SentencePiece trained on a seeded sample of the documents, or a given
# model (a file, or a URL with its sha256, downloaded on the submit host).


if "model_url" in config["tokenizer"]:

    rule download_tokenizer:
        output:
            GIVEN_TOKENIZER_DOWNLOAD,
        log:
            "results/logs/download_tokenizer.log",
        localrule: True
        conda:
            "../envs/data.yaml"
        params:
            url=config["tokenizer"]["model_url"],
            sha256=config["tokenizer"]["model_sha256"],
        shell:
            "python -m workflow.download --url {params.url:q} --sha256 {params.sha256}"
            " --out {output:q} > {log:q} 2>&1"


rule tokenizer:
    input:
        documents=rules.corpus.output.documents,
        given_model=lambda wildcards: given_tokenizer() or [],
    output:
        model=f"{TOKENIZER_DIR}/tokenizer.model",
        info="results/data/tokenizer.json",
    log:
        "results/logs/tokenizer.log",
    conda:
        "../envs/data.yaml"
    threads: stage_threads("tokenizer")
    resources:
        mem_mb=stage_mem_mb("tokenizer"),
    params:
        source=tokenizer_source,
        vocab_size=BASE["tokenizer"]["vocab_size"],
        model_type=BASE["tokenizer"]["model_type"],
        sample_bytes=BASE["tokenizer"]["sample_bytes"],
        seed=BASE["tokenizer"]["seed"],
    shell:
        "python -m workflow.tokenizer {params.source}"
        " --vocab-size {params.vocab_size} --model-type {params.model_type}"
        " --sample-bytes {params.sample_bytes} --seed {params.seed} --threads {threads}"
        " --out-model {output.model:q} --out-info {output.info:q} > {log:q} 2>&1"


# The tokenizer of each arm whose corpus or tokenizer settings differ from the base arm's, by its key.
if ARM_STAGES["tokenizer"]:

    use rule tokenizer as arm_tokenizer with:
        input:
            documents=lambda wildcards: f"{WORK}/corpus/{ARM_KEYS_BY['tokenizer'][wildcards.tokenizer_key]['corpus']}/documents.parquet",
            given_model=lambda wildcards: ARM_STAGES["tokenizer"][wildcards.tokenizer_key]["tokenizer"].get(
                "model_file", []
            ),
        output:
            model=f"{WORK}/tokenizer/{{tokenizer_key}}/tokenizer.model",
            info="results/data/arms/{tokenizer_key}/tokenizer.json",
        log:
            "results/logs/arms/{tokenizer_key}/tokenizer.log",
        wildcard_constraints:
            tokenizer_key="|".join(ARM_STAGES["tokenizer"]),
        params:
            source=tokenizer_source,
            vocab_size=arm_tokenizer_setting("vocab_size"),
            model_type=arm_tokenizer_setting("model_type"),
            sample_bytes=arm_tokenizer_setting("sample_bytes"),
            seed=arm_tokenizer_setting("seed"),
