"""Token shards in the llm.c / modded-nanogpt format.

A shard is a header of 256 little-endian int32 ``[20240520 (magic), 1 (version), n_tokens, tokenizer, 0, ...]``
followed by ``n_tokens`` little-endian uint16 token ids. The tokenizer slot (index 3, unused by llm.c) holds the
``shard_code`` of the tokenizer that made the ids (``genprune_nb.tokenizer``): 0 = gpt2, so llm.c's and FineWeb's
shards read as GPT-2; 1 = bytes. A model reads only shards of its own tokenizer (:func:`require_tokenizer`).
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import GenpruneError
from ..storage.atomic import atomic_path
from ..tokenizer import TOKENIZERS, get_tokenizer, tokenizer_of_code

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKENIZER_SLOT = 3  # header int holding the tokenizer's shard code
TOKEN_DTYPE = np.dtype("<u2")


class ShardError(GenpruneError, ValueError):
    """A file is not a valid token shard; the message names the file and the fault."""


class ShardHeader(NamedTuple):
    magic: int
    version: int
    n_tokens: int
    tokenizer: str  # the name of the tokenizer that made the ids


def read_header(path: str | os.PathLike) -> ShardHeader:
    """Read and check a shard's header and body length (magic, version, n_tokens vs file size)."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ShardError(f"{path}: file shorter than the shard header ({size} bytes < {HEADER_BYTES})")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    magic, version, n_tokens = (int(v) for v in header[:3])
    if magic != MAGIC:
        raise ShardError(f"{path}: bad magic number {magic}, expected {MAGIC} (not a token shard)")
    if version != VERSION:
        raise ShardError(f"{path}: unsupported shard version {version}, expected {VERSION}")
    body = size - HEADER_BYTES
    if n_tokens < 0 or body != n_tokens * TOKEN_DTYPE.itemsize:
        fault = "truncated body" if body < n_tokens * TOKEN_DTYPE.itemsize else "body too long"
        stray = " and a stray byte" if body % TOKEN_DTYPE.itemsize else ""
        raise ShardError(
            f"{path}: {fault}: header declares {n_tokens} tokens, file holds {body // TOKEN_DTYPE.itemsize}"
            f"{stray} ({body} bytes after the header)"
        )
    code = int(header[TOKENIZER_SLOT])
    tokenizer = tokenizer_of_code(code)
    if tokenizer is None:
        known = ", ".join(f"{kind.shard_code} = {name}" for name, kind in TOKENIZERS.items())
        raise ShardError(f"{path}: unknown tokenizer code {code} in header slot {TOKENIZER_SLOT} (known: {known})")
    return ShardHeader(magic, version, n_tokens, tokenizer)


def require_tokenizer(paths: Sequence[str | os.PathLike], tokenizer: str) -> None:
    """Refuse any of ``paths`` whose header records another tokenizer than ``tokenizer`` (the model's)."""
    for path in paths:
        found = read_header(path).tokenizer
        if found != tokenizer:
            raise ShardError(f"{path}: shard of tokenizer {found!r}, but the model's tokenizer is {tokenizer!r}; "
                             f"prepare the corpus with {tokenizer!r} into a data.tokens_dir of its own")


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """The shard's tokens as a read-only uint16 memory map of exactly ``n_tokens`` values."""
    n_tokens = read_header(path).n_tokens
    if n_tokens == 0:  # an empty file region cannot be memory-mapped
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(n_tokens,))


def write_shard(path: str | os.PathLike, tokens, *, tokenizer: str = "gpt2") -> None:
    """Atomically write ``tokens`` (1-D integer ids in [0, 65535]) made by ``tokenizer`` as a shard at ``path``."""
    path = Path(path)
    arr = np.asarray(tokens)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ShardError(f"{path}: tokens must be a 1-D integer array, got dtype {arr.dtype} shape {arr.shape}")
    if arr.size >= 2**31:
        raise ShardError(f"{path}: {arr.size} tokens do not fit the int32 count of the header")
    if arr.size:
        bad = np.flatnonzero((arr < 0) | (arr > np.iinfo(TOKEN_DTYPE).max))
        if bad.size:
            i = int(bad[0])
            raise ShardError(f"{path}: token id {int(arr[i])} at index {i} is outside uint16 range [0, 65535]")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC, VERSION, arr.size)
    header[TOKENIZER_SLOT] = get_tokenizer(tokenizer).shard_code
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header.tobytes())
        fh.write(arr.astype(TOKEN_DTYPE, copy=False).tobytes())


def list_shards(tokens_dir: str | os.PathLike, name: str, split: str) -> list[Path]:
    """Sorted paths of ``{name}_{split}_*.bin`` in ``tokens_dir``; an error if there are none."""
    return find_shards(tokens_dir, [f"{glob.escape(name)}_{glob.escape(split)}_*.bin"])


def find_shards(tokens_dir: str | os.PathLike, patterns: Sequence[str]) -> list[Path]:
    """Sorted, de-duplicated shards matching any of the glob ``patterns`` in ``tokens_dir``; an error if none."""
    tokens_dir = Path(tokens_dir)
    paths = sorted({p for pattern in patterns for p in tokens_dir.glob(pattern) if p.is_file()})
    if not paths:
        raise FileNotFoundError(f"no token shards matching {list(patterns)} in {tokens_dir}")
    return paths


def check_vocab(path: Path, tokens: np.ndarray, vocab_size: int) -> None:
    """Refuse a shard holding a token id >= ``vocab_size`` (the embedding would fail on it mid-run)."""
    if tokens.size and int(tokens.max()) >= vocab_size:
        offset = int(np.argmax(tokens >= vocab_size))
        raise ShardError(f"{path}: token id {int(tokens[offset])} at token offset {offset} is outside the "
                         f"model's vocabulary (vocab_size {vocab_size})")


def bytes_per_token(files: Sequence[str | Path], tokenizer: str, tokens: int) -> float:
    """UTF-8 bytes of text per predicted token in the first ``tokens`` targets of the shards ``files`` (the tokens a
    val loss of that many tokens predicts: the stream from its second token on). ``<|endoftext|>`` separates
    documents: a token to predict, no bytes of text. A byte-level model gives just under 1."""
    if tokens < 1:
        raise ValueError(f"bytes_per_token needs at least one token, got tokens={tokens}")
    stream, have = [], 0
    for path in files:
        stream.append(read_shard(path)[: tokens + 1 - have])
        have += len(stream[-1])
        if have > tokens:
            break
    ids = np.concatenate(stream)[1:]
    if len(ids) < tokens:
        raise ValueError(f"the shards {[str(f) for f in files]} hold {len(ids) + 1} tokens, fewer than the "
                         f"{tokens + 1} that {tokens} targets need")
    kind = get_tokenizer(tokenizer)
    lengths = np.array([len(b) for b in kind.token_bytes(range(kind.n_vocab))], dtype=np.int64)
    lengths[kind.eot] = 0
    return float(lengths[ids].sum() / len(ids))
