"""Lossless entropy coding of ternary {-1, 0, +1} tensors (the connectome file, DESIGN.md §1).

Each tensor is coded with ``constriction``'s ANS coder under an i.i.d. categorical model whose
probabilities are that tensor's symbol counts; the counts travel in the header, so encoder and decoder
build the identical (deterministically quantized) model and the cost is within a hair of
``entropy_bits_per_weight``. A tensor with fewer than two distinct values needs no payload.

File layout (little-endian)::

    magic b"GPNBTRN\\0" | version u16 | header_len u32 | header_crc32 u32 | header (UTF-8 JSON) | payloads

The JSON header holds the user metadata and, per tensor in order, its name, shape, dtype, counts of
(0, +1, -1), payload length in bytes and the crc32 of its decoded int8 values.
"""
from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path

import constriction
import numpy as np

from ..errors import GenpruneError
from ..storage.atomic import atomic_path

__all__ = ["CodecError", "encode", "decode", "save", "load", "entropy_bits_per_weight"]

MAGIC = b"GPNBTRN\0"
VERSION = 1
_PREFIX = struct.Struct("<8sHII")  # magic, version, header length, header crc32
_SYMBOL = np.full(256, 3, dtype=np.int32)  # int8 value (viewed as uint8) -> symbol; 3 marks a bad value
_SYMBOL[[0, 1, 255]] = [0, 1, 2]  # 0 -> 0, +1 -> 1, -1 -> 2
_VALUE = np.array([0, 1, -1], dtype=np.int8)  # symbol -> int8 value


class CodecError(GenpruneError, ValueError):
    """Bad input to the codec: a non-ternary tensor, or a corrupt, truncated or foreign blob."""


def _counts(name: str, array: np.ndarray) -> list[int]:
    """Validate one tensor and return its counts of (0, +1, -1)."""
    if not isinstance(array, np.ndarray):
        raise CodecError(f"tensor {name!r} is a {type(array).__name__}, expected a numpy int8 array")
    if array.dtype != np.int8:
        raise CodecError(f"tensor {name!r} has dtype {array.dtype}, expected int8")
    counts = [int(np.count_nonzero(array == v)) for v in (0, 1, -1)]
    if sum(counts) != array.size:
        bad = array[(array < -1) | (array > 1)].flat[0]
        raise CodecError(f"tensor {name!r} has value {int(bad)} outside {{-1, 0, 1}}")
    return counts


def _model(counts: list[int]) -> constriction.stream.model.Categorical:
    return constriction.stream.model.Categorical(np.asarray(counts, dtype=np.float64), perfect=False)


def _entropy_bits(counts: list[int]) -> float:
    total = sum(counts)
    return -sum(c * math.log2(c / total) for c in counts if c)


def entropy_bits_per_weight(tensors: dict[str, np.ndarray]) -> float:
    """Size-weighted mean of the per-tensor empirical Shannon entropy: the ideal cost of this model."""
    counts = [_counts(name, array) for name, array in tensors.items()]
    total = sum(sum(c) for c in counts)
    return sum(_entropy_bits(c) for c in counts) / total if total else 0.0


def encode(tensors: dict[str, np.ndarray], metadata: dict | None = None) -> bytes:
    """Compress named int8 ternary arrays (any shapes) and JSON-serialisable ``metadata`` into bytes."""
    if not isinstance(tensors, dict):
        raise CodecError(f"tensors must be a dict of name -> int8 array, got {type(tensors).__name__}")
    entries, payloads = [], []
    for name, array in tensors.items():
        if not isinstance(name, str):
            raise CodecError(f"tensor names must be strings, got {name!r}")
        counts = _counts(name, array)
        flat = np.ascontiguousarray(array).reshape(-1)
        payload = b""
        if sum(c > 0 for c in counts) > 1:
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(_SYMBOL[flat.view(np.uint8)], _model(counts))
            payload = coder.get_compressed().astype("<u4", copy=False).tobytes()
        entries.append({"name": name, "shape": list(array.shape), "dtype": "int8", "counts": counts,
                        "nbytes": len(payload), "crc32": zlib.crc32(flat)})
        payloads.append(payload)
    try:
        header = json.dumps({"metadata": metadata or {}, "tensors": entries}).encode()
    except (TypeError, ValueError) as e:
        raise CodecError(f"metadata is not JSON-serialisable: {e}") from None
    return b"".join([_PREFIX.pack(MAGIC, VERSION, len(header), zlib.crc32(header)), header, *payloads])


def _parse_header(blob: bytes) -> tuple[dict, list[dict], int]:
    """Check magic, version and header integrity; return metadata, tensor entries and the payload offset."""
    if len(blob) < _PREFIX.size:
        raise CodecError(f"truncated blob: {len(blob)} bytes is shorter than the {_PREFIX.size}-byte prefix")
    magic, version, header_len, header_crc = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise CodecError(f"wrong magic bytes {magic!r} (expected {MAGIC!r}): not a ternary connectome file")
    if version != VERSION:
        raise CodecError(f"unsupported format version {version} (this reader handles version {VERSION})")
    end = _PREFIX.size + header_len
    if len(blob) < end:
        raise CodecError(f"truncated blob: header needs {end} bytes, blob has {len(blob)}")
    raw = blob[_PREFIX.size:end]
    if zlib.crc32(raw) != header_crc:
        raise CodecError("corrupt header: crc32 mismatch")
    try:
        header = json.loads(raw)
        metadata, entries = header["metadata"], header["tensors"]
        payload_bytes = sum(int(t["nbytes"]) for t in entries)
    except (ValueError, KeyError, TypeError) as e:
        raise CodecError(f"corrupt header: {e}") from None
    if len(blob) != end + payload_bytes:
        kind = "truncated" if len(blob) < end + payload_bytes else "trailing bytes in"
        raise CodecError(f"{kind} blob: header declares {end + payload_bytes} bytes, blob has {len(blob)}")
    return metadata, entries, end


def _decode_tensor(entry: dict, payload: bytes) -> np.ndarray:
    """Decode one tensor and verify its counts, shape and checksum."""
    name, counts = entry["name"], entry["counts"]
    size = sum(counts)
    if entry["dtype"] != "int8" or len(counts) != 3 or math.prod(entry["shape"]) != size:
        raise CodecError(f"corrupt header entry for tensor {name!r}")
    if not payload:
        present = [s for s, c in enumerate(counts) if c]
        if len(present) > 1:
            raise CodecError(f"tensor {name!r}: missing payload")
        values = np.full(size, _VALUE[present[0]] if present else 0, dtype=np.int8)
    else:
        try:
            coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
            values = _VALUE[coder.decode(_model(counts), size)]
            clean = coder.is_empty()
        except Exception as e:  # constriction refuses some corrupt streams itself
            raise CodecError(f"tensor {name!r}: corrupt payload ({e})") from None
        if not clean:
            raise CodecError(f"tensor {name!r}: corrupt payload (coder not empty after decoding)")
    if zlib.crc32(values) != entry["crc32"]:
        raise CodecError(f"tensor {name!r}: checksum mismatch, the payload is corrupt")
    return values.reshape(entry["shape"])


def decode(blob: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """Inverse of ``encode``: return ``(tensors, metadata)``; raise ``CodecError`` on any fault."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    metadata, entries, offset = _parse_header(blob)
    tensors = {}
    for entry in entries:
        try:
            nbytes = int(entry["nbytes"])
            tensors[entry["name"]] = _decode_tensor(entry, blob[offset:offset + nbytes])
        except CodecError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise CodecError(f"corrupt header entry {entry!r}: {e}") from None
        offset += nbytes
    return tensors, metadata


def save(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    """Atomically write ``encode(tensors, metadata)`` to ``path``."""
    blob = encode(tensors, metadata)
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Read a file written by ``save``; a ``CodecError`` names the file."""
    try:
        return decode(Path(path).read_bytes())
    except CodecError as e:
        raise CodecError(f"{path}: {e}") from None
