import pytest

from workflow.files import atomic_path, read_json, sha256_bytes, sha256_file, write_json_atomic


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("killed")
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_path_leaves_nothing_when_first_write_fails(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x")
            raise KeyboardInterrupt
    assert list((tmp_path / "sub").iterdir()) == []


def test_atomic_directory(tmp_path):
    target = tmp_path / "dir"
    for content in (b"one", b"two"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "f").write_bytes(content)
    assert (target / "f").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]


def test_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert (
        sha256_file(path)
        == sha256_bytes(b"abc")
        == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    )
