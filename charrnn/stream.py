"""Streaming UTF-8: byte chunks in, code point chunks out, without ever holding the whole text.

Shapes: C characters in one chunk, V vocabulary.
A multi-byte character split across two chunks is carried over by an incremental decoder; invalid UTF-8 is
reported with its absolute byte offset, counting a dropped leading byte-order mark, exactly as a one-shot
`bytes.decode` of the whole file would place it. An all-ASCII chunk skips decoding: its bytes are its code points.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

import numpy as np

BOM = b"\xef\xbb\xbf"  # an encoding marker that Windows editors write, not text
CHUNK = 4 << 20  # bytes read at a time: large enough that per-chunk overhead vanishes, small next to memory


class CorpusError(ValueError):
    """The text cannot be used (invalid UTF-8, changed while being read, ...); the message is one line."""


def read_chunks(f: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    """The bytes of an open binary file, `size` at a time."""
    while chunk := f.read(size):
        yield chunk


def split_bom(chunks: Iterable[bytes]) -> tuple[int, Iterator[bytes]]:
    """(bytes dropped, the chunks without a leading byte-order mark); the mark may be split across chunks."""
    it, head = iter(chunks), b""
    for chunk in it:
        head += chunk
        if len(head) >= len(BOM):
            break
    skip = len(BOM) if head.startswith(BOM) else 0
    return skip, itertools.chain([head[skip:]] if len(head) > skip else [], it)


def code_points(chunks: Iterable[bytes], name: str, start: int = 0) -> Iterator[np.ndarray]:
    """Decode UTF-8 byte chunks -> code point chunks (C,): uint8 for an all-ASCII chunk, else uint32.

    `start` is the absolute offset of the first byte (3 after a dropped BOM). Raises CorpusError naming the
    absolute offset and value of the first invalid byte.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = start  # absolute offset of the next chunk's first byte
    for chunk in chunks:
        pending = len(decoder.getstate()[0])  # bytes of a character begun in the previous chunk
        if not pending and chunk.isascii():
            yield np.frombuffer(chunk, np.uint8)  # (C,)
        else:
            text = _decode(decoder, chunk, offset - pending, name)
            yield np.frombuffer(text.encode("utf-32-le"), "<u4")  # (C,) strict UTF-8 holds no surrogates
        offset += len(chunk)
    _decode(decoder, b"", offset - len(decoder.getstate()[0]), name, final=True)


def _decode(decoder, chunk: bytes, at: int, name: str, final: bool = False) -> str:
    """decoder.decode, with an error as a CorpusError; `at` is where the decoder's input (pending + chunk) starts."""
    try:
        return decoder.decode(chunk, final)
    except UnicodeDecodeError as e:
        bad = e.object[e.start:e.start + 1]
        raise CorpusError(f"{name} is not valid UTF-8 (byte {at + e.start}: {bad!r}); convert it, "
                          f"e.g. with `iconv -t UTF-8`") from None


@dataclass(frozen=True)
class Scan:
    """What one pass over a text finds: the SHA-256 of its UTF-8 bytes (BOM dropped), its vocabulary (V,) sorted
    uint32 code points, how often each occurs (V,) int64, and its length in characters."""

    sha256: str
    vocab: np.ndarray  # (V,) uint32
    counts: np.ndarray  # (V,) int64
    chars: int


def scan(chunks: Iterable[bytes], name: str) -> Scan:
    """Hash, count and measure a UTF-8 text given as byte chunks, in one pass. Raises CorpusError."""
    sha, counts = hashlib.sha256(), np.zeros(0, np.int64)
    skip, body = split_bom(chunks)

    def hashed() -> Iterator[bytes]:
        for chunk in body:
            sha.update(chunk)
            yield chunk

    for cps in code_points(hashed(), name, start=skip):
        c = byte_counts(cps) if cps.dtype == np.uint8 else np.bincount(cps)  # (max+1,) occurrences in this chunk
        if len(c) > len(counts):
            counts = np.concatenate([counts, np.zeros(len(c) - len(counts), np.int64)])
        counts[:len(c)] += c
    vocab = np.flatnonzero(counts).astype(np.uint32)  # (V,) sorted
    return Scan(sha.hexdigest(), vocab, counts[vocab], int(counts.sum()))


def byte_counts(b: np.ndarray) -> np.ndarray:
    """How often each value 0..255 occurs in b (C,) uint8, as (256,) int64. Counted in pairs: bincount casts its
    input to intp, and a uint16 view has half the elements (BENCHMARKS.md, "Large corpora")."""
    pairs = np.bincount(b[:len(b) & ~1].view(np.uint16), minlength=1 << 16).reshape(256, 256)  # (256,256) byte pairs
    counts = pairs.sum(axis=0) + pairs.sum(axis=1)  # (256,) each byte value, as either half of a pair
    if len(b) & 1:
        counts[b[-1]] += 1
    return counts


def encode(chunks: Iterable[bytes], name: str, vocab: np.ndarray, dtype) -> Iterator[np.ndarray]:
    """The second pass: ids (C,) of `dtype` per chunk of the text whose vocabulary (V,) a `scan` found.

    Raises CorpusError if a character outside `vocab` turns up (the text changed since it was scanned)."""
    lut = np.full(int(vocab[-1]) + 1 if len(vocab) else 1, len(vocab), np.uint32)  # code point -> id; V = absent
    lut[vocab] = np.arange(len(vocab), dtype=np.uint32)
    table = None  # for one-byte ids: byte -> id as a bytes.translate table, 255 (never an id) where absent
    if np.dtype(dtype) == np.uint8 and len(vocab) < 256:
        low = vocab[vocab < 256]  # (k,) the first k entries of the sorted vocabulary: ids 0..k-1
        table = np.full(256, 255, np.uint8)  # (256,)
        table[low] = np.arange(len(low), dtype=np.uint8)
        table = table.tobytes()
    skip, body = split_bom(chunks)
    for cps in code_points(body, name, start=skip):
        if table is not None and cps.dtype == np.uint8:  # an ASCII chunk: one C call instead of a take
            ids = cps.tobytes().translate(table)
            if b"\xff" in ids:
                raise CorpusError(f"{name} changed while it was being read; run the command again")
            yield np.frombuffer(ids, np.uint8)
            continue
        if len(cps) and cps.max() >= len(lut):
            raise CorpusError(f"{name} changed while it was being read; run the command again")
        ids = lut.take(cps)  # (C,) uint32
        if len(ids) and ids.max() == len(vocab):
            raise CorpusError(f"{name} changed while it was being read; run the command again")
        yield ids.astype(dtype, copy=False)
