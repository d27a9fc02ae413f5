"""The manifest of a prepared shard set, ``<tokens_dir>/<prefix>_meta.json``: which shards each split holds.

``prepare`` writes it with ``files`` per split, ``n_tokens`` and ``sha256`` per shard. Every run checks the shards
a corpus selects against it, so a missing, extra or rewritten shard stops the run before its first step instead
of being silently skipped. Only names and token counts (from the headers) are checked: re-hashing would read
every shard on every run (8 GB at paper scale); the hashes are there for provenance.

Shards downloaded by ``fetch_corpora`` (FineWeb) come without a manifest: for them only the glob applies.
"""
from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Sequence

from ..config import DataConfig, Preset, TrainConfig
from .shards import ShardError, bytes_per_token, find_shards, read_header, require_tokenizer


def manifest_path(tokens_dir: str | os.PathLike, prefix: str) -> Path:
    return Path(tokens_dir) / f"{prefix}_meta.json"


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest at ``path`` with its ``files`` checked (split -> list of shard names); errors name the file."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(f"{path}: not a readable shard manifest ({e})") from None
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not all(
            isinstance(names, list) and all(isinstance(n, str) for n in names) for names in files.values()):
        raise ShardError(f"{path}: field 'files' must map each split to a list of shard names")
    return meta


def shard_sizes(meta: dict, path: str | os.PathLike) -> dict[str, int]:
    """Token count of every shard the manifest lists.

    Manifests written before ``n_tokens`` was recorded give them through the writer's layout: every shard of a
    split holds ``shard_tokens`` except the split's last, which holds the rest of the split's ``tokens``.
    """
    if "n_tokens" in meta:
        sizes = meta["n_tokens"]
    else:
        try:
            full, totals = int(meta["shard_tokens"]), meta["tokens"]
            sizes = {}
            for split, names in meta["files"].items():
                sizes.update(dict.fromkeys(names, full))
                if names:
                    sizes[names[-1]] = int(totals[split]) - full * (len(names) - 1)
        except (KeyError, TypeError, ValueError) as e:
            raise ShardError(f"{path}: without 'n_tokens' the manifest needs 'shard_tokens' and 'tokens' "
                             f"per split ({type(e).__name__}: {e})") from None
    listed = {n for names in meta["files"].values() for n in names}
    if not isinstance(sizes, dict) or set(sizes) != listed or not all(isinstance(n, int) for n in sizes.values()):
        raise ShardError(f"{path}: field 'n_tokens' must give an integer count for exactly the shards in 'files'")
    return sizes


def check_shard_set(
    tokens_dir: str | os.PathLike, prefix: str, patterns: Sequence[str], paths: Sequence[Path]
) -> None:
    """Refuse ``paths`` (the shards ``patterns`` found) unless they agree with ``<prefix>_meta.json``, if any.

    Every listed shard that a pattern selects must be there with its recorded token count, and no unlisted
    ``<prefix>_*`` shard may be among ``paths``. Without a manifest there is nothing to check against.
    """
    tokens_dir = Path(tokens_dir)
    path = manifest_path(tokens_dir, prefix)
    if not path.is_file():
        return
    sizes = shard_sizes(read_manifest(path), path)
    found = {p.relative_to(tokens_dir).as_posix(): p for p in paths}
    extra = sorted(n for n in found if n not in sizes and n.startswith(f"{prefix}_"))
    if extra:
        raise ShardError(f"{found[extra[0]]}: shard not listed in {path} (left from another preparation? "
                         f"remove it or prepare the corpus again with overwrite)")
    wanted = [n for n in sizes if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    missing = [n for n in wanted if n not in found]
    if missing:
        raise ShardError(f"{tokens_dir / missing[0]}: shard missing, though {path} lists it "
                         f"({len(missing)} of {len(wanted)} selected shards missing)")
    for name, shard in found.items():
        if name in sizes and (n := read_header(shard).n_tokens) != sizes[name]:
            raise ShardError(f"{shard}: holds {n} tokens, {path} records {sizes[name]}")


def corpus_shards(data: DataConfig, corpus: str) -> list[Path]:
    """Token shards of a corpus (``val``, ``large`` (L) or ``small`` (S)), checked against the manifest."""
    patterns = data.patterns(corpus)
    paths = find_shards(data.tokens_dir, patterns)
    check_shard_set(data.tokens_dir, data.shard_prefix, patterns, paths)
    return paths


def shard_files(preset: Preset, corpus: str) -> list[Path]:
    """Token shards of the preset's ``val``, ``large`` (L) or ``small`` (S) corpus, checked against its manifest and
    refused if a header records another tokenizer than the preset's model."""
    paths = corpus_shards(preset.data, corpus)
    require_tokenizer(paths, preset.model.tokenizer)
    return paths


def preset_bytes_per_token(preset: Preset, *, schedule: TrainConfig | None = None) -> float:
    """:func:`bytes_per_token` of the preset's val shards over the ``val_tokens`` of ``schedule`` (default the inner
    loop's, whose curves the notebooks compare), in the preset's tokenizer."""
    t = schedule or preset.inner_train
    return bytes_per_token(shard_files(preset, "val"), preset.model.tokenizer, t.val_tokens)
