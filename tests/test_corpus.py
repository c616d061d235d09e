"""Corpus stage: the builtin stdlib source; every format; dedup; bad input; the presets;
the rules downloading each file then building the table."""

import gzip
import hashlib
import io
import json
import re
import zipfile

import jsonschema
import polars as pl
import pytest
import yaml
from helpers import REPO, copy_pipeline, snakemake, tiny_config, work_path

import workflow.corpus as corpus
from workflow.corpus import CorpusError, build, main, read_stdlib, stdlib_root
from workflow.download import download_plan

TEXT = "first document\nwith two lines\n\n\nsecond document\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- stdlib


def test_stdlib_documents_sorted_with_hashes():
    documents, info = read_stdlib("[a-c]*.py")
    names = [d["name"] for d in documents]
    assert names == sorted(names) and "abc.py" in names
    assert documents[names.index("abc.py")]["text"] == (stdlib_root() / "abc.py").read_text("utf-8")
    assert len(info["sha256"]) == 64 and info["files"] >= len(documents)


def test_build_writes_table_and_manifest(tmp_path):
    manifest = build(
        [{"name": "stdlib", "builtin": "stdlib", "glob": "[a-c]*.py"}],
        {},
        tmp_path / "docs.parquet",
        tmp_path / "corpus.json",
    )
    table = pl.read_parquet(tmp_path / "docs.parquet")
    assert table.columns == ["source", "name", "text", "bytes"]
    assert manifest["documents"] == table.height > 5
    assert manifest["bytes"] == sum(len(t.encode()) for t in table["text"])
    assert manifest["python_version"].count(".") == 2
    assert manifest["sources"][0]["documents"] == table.height
    assert json.loads((tmp_path / "corpus.json").read_text()) == manifest


# --------------------------------------------------------------------------- formats

DOCS = ["alpha story", "beta story\nwith a second line", "gamma — ünïcode ✓"]


def jsonl_bytes(docs, field="text"):
    return "".join(json.dumps({"id": i, field: d, "meta": {"n": i}}) + "\n" for i, d in enumerate(docs)).encode()


def zstd_bytes(data: bytes) -> bytes:
    """JSON lines compressed with zstd by polars itself (no extra package needed to write it)."""
    buffer = io.BytesIO()
    rows = [json.loads(line) for line in data.decode().splitlines()]
    pl.DataFrame(rows).lazy().sink_ndjson(buffer, compression="zstd")
    assert buffer.getvalue()[:4] == b"\x28\xb5\x2f\xfd"
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def parquet_bytes(docs, column="content"):
    buffer = io.BytesIO()
    pl.DataFrame({"id": range(len(docs)), column: docs}).write_parquet(buffer)
    return buffer.getvalue()


TEXT_SEP = "\n<|endoftext|>\n"
FORMAT_CASES = {
    "text": ("corpus.txt", lambda: TEXT_SEP.join(DOCS).encode(), {"separator": TEXT_SEP}),
    "text.gz": ("corpus.txt.gz", lambda: gzip.compress(TEXT_SEP.join(DOCS).encode()), {"separator": TEXT_SEP}),
    "jsonl": ("data.jsonl", lambda: jsonl_bytes(DOCS), {}),
    "jsonl.gz": ("data.jsonl.gz", lambda: gzip.compress(jsonl_bytes(DOCS, "body")), {"field": "body"}),
    "jsonl.zst": ("data.jsonl.zst", lambda: zstd_bytes(jsonl_bytes(DOCS)), {}),
    "jsonl.gz, no suffix": ("download", lambda: gzip.compress(jsonl_bytes(DOCS)), {"format": "jsonl"}),
    "parquet": ("train-00000-of-00001.parquet", lambda: parquet_bytes(DOCS), {"field": "content"}),
    "zip of text": (
        "enwik8.zip",
        lambda: zip_bytes({"enwik8": "</page>\n".join(DOCS).encode()}),
        {"separator": "</page>\n"},
    ),
    "zip of jsonl": (
        "shards.zip",
        lambda: zip_bytes({"a.jsonl": jsonl_bytes(DOCS[:2]), "b.jsonl": jsonl_bytes(DOCS[2:])}),
        {},
    ),
}


@pytest.mark.parametrize("case", list(FORMAT_CASES))
def test_formats(case, tmp_path):
    name, make, settings = FORMAT_CASES[case]
    path = tmp_path / name
    path.write_bytes(make())
    source = {"name": "src", "url": path.as_uri(), **settings}
    manifest = build([source], {"src": path}, tmp_path / "d.parquet", tmp_path / "m.json")
    table = pl.read_parquet(tmp_path / "d.parquet")
    assert table["text"].to_list() == DOCS
    assert table["bytes"].to_list() == [len(d.encode()) for d in DOCS]
    assert table["name"].n_unique() == len(DOCS)
    (info,) = manifest["sources"]
    assert info["documents"] == len(DOCS) and info["files"][0]["sha256"] == sha(path.read_bytes())
    assert info["files"][0]["size"] == path.stat().st_size
    assert info["files"][0]["url"] == path.as_uri()


def test_zstd_text(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "corpus.txt.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(TEXT_SEP.join(DOCS).encode()))
    source = {"name": "src", "url": path.as_uri(), "separator": TEXT_SEP}
    manifest = build([source], {"src": path}, tmp_path / "d.parquet", tmp_path / "m.json")
    assert pl.read_parquet(tmp_path / "d.parquet")["text"].to_list() == DOCS
    assert manifest["sources"][0]["files"][0]["compression"] == "zstd"


def test_text_without_separator_is_one_document(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(TEXT)
    build([{"name": "book", "url": path.as_uri()}], {"book": path}, tmp_path / "d.parquet", tmp_path / "m.json")
    assert pl.read_parquet(tmp_path / "d.parquet")["text"].to_list() == [TEXT]


def test_separator_split_across_read_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 7)  # separators and characters straddle reads
    docs = [f"document {i} — ✓ " * (i % 4 + 1) for i in range(50)]
    path = tmp_path / "c.txt"
    path.write_text("<SEP>".join(docs))
    build(
        [{"name": "c", "url": path.as_uri(), "separator": "<SEP>"}],
        {"c": path},
        tmp_path / "d.parquet",
        tmp_path / "m.json",
    )
    assert pl.read_parquet(tmp_path / "d.parquet")["text"].to_list() == docs


def test_table_is_written_in_batches_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "BATCH_DOCUMENTS", 3)
    docs = [f"doc {i}" for i in range(100)]
    files = []
    for k in range(2):
        files.append(tmp_path / f"part{k}.jsonl")
        files[-1].write_bytes(jsonl_bytes(docs[50 * k : 50 * k + 50]))
    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(docs))
    sources = [
        {"name": "j", "urls": [f.as_uri() for f in files]},
        {"name": "t", "url": text.as_uri(), "separator": "\n\n"},
    ]
    manifest = build(sources, {"j": files, "t": text}, tmp_path / "d.parquet", tmp_path / "m.json")
    table = pl.read_parquet(tmp_path / "d.parquet")
    assert table["text"].to_list() == docs + docs
    assert table["source"].to_list() == ["j"] * 100 + ["t"] * 100
    assert table["name"].to_list()[:2] == ["part0.jsonl:0", "part0.jsonl:1"]
    assert [f["documents_read"] for f in manifest["sources"][0]["files"]] == [50, 50]
    # the next stage's reader streams it
    from workflow.tokenizer import document_chunks

    assert sum(len(c) for c in document_chunks(tmp_path / "d.parquet", 7)) == 200


def test_build_cli_takes_several_files_per_source(tmp_path, capsys):
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    files[0].write_bytes(jsonl_bytes(DOCS[:1]))
    files[1].write_bytes(jsonl_bytes(DOCS[1:]))
    sources = [{"name": "web", "urls": [f.as_uri() for f in files]}]
    assert (
        main(
            [
                "--sources",
                json.dumps(sources),
                *[f"--download=web={f}" for f in files],
                "--out-documents",
                str(tmp_path / "d.parquet"),
                "--out-manifest",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    assert pl.read_parquet(tmp_path / "d.parquet")["text"].to_list() == DOCS
    assert "corpus: 3 documents" in capsys.readouterr().out


def test_dedup_removes_exact_duplicates_across_sources(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.jsonl"
    a.write_text("|".join(["one", "two", "one", "three"]))
    b.write_bytes(jsonl_bytes(["two", "four", "four"]))
    sources = [{"name": "a", "url": a.as_uri(), "separator": "|"}, {"name": "b", "url": b.as_uri()}]
    kept = build(sources, {"a": a, "b": b}, tmp_path / "all.parquet", tmp_path / "all.json")
    assert kept["duplicates_removed"] == 0 and kept["documents"] == 7
    manifest = build(sources, {"a": a, "b": b}, tmp_path / "d.parquet", tmp_path / "m.json", dedup=True)
    assert pl.read_parquet(tmp_path / "d.parquet")["text"].to_list() == ["one", "two", "three", "four"]
    assert manifest["dedup"] is True and manifest["duplicates_removed"] == 3 and manifest["documents"] == 4
    assert [s["duplicates_removed"] for s in manifest["sources"]] == [1, 2]


def test_blank_documents_are_skipped_and_counted(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "kept"}\n{"text": "   "}\n{"other": 1}\n{"text": "also kept"}\n')
    manifest = build([{"name": "c", "url": path.as_uri()}], {"c": path}, tmp_path / "d.parquet", tmp_path / "m.json")
    assert pl.read_parquet(tmp_path / "d.parquet")["text"].to_list() == ["kept", "also kept"]
    assert manifest["sources"][0]["empty_skipped"] == 2


# --------------------------------------------------------------------------- bad input


def test_not_utf8_url_source_is_refused(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9".encode("latin-1"))
    source = {"name": "bad", "url": path.as_uri(), "sha256": sha(path.read_bytes())}
    with pytest.raises(CorpusError, match=f"'bad'.*{re.escape(str(path))}.*not UTF-8: invalid byte at offset 3"):
        build([source], {"bad": path}, tmp_path / "d.parquet", tmp_path / "m.json")
    assert not (tmp_path / "d.parquet").exists()


def test_not_utf8_offset_counts_from_the_start_of_the_file(tmp_path):
    path = tmp_path / "c.txt.gz"
    path.write_bytes(gzip.compress(b"good one||bad \xff here||good two"))
    source = {"name": "c", "url": path.as_uri(), "separator": "||"}
    with pytest.raises(CorpusError, match="invalid byte at offset 14 of the decompressed data"):
        build([source], {"c": path}, tmp_path / "d.parquet", tmp_path / "m.json")
    manifest = build([dict(source, invalid_utf8="skip")], {"c": path}, tmp_path / "d.parquet", tmp_path / "m.json")
    assert pl.read_parquet(tmp_path / "d.parquet")["text"].to_list() == ["good one", "good two"]
    info = manifest["sources"][0]
    assert info["invalid_utf8_skipped"] == 1 and info["invalid_utf8_offsets"] == [{"file": "c.txt.gz", "offset": 14}]


def test_jsonl_without_the_field_names_file_and_field(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(jsonl_bytes(DOCS, field="body"))
    with pytest.raises(CorpusError, match=f"{re.escape(str(path))}.*no field 'text'"):
        build([{"name": "c", "url": path.as_uri()}], {"c": path}, tmp_path / "d.parquet", tmp_path / "m.json")


def test_parquet_without_the_column_lists_columns(tmp_path):
    path = tmp_path / "c.parquet"
    path.write_bytes(parquet_bytes(DOCS))
    with pytest.raises(CorpusError, match=r"no column 'text' \(columns: id, content\)"):
        build([{"name": "c", "url": path.as_uri()}], {"c": path}, tmp_path / "d.parquet", tmp_path / "m.json")


def test_broken_json_names_the_file(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(CorpusError, match=f"{re.escape(str(path))}.*cannot read it as jsonl"):
        build([{"name": "c", "url": path.as_uri()}], {"c": path}, tmp_path / "d.parquet", tmp_path / "m.json")
    assert not (tmp_path / "d.parquet").exists()


def test_corrupt_gzip_names_the_file(tmp_path):
    path = tmp_path / "c.txt.gz"
    path.write_bytes(gzip.compress(TEXT.encode() * 100)[:60])
    with pytest.raises(CorpusError, match=f"{re.escape(str(path))}.*cannot read it as gzip"):
        build([{"name": "c", "url": path.as_uri()}], {"c": path}, tmp_path / "d.parquet", tmp_path / "m.json")


def test_empty_source_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="source 'stdlib' yielded no documents"):
        build(
            [{"name": "stdlib", "builtin": "stdlib", "glob": "no-such-*.py"}],
            {},
            tmp_path / "d.parquet",
            tmp_path / "m.json",
        )
    assert not (tmp_path / "d.parquet").exists() and not (tmp_path / "m.json").exists()


def test_empty_source_beside_others_is_refused_early(tmp_path, monkeypatch):
    full = tmp_path / "full.txt"
    full.write_text("a|b")
    blank = tmp_path / "blank.txt"
    blank.write_text("  ")
    read, batches = [], corpus._SourceReader.batches

    def spy(reader):
        read.append(reader.name)
        return batches(reader)

    monkeypatch.setattr(corpus._SourceReader, "batches", spy)
    sources = [
        {"name": "blank", "url": blank.as_uri()},
        {"name": "full", "url": full.as_uri(), "separator": "|"},
        {"name": "never", "url": full.as_uri()},
    ]
    with pytest.raises(CorpusError, match="^source 'blank' yielded no documents"):
        build(sources, {"blank": blank, "full": full, "never": full}, tmp_path / "d.parquet", tmp_path / "m.json")
    assert read == ["blank", "full"]


def test_empty_corpus_names_the_sources(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\n \n")
    sources = [
        {"name": "stdlib", "builtin": "stdlib", "glob": "no-such-*.py"},
        {"name": "blank", "url": blank.as_uri(), "separator": "\n\n"},
    ]
    with pytest.raises(CorpusError, match="corpus has no documents: source 'stdlib', 'blank' yielded no documents"):
        build(sources, {"blank": blank}, tmp_path / "d.parquet", tmp_path / "m.json")
    assert not (tmp_path / "d.parquet").exists() and not (tmp_path / "m.json").exists()


# --------------------------------------------------------------------------- config and presets


def corpus_schema() -> dict:
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    return {"$schema": schema["$schema"], "$defs": schema.get("$defs", {}), **schema["properties"]["corpus"]}


PRESETS = sorted((REPO / "config" / "corpora").glob("*.yaml"))


def test_presets_cover_the_real_corpora():
    assert {p.stem for p in PRESETS} >= {"tinystories", "fineweb-edu-sample-10bt", "openwebtext", "enwik8"}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_is_valid(preset):
    text = preset.read_text()
    assert "cannot be fetched in CI" in text
    settings = yaml.safe_load(text)
    assert set(settings) == {"corpus"}
    jsonschema.Draft202012Validator(corpus_schema()).validate(settings["corpus"])
    plan = download_plan(settings["corpus"]["sources"])
    assert plan and len({(p["source"], p["file"]) for p in plan}) == len(plan)
    assert all(p["url"].startswith(("https://", "http://")) for p in plan)
    for source in settings["corpus"]["sources"]:
        assert source.get("license")
    # it also validates merged over the default config, as snakemake --configfile merges it
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["corpus"] = settings["corpus"]
    validate(config, str(REPO / "config" / "config.schema.yaml"))


@pytest.mark.parametrize(
    ("source", "valid"),
    [
        ({"name": "a", "url": "https://x/y.txt"}, True),
        ({"name": "a", "url": "https://x/y.txt", "sha256": "a" * 64, "separator": "\n\n"}, True),
        (
            {
                "name": "a",
                "urls": ["https://x/1.parquet", {"url": "https://x/2.parquet", "sha256": "b" * 64}],
                "format": "parquet",
                "field": "content",
            },
            True,
        ),
        ({"name": "a", "urls": ["https://x/1.parquet"], "sha256": "b" * 64}, False),
        ({"name": "a", "url": "https://x/1", "urls": ["https://x/1"]}, False),
        ({"name": "a", "urls": []}, False),
        ({"name": "a", "urls": ["ftp://x/1"]}, False),
        ({"name": "a", "builtin": "stdlib", "format": "text"}, False),
        ({"name": "a", "url": "https://x/y", "format": "csv"}, False),
        ({"name": "a", "url": "https://x/y", "compression": "bz2"}, False),
        ({"name": "a", "url": "https://x/y", "unknown": 1}, False),
    ],
)
def test_corpus_schema(source, valid):
    errors = list(jsonschema.Draft202012Validator(corpus_schema()).iter_errors({"sources": [source]}))
    assert (not errors) == valid, errors


def test_corpus_settings_in_schema():
    validator = jsonschema.Draft202012Validator(corpus_schema())
    settings = {
        "sources": [{"name": "s", "builtin": "stdlib"}],
        "dedup": True,
        "lock_file": "config/x.json",
        "download": {"attempts": 3, "backoff_s": 0.5, "timeout_s": 30},
    }
    assert not list(validator.iter_errors(settings))
    assert list(validator.iter_errors(dict(settings, download={"attempts": 0})))


# --------------------------------------------------------------------------- the rules


@pytest.mark.pipeline
def test_rules_download_each_file_then_build(tmp_path):
    """Snakemake wiring: one download job per URL, a lock file for hashes not in the config, one build."""
    (tmp_path / "pipeline").mkdir()
    workdir = copy_pipeline(tmp_path / "pipeline")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_bytes(jsonl_bytes(DOCS[:2]))
    (data / "b.txt").write_text("x|y")
    (data / "b.txt.gz").write_bytes(gzip.compress(b"z"))
    config = tiny_config()
    config["corpus"] = {
        "dedup": True,
        "lock_file": "config/test.lock.json",
        "download": {"attempts": 2, "backoff_s": 0, "timeout_s": 5},
        "sources": [
            {"name": "j", "url": (data / "a.jsonl").as_uri(), "sha256": sha((data / "a.jsonl").read_bytes())},
            {"name": "t", "urls": [(data / "b.txt").as_uri(), (data / "b.txt.gz").as_uri()], "separator": "|"},
        ],
    }
    (workdir / "config" / "test.yaml").write_text(yaml.safe_dump(config))
    target = "results/data/corpus.json"
    plan = snakemake(workdir, "-n", target, "--configfile", "config/test.yaml").stdout
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.split("Job stats:", 1)[1], flags=re.MULTILINE))
    assert jobs["download"] == "3" and jobs["corpus"] == "1"
    snakemake(workdir, target, "--configfile", "config/test.yaml")
    names = sorted(p.name for p in (workdir / "resources" / "downloads" / "t").iterdir())
    assert [re.sub("-[0-9a-f]{8}-", "-", name) for name in names] == ["0000-b.txt", "0001-b.txt.gz"]
    lock = json.loads((workdir / "config" / "test.lock.json").read_text())
    assert sorted(lock) == [(data / "b.txt").as_uri(), (data / "b.txt.gz").as_uri()]
    manifest = json.loads((workdir / target).read_text())
    assert manifest["documents"] == 5 and manifest["dedup"] is True
    table = pl.read_parquet(work_path(workdir, "corpus", "documents.parquet"))
    assert table["text"].to_list() == DOCS[:2] + ["x", "y", "z"]


def test_a_calibration_source_records_its_known_entropy(tmp_path):
    """builtin zipf_markov: generated documents, and the manifest's exact entropy rate, also at top
    level (known_entropy) when it is the only source; bad settings are one CorpusError line."""
    source = {"name": "cal", "builtin": "zipf_markov", "settings": {"words": 100, "documents": 50, "seed": 1}}
    manifest = build([source], {}, tmp_path / "docs.parquet", tmp_path / "corpus.json")
    table = pl.read_parquet(tmp_path / "docs.parquet")
    assert table.height == manifest["documents"] == 50 and table["text"][0].count(" ") == 199
    entropy = manifest["sources"][0]["entropy"]
    assert manifest["known_entropy"] == {"bits_per_byte": entropy["bits_per_byte"], "source": "cal"}
    stdlib = {"name": "stdlib", "builtin": "stdlib", "glob": "abc.py"}
    both = build([source, stdlib], {}, tmp_path / "both.parquet", tmp_path / "both.json")
    assert "known_entropy" not in both
    with pytest.raises(CorpusError, match=r"source 'cal': settings.words is 1, outside"):
        build([{**source, "settings": {"words": 1}}], {}, tmp_path / "bad.parquet", tmp_path / "bad.json")
