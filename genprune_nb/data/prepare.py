"""Tokenize text documents into llm.c-style token shards (``{name}_val_*.bin`` then ``{name}_train_*.bin``).

As in llm.c's ``fineweb.py``: every document is prefixed with ``<|endoftext|>`` (50256 for GPT-2), shards hold at most
``shard_tokens`` tokens, a document may straddle a shard boundary, and the shard index runs on across the
splits (one val shard -> ``val_000000``, then ``train_000001``, ...), matching the FineWeb10B file names.
Documents are tokenized with the preset's ``model.tokenizer`` (GPT-2 by default); every shard header and the
manifest record it, and a model reads only shards of its own tokenizer.
"""
from __future__ import annotations

import fnmatch
import glob
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from ..config import Preset
from ..progress import tqdm
from ..storage.atomic import write_json
from ..tokenizer import get_tokenizer
from .catalog import sha256
from .manifest import corpus_shards, shard_files
from .shards import write_shard

if TYPE_CHECKING:  # pandas is imported where a summary is built, not by every data preparation
    import pandas as pd

SPLITS = ("val", "small", "train")  # in document order: held-out val, the small corpus S, the large corpus L
_BATCH_DOCS = 64  # documents per encode_batch call


class _ShardWriter:
    """Fills fixed-size token buffers and writes each full one as the next shard."""

    def __init__(self, out_dir: Path, name: str, shard_tokens: int, tokenizer: str):
        self.out_dir, self.name, self.tokenizer = out_dir, name, tokenizer
        self.buf = np.empty(shard_tokens, dtype=np.uint16)
        self.fill = 0
        self.index = 0  # runs on across splits, as in llm.c
        self.files: dict[str, list[str]] = {s: [] for s in SPLITS}
        self.tokens = {s: 0 for s in SPLITS}
        self.n_tokens: dict[str, int] = {}  # per shard, for the manifest
        self.split: str | None = None  # the split the buffer is filling

    def add(self, split: str, tokens: np.ndarray) -> None:
        if split != self.split:
            self.flush()  # each split ends with its own (partial) shard
            self.split = split
        while tokens.size:
            take = min(tokens.size, self.buf.size - self.fill)
            self.buf[self.fill : self.fill + take] = tokens[:take]
            self.fill += take
            tokens = tokens[take:]
            if self.fill == self.buf.size:
                self.flush()

    def flush(self) -> None:
        if not self.fill:
            return
        split = self.split
        fname = f"{self.name}_{split}_{self.index:06d}.bin"
        write_shard(self.out_dir / fname, self.buf[: self.fill], tokenizer=self.tokenizer)
        self.files[split].append(fname)
        self.tokens[split] += self.fill
        self.n_tokens[fname] = self.fill
        self.index += 1
        self.fill = 0


def _existing_shards(out_dir: Path, name: str) -> set[str]:
    return {p.name for s in SPLITS for p in out_dir.glob(f"{glob.escape(name)}_{s}_*.bin")}


def prepare_documents(
    documents: Iterable[str],
    out_dir: str | os.PathLike,
    name: str,
    *,
    val_documents: int = 10,
    small_documents: int = 0,
    shard_tokens: int = 100_000_000,
    progress: bool = True,
    overwrite: bool = False,
    source=None,
    tokenizer: str = "gpt2",
) -> dict:
    """Tokenize ``documents`` with ``tokenizer`` (a ``genprune_nb.tokenizer`` name) into shards in ``out_dir``.

    The first ``val_documents`` form the val split, the next ``small_documents`` the ``small`` split (the inner
    loop's corpus S) and the rest the ``train`` split (the outer loop's corpus L): three disjoint token sets.

    Every shard and ``{name}_meta.json`` (the manifest that runs check the shards against, with each shard's
    token count and sha256: ``genprune_nb.data.manifest``) is written atomically. Existing ``{name}`` shards are
    an error unless ``overwrite``; then shards of the old set that the new one does not rewrite are removed at the
    end.
    ``source`` (JSON-serialisable) is recorded in the meta file. Returns the meta dict plus ``out_dir``:
    ``files`` and ``tokens`` per split, ``documents`` per split.
    """
    total = len(documents) if hasattr(documents, "__len__") else None
    out_dir = Path(out_dir)
    enc = get_tokenizer(tokenizer)
    if val_documents < 0 or small_documents < 0:
        raise ValueError(f"val_documents and small_documents must be >= 0, got {val_documents}, {small_documents}")
    quota = {"val": val_documents, "small": small_documents}
    if not 1 <= shard_tokens < 2**31:
        raise ValueError(f"shard_tokens must be in [1, 2**31), got {shard_tokens}")
    old = _existing_shards(out_dir, name)
    if old and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds {len(old)} '{name}' shards (e.g. {min(old)}); pass overwrite=True "
            "(genprune prepare --overwrite) to replace them"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _ShardWriter(out_dir, name, shard_tokens, enc.name)
    n_docs = {s: 0 for s in SPLITS}
    docs: Iterator[str] = iter(documents)
    with tqdm(total=total, unit="doc", desc=f"tokenizing {name}", disable=not progress) as bar:
        while batch := list(itertools.islice(docs, _BATCH_DOCS)):
            for i, doc in enumerate(batch):
                if not isinstance(doc, str):
                    raise TypeError(f"document {sum(n_docs.values()) + i} is {type(doc).__name__}, not str")
            for ids in enc.encode_batch(batch):
                split = next((s for s in SPLITS[:-1] if n_docs[s] < quota[s]), SPLITS[-1])
                writer.add(split, np.array([enc.eot, *ids], dtype=np.uint16))
                n_docs[split] += 1
            bar.update(len(batch))
    if not sum(n_docs.values()):
        raise ValueError(f"no documents given for dataset {name!r}")
    writer.flush()
    for stale in sorted(old - {f for files in writer.files.values() for f in files}):
        (out_dir / stale).unlink()
    summary = {
        "name": name,
        "files": writer.files,
        "tokens": writer.tokens,
        "n_tokens": writer.n_tokens,
        "sha256": {f: sha256(out_dir / f) for f in writer.n_tokens},
        "documents": n_docs,
        "shard_tokens": shard_tokens,
        "tokenizer": enc.name,
        "eot": enc.eot,
        "source": source,
    }
    write_json(out_dir / f"{name}_meta.json", summary)
    return {**summary, "out_dir": str(out_dir)}


def _expand(pattern_or_paths: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[list[str], list[Path]]:
    single = isinstance(pattern_or_paths, (str, os.PathLike))
    patterns = [str(p) for p in ([pattern_or_paths] if single else pattern_or_paths)]
    paths: dict[Path, None] = {}  # ordered set: patterns in the given order, each pattern's matches sorted
    for pat in patterns:
        matched = sorted(Path(p) for p in glob.glob(pat, recursive=True) if os.path.isfile(p))
        if not matched:
            raise FileNotFoundError(f"no text files match {pat!r}")
        paths.update(dict.fromkeys(matched))
    return patterns, list(paths)


class _TextFiles:
    """Sized, lazy sequence of the UTF-8 contents of ``paths``."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[str]:
        for path in self.paths:
            try:
                yield path.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path} is not valid UTF-8: {e}") from e


def prepare_files(
    pattern_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    name: str,
    **kw,
) -> dict:
    """:func:`prepare_documents` over UTF-8 text files, one document per file.

    Files come in the order of the patterns given, each pattern's matches sorted (duplicates kept once), so
    the caller decides which documents come first and form the val split.

    ``pattern_or_paths`` is a glob pattern (``**`` allowed) or a list of paths/patterns; each must match a file.
    """
    patterns, paths = _expand(pattern_or_paths)
    kw.setdefault("source", {"patterns": patterns, "files": [str(p) for p in paths]})
    return prepare_documents(_TextFiles(paths), out_dir, name, **kw)


CORPORA = ("val", "small", "large")


def prepare_corpora(preset: Preset, *, overwrite: bool = False, progress: bool = True) -> dict:
    """Tokenize a preset's text corpus (a data-catalog entry) with its model's tokenizer into its val / small (S) /
    train (L) shards."""
    from . import catalog

    data = preset.data
    if not catalog.get(data.corpus).documents:
        raise ValueError(f"corpus {data.corpus!r} is distributed as token shards, not text: use fetch_corpora")
    return prepare_files(catalog.text_files(data.corpus, progress=progress), data.tokens_dir, data.shard_prefix,
                         val_documents=data.val_documents, small_documents=data.small_documents,
                         overwrite=overwrite, progress=progress, tokenizer=preset.model.tokenizer)


def fetch_corpora(preset: Preset, *, progress: bool = True) -> list[str]:
    """Download the token shards a preset's corpora select (e.g. FineWeb: val, S = 1 shard, L = 40 shards).

    No manifest is written (the hub gives no token counts or hashes): runs select these shards by glob only.
    """
    from . import catalog

    data = preset.data
    dataset = catalog.get(data.corpus)
    if preset.model.tokenizer != "gpt2":  # the distributed shard sets (FineWeb) hold GPT-2 ids
        raise ValueError(f"corpus {data.corpus!r} is distributed as GPT-2 token shards, but model.tokenizer is "
                         f"{preset.model.tokenizer!r}: choose a text corpus (data.corpus) to tokenize")
    tokens_dir = Path(data.tokens_dir)
    if tokens_dir.name != dataset.folder:
        raise ValueError(f"data.tokens_dir={data.tokens_dir!r} must end in the dataset's folder {dataset.folder!r}")
    patterns = [p for corpus in CORPORA for p in data.patterns(corpus)]
    wanted = [f for f in [*dataset.files, *dataset.extra_files] if any(fnmatch.fnmatch(f, p) for p in patterns)]
    catalog.download(data.corpus, dest_dir=tokens_dir.parent, files=wanted, progress=progress)
    return wanted


def prepared(preset: Preset) -> bool:
    """Whether the preset's three corpora (val, S, L) are all there; shards of another tokenizer than the model's,
    or that differ from their manifest, are an error (ShardError naming the file), not a False."""
    try:
        for corpus in CORPORA:
            shard_files(preset, corpus)
    except FileNotFoundError:
        return False
    return True


def ensure_corpora(preset: Preset, *, progress: bool = True) -> None:
    """Make the preset's three corpora (val, S, L) available, if missing: tokenize the text corpus (downloaded on
    first use, unless offline) or download the shards.

    Shards already there of another tokenizer than the model's are refused (ShardError naming the file), never reused.
    """
    from . import catalog

    if prepared(preset):
        return
    if catalog.get(preset.data.corpus).documents:
        prepare_corpora(preset, progress=progress)
    else:
        fetch_corpora(preset, progress=progress)


def corpora_summary(preset: Preset) -> pd.DataFrame:
    """One row per corpus (val, small S, large L): shard files and tokens, read from the shard headers."""
    import pandas as pd

    from .shards import read_header

    rows = []
    for corpus in CORPORA:
        files = corpus_shards(preset.data, corpus)
        rows.append({"corpus": corpus, "files": len(files), "tokens": sum(read_header(f).n_tokens for f in files),
                     "first_file": files[0].name})
    return pd.DataFrame(rows)


def large_to_small(summary: pd.DataFrame) -> float:
    """L : S, the ratio of the large to the small corpus in tokens (the paper's is 40 : 1), from ``corpora_summary``."""
    tokens = summary.set_index("corpus")["tokens"]
    return float(tokens["large"] / tokens["small"])


def corpora_preview(preset: Preset, n_tokens: int = 60) -> dict[str, str]:
    """The first ``n_tokens`` of each corpus's first shard, decoded (without the leading ``<|endoftext|>``): a
    glance that val, S and L hold different documents."""
    from .shards import read_shard

    enc = get_tokenizer(preset.model.tokenizer)
    return {corpus: enc.decode(read_shard(shard_files(preset, corpus)[0])[1:n_tokens].tolist())
            for corpus in CORPORA}
