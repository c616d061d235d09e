"""Corpus stage: the builtin stdlib source, and url sources over a real local HTTP server."""

import hashlib
import http.server
import threading

import polars as pl
import pytest

from workflow.corpus import CorpusError, build, download, read_stdlib, stdlib_root

TEXT = "first document\nwith two lines\n\n\nsecond document\n"


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; stops with the test."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_stdlib_documents_sorted_with_hashes():
    documents, info = read_stdlib("[a-c]*.py")
    names = [d["name"] for d in documents]
    assert names == sorted(names) and "abc.py" in names
    assert documents[names.index("abc.py")]["text"] == (stdlib_root() / "abc.py").read_text("utf-8")
    assert len(info["sha256"]) == 64 and info["files"] >= len(documents)


def test_build_writes_table_and_manifest(tmp_path):
    manifest = build([{"name": "stdlib", "builtin": "stdlib", "glob": "[a-c]*.py"}], {},
                     tmp_path / "docs.parquet", tmp_path / "corpus.json")
    table = pl.read_parquet(tmp_path / "docs.parquet")
    assert table.columns == ["source", "name", "text", "bytes"]
    assert manifest["documents"] == table.height > 5
    assert manifest["bytes"] == sum(len(t.encode()) for t in table["text"])
    assert manifest["python_version"].count(".") == 2


def test_http_download_verified_and_split(http_root, tmp_path):
    root, base = http_root
    (root / "corpus.txt").write_text(TEXT)
    digest = hashlib.sha256(TEXT.encode()).hexdigest()
    out = download(f"{base}/corpus.txt", tmp_path / "dl" / "web", digest)
    assert out.read_text() == TEXT
    source = {"name": "web", "url": f"{base}/corpus.txt", "sha256": digest, "separator": "\n\n\n"}
    manifest = build([source], {"web": out}, tmp_path / "d.parquet", tmp_path / "m.json")
    assert pl.read_parquet(tmp_path / "d.parquet")["text"].to_list() == ["first document\nwith two lines",
                                                                         "second document\n"]
    assert manifest["sources"][0]["sha256"] == digest


def test_checksum_mismatch_shows_both_hashes_and_leaves_nothing(http_root, tmp_path):
    root, base = http_root
    (root / "corpus.txt").write_text(TEXT)
    wrong = "0" * 64
    with pytest.raises(CorpusError) as info:
        download(f"{base}/corpus.txt", tmp_path / "dl" / "web", wrong)
    assert wrong in str(info.value) and hashlib.sha256(TEXT.encode()).hexdigest() in str(info.value)
    assert list((tmp_path / "dl").iterdir()) == []


def test_http_404_names_status(http_root, tmp_path):
    _, base = http_root
    with pytest.raises(CorpusError, match="HTTP 404"):
        download(f"{base}/missing.txt", tmp_path / "out", "0" * 64)
    assert not (tmp_path / "out").exists()


def test_file_url(tmp_path):
    src = tmp_path / "local.txt"
    src.write_text(TEXT)
    out = download(src.as_uri(), tmp_path / "copy", hashlib.sha256(TEXT.encode()).hexdigest())
    assert out.read_text() == TEXT


def test_not_utf8_url_source_is_refused(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9".encode("latin-1"))
    source = {"name": "bad", "url": path.as_uri(), "sha256": "0" * 64}
    with pytest.raises(CorpusError, match="'bad'.*not UTF-8: invalid byte at offset 3"):
        build([source], {"bad": path}, tmp_path / "d.parquet", tmp_path / "m.json")
    assert not (tmp_path / "d.parquet").exists()


def test_empty_source_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="source 'stdlib' yielded no documents"):
        build([{"name": "stdlib", "builtin": "stdlib", "glob": "no-such-*.py"}], {},
              tmp_path / "d.parquet", tmp_path / "m.json")
