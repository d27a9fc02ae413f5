import hashlib
import os
import shutil

import numpy as np
import pytest

from genprune_nb.data import catalog
from genprune_nb.data.catalog import DataCorruptError, DataNotFoundError, Dataset
from genprune_nb.data.shards import write_shard


@pytest.fixture
def external(monkeypatch, external_data_dir):
    monkeypatch.setenv(catalog.DATA_DIR_ENV, str(external_data_dir))
    return external_data_dir


@pytest.fixture
def empty_dirs(monkeypatch, tmp_path):
    """Two empty data dirs and a cwd without data/external."""
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    monkeypatch.setenv(catalog.DATA_DIR_ENV, os.pathsep.join(map(str, dirs)))
    monkeypatch.chdir(tmp_path)
    return dirs


def _corrupt_copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x20
    dst.write_bytes(bytes(data))
    return hashlib.sha256(data).hexdigest()


def test_data_dirs_order(monkeypatch, tmp_path):
    monkeypatch.setenv(catalog.DATA_DIR_ENV, os.pathsep.join(["/x", "", "/y"]))
    monkeypatch.chdir(tmp_path)
    assert catalog.data_dirs() == [catalog.Path("/x"), catalog.Path("/y"), tmp_path / "data" / "external"]


def test_locate_tinyshakespeare_and_english_prose(external):
    assert catalog.locate("tinyshakespeare") == external / "tinyshakespeare"
    assert catalog.locate("tinyshakespeare", "input.txt").stat().st_size == 1_115_394
    assert catalog.locate("english_prose") == external / "english_prose_stdlib"
    sotu = catalog.files("english_prose", "sotu/*.txt")
    assert len(sotu) == 233 and sotu == sorted(sotu) and sotu[0].name.startswith("1790_")
    assert catalog.locate("english_prose", "moby_dick.txt").name == "moby_dick.txt"


def test_every_shared_dataset_verifies(external):
    """Every hash recorded in the catalog matches the shared copy (fineweb10B is not there)."""
    for name in catalog.CATALOG:
        if name != "fineweb10B":
            assert catalog.locate(name).is_dir()


def test_first_dir_holding_it_wins(monkeypatch, tmp_path, external):
    monkeypatch.setenv(catalog.DATA_DIR_ENV, os.pathsep.join([str(tmp_path), str(external)]))
    assert catalog.locate("tinyshakespeare") == external / "tinyshakespeare"


def test_unknown_name_lists_catalog():
    with pytest.raises(KeyError, match="tinyshakespeare"):
        catalog.get("no_such_data")


def test_missing_lists_searched_dirs(empty_dirs, tmp_path):
    for args in [("tinyshakespeare",), ("tinyshakespeare", "input.txt")]:
        with pytest.raises(DataNotFoundError) as err:
            catalog.locate(*args)
        msg = str(err.value)
        assert "'tinyshakespeare'" in msg and "GENPRUNE_DATA_DIR" in msg and "download" in msg
        for d in [*empty_dirs, tmp_path / "data" / "external"]:
            assert str(d / "tinyshakespeare") in msg


def test_corrupt_copy(empty_dirs, external_data_dir):
    src = external_data_dir / "tinyshakespeare" / "input.txt"
    bad = empty_dirs[1] / "tinyshakespeare" / "input.txt"
    actual = _corrupt_copy(src, bad)
    for args in [("tinyshakespeare",), ("tinyshakespeare", "input.txt")]:
        with pytest.raises(DataCorruptError) as err:
            catalog.locate(*args)
        msg = str(err.value)
        assert str(bad) in msg and actual in msg and catalog.get("tinyshakespeare").files["input.txt"] in msg


def test_corrupt_copy_caught_by_manifest(empty_dirs, external_data_dir):
    src = external_data_dir / "english_prose_stdlib"
    folder = empty_dirs[0] / "english_prose_stdlib"
    folder.mkdir()
    shutil.copy(src / "SHA256SUMS", folder / "SHA256SUMS")
    rel = "sotu/1790_george_washington_n.txt"
    actual = _corrupt_copy(src / rel, folder / rel)
    with pytest.raises(DataCorruptError, match=actual):
        catalog.locate("english_prose", rel)
    with pytest.raises(DataNotFoundError, match=r"233 file\(s\) listed in .*SHA256SUMS \(moby_dick.txt, sotu/1791"):
        catalog.locate("english_prose")
    (folder / "SHA256SUMS").write_text("tampered\n")
    with pytest.raises(DataCorruptError, match="SHA256SUMS"):
        catalog.locate("english_prose", rel)


def test_fineweb_urls():
    ds = catalog.get("fineweb10B")
    base = "https://huggingface.co/datasets/kjj0/fineweb10B-gpt2/resolve/main/"
    assert ds.url("fineweb_val_000000.bin") == base + "fineweb_val_000000.bin"
    assert ds.extra_files[0] == "fineweb_train_000001.bin" and ds.extra_files[-1] == "fineweb_train_000103.bin"
    assert ds.url("fineweb_train_000007.bin") == base + "fineweb_train_000007.bin"


def test_download_from_file_urls(monkeypatch, tmp_path):
    """download() end to end, offline: a fake dataset whose canonical URLs are file:// URLs."""
    src = tmp_path / "remote"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    write_shard(src / "s_val_000000.bin", np.arange(10))
    (src / "broken.bin").write_bytes(b"not a shard")
    ds = Dataset("fake", "fake_folder", "test", "none",
                 files={"a.txt": hashlib.sha256(b"alpha").hexdigest(), "s_val_000000.bin": None},
                 extra_files=("broken.bin",), base_url=src.as_uri() + "/", shards=True)
    monkeypatch.setitem(catalog.CATALOG, "fake", ds)
    dest = tmp_path / "data"
    folder = catalog.download("fake", dest, files=["a.txt", "s_val_000000.bin"], progress=False)
    assert folder == dest / "fake_folder" and (folder / "a.txt").read_text() == "alpha"
    monkeypatch.setenv(catalog.DATA_DIR_ENV, str(dest))
    assert catalog.locate("fake") == folder
    with pytest.raises(DataCorruptError, match="broken.bin"):
        catalog.download("fake", dest, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "s_val_000000.bin"]  # no partial file left
    (src / "a.txt").write_text("tampered")
    (folder / "a.txt").unlink()
    with pytest.raises(DataCorruptError, match="a.txt"):
        catalog.download("fake", dest, files=["a.txt"], progress=False)
    assert not (folder / "a.txt").exists()


def test_download_without_source_is_refused(monkeypatch, tmp_path):
    """A file with neither URL nor archive is named, with the dataset's note on how to obtain it."""
    ds = Dataset("fake", "fake_folder", "test", "none", files={"made_by_hand.csv": None},
                 manual={"made_by_hand.csv": "export it from the original spreadsheet"})
    monkeypatch.setitem(catalog.CATALOG, "fake", ds)
    with pytest.raises(DataNotFoundError, match="made_by_hand.csv.*original spreadsheet"):
        catalog.download("fake", tmp_path, progress=False)
    assert catalog.get("mmlu").url("val/anatomy_val.csv") is None and catalog.get("mmlu").url("test/x_test.csv")
