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
        vocab_size=config["tokenizer"]["vocab_size"],
        model_type=config["tokenizer"]["model_type"],
        sample_bytes=config["tokenizer"]["sample_bytes"],
        seed=config["tokenizer"]["seed"],
    shell:
        "python -m workflow.tokenizer {params.source}"
        " --vocab-size {params.vocab_size} --model-type {params.model_type}"
        " --sample-bytes {params.sample_bytes} --seed {params.seed} --threads {threads}"
        " --out-model {output.model:q} --out-info {output.info:q} > {log:q} 2>&1"
