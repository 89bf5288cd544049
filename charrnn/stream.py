"""Streaming text: byte chunks in, code point chunks out, without ever holding the whole text.

Shapes: C characters in one chunk, V vocabulary.
A multi-byte character split across two chunks is carried over by an incremental decoder; invalid UTF-8 is
reported with its absolute byte offset, counting a dropped leading byte-order mark, exactly as a one-shot
`bytes.decode` of the whole file would place it, and with a guess at the encoding when the bytes look like
Latin-1/cp1252 or UTF-16. An all-ASCII chunk skips decoding: its bytes are its code points. A text of several
files is decoded file by file (each its own leading byte-order mark, each its own offsets). Text in another
encoding is turned into UTF-8 chunks first (`as_utf8`), by Python's incremental decoder for that codec.
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


def text_codec(name: str | None) -> str:
    """The canonical name of a text encoding Python knows ("utf-8" for None); LookupError for an unknown name or
    a codec that does not turn bytes into text (base64, zlib, rot13)."""
    if name is None:
        return "utf-8"
    canonical = codecs.lookup(name).name
    try:
        b"\x00".decode(canonical)  # LookupError: '...' is not a text encoding (b"" would not even look)
    except UnicodeDecodeError:
        pass
    return canonical


def as_utf8(chunks: Iterable[bytes], name: str, encoding: str) -> Iterator[bytes]:
    """The text of one file's byte chunks in `encoding` (a text_codec name) as UTF-8 chunks, a leading byte-order
    mark dropped. Raises CorpusError naming the byte offset of the first byte that does not decode."""
    if encoding == "utf-8":  # validated (an ASCII chunk by one C call) and passed on as it is
        offset, chunks = split_bom(chunks)
        decoder, chunk = codecs.getincrementaldecoder("utf-8")("strict"), b""
        for chunk in chunks:
            pending = _pending(decoder)
            if pending or not chunk.isascii():
                _decode(decoder, chunk, offset - pending, name)
            offset += len(chunk)
            yield chunk
        _decode(decoder, b"", offset - _pending(decoder), name, final=True, context=chunk)
        return
    decoder, offset, started = codecs.getincrementaldecoder(encoding)("strict"), 0, False
    for chunk in itertools.chain(chunks, [None]):
        pending = _pending(decoder)
        text = _decode(decoder, chunk or b"", offset - pending, name, chunk is None, encoding)
        if not started and text:
            started, text = True, text[1:] if text[0] == "\ufeff" else text
        offset += len(chunk or b"")
        try:
            yield text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise CorpusError(f"{name} decodes, as {encoding}, to a lone surrogate (U+{ord(text[e.start]):04X}), "
                              f"which is not a character") from None


def _pending(decoder) -> int:
    """Bytes of a character the incremental decoder holds from earlier input (0 if it does not say)."""
    state = decoder.getstate()
    return len(state[0]) if isinstance(state, tuple) and isinstance(state[0], bytes) else 0


def code_points(chunks: Iterable[bytes], name: str, start: int = 0) -> Iterator[np.ndarray]:
    """Decode UTF-8 byte chunks -> code point chunks (C,): uint8 for an all-ASCII chunk, else uint32.

    `start` is the absolute offset of the first byte (3 after a dropped BOM). Raises CorpusError naming the
    absolute offset and value of the first invalid byte.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = start  # absolute offset of the next chunk's first byte
    for chunk in chunks:
        pending = _pending(decoder)  # bytes of a character begun in the previous chunk
        if not pending and chunk.isascii():
            yield np.frombuffer(chunk, np.uint8)  # (C,)
        else:
            text = _decode(decoder, chunk, offset - pending, name)
            yield np.frombuffer(text.encode("utf-32-le"), "<u4")  # (C,) strict UTF-8 holds no surrogates
        offset += len(chunk)
    _decode(decoder, b"", offset - _pending(decoder), name, final=True, context=chunk if offset > start else b"")


def _decode(decoder, chunk: bytes, at: int, name: str, final: bool = False, encoding: str = "utf-8",
            context: bytes = b"") -> str:
    """decoder.decode, with an error as a CorpusError; `at` is where the decoder's input (pending + chunk) starts.
    `context`: the bytes that end with the decoder's input, for a guess at the encoding (the last chunk, when
    only the pending bytes of a final decode are left)."""
    try:
        return decoder.decode(chunk, final)
    except UnicodeError as e:
        if not isinstance(e, UnicodeDecodeError) and "does not start with BOM" in str(e):  # utf-16, utf-32
            raise CorpusError(f"{name} does not start with a byte-order mark, so {encoding} cannot tell its byte "
                              f"order: give --encoding {encoding}-le or {encoding}-be") from None
        if not isinstance(e, UnicodeDecodeError):
            raise CorpusError(f"{name} is not valid {encoding} (near byte {at}: {e})") from None
        bad = e.object[e.start:e.start + 1]
        if encoding != "utf-8":
            raise CorpusError(f"{name} is not valid {encoding} (byte {at + e.start}: {bad!r}); give its encoding "
                              f"with --encoding") from None
        raw, i = (context, max(0, len(context) - len(e.object) + e.start)) if context else (e.object, e.start)
        guess = guess_encoding(raw, i, at + e.start - i)
        hint = (f"it looks like {GUESSES[guess]}: pass --encoding {guess}, or convert it, e.g. with `iconv -f "
                f"{guess} -t UTF-8`" if guess else "convert it, e.g. with `iconv -t UTF-8`")
        raise CorpusError(f"{name} is not valid UTF-8 (byte {at + e.start}: {bad!r}); {hint}") from None


GUESSES = {"utf-16": "UTF-16", "utf-16-le": "UTF-16 (little-endian, no byte-order mark)",
           "utf-16-be": "UTF-16 (big-endian, no byte-order mark)", "utf-32": "UTF-32", "cp1252": "Windows-1252 (cp1252) or Latin-1 text",
           "latin-1": "Latin-1 text"}
_CONTROLS = bytes(set(range(32)) - set(b"\t\n\r\f") | {127})  # bytes that are rare in text in any 8-bit code
_CP1252_HOLES = b"\x81\x8d\x8f\x90\x9d"  # bytes cp1252 leaves undefined (Latin-1 control characters)


def guess_encoding(raw: bytes, at: int, start: int = 0) -> str | None:
    """What bytes that are not UTF-8 look like, from a window around raw[at], the first bad byte (raw[0] is byte
    `start` of the file): "utf-16" or "utf-32" (a byte-order mark at the start of the file), "utf-16-le" or
    "utf-16-be" (a NUL in every other byte, the odd ones or the even ones), "cp1252" or "latin-1" (text with few
    control bytes), or None (binary, or nothing it can tell)."""
    if start == 0 and raw.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if start == 0 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    lo = max(0, at - 4096)
    lo += (start + lo) % 2  # the window starts at an even byte of the file
    window = raw[lo:at + 4096]
    if len(window) >= 8:
        even, odd = window[0::2].count(0), window[1::2].count(0)  # NULs at even and odd offsets of the file
        half = len(window) / 2
        if max(even, odd) >= 0.3 * half and min(even, odd) <= 0.05 * half:
            return "utf-16-le" if odd > even else "utf-16-be"  # ASCII in UTF-16-LE: the letter, then a NUL
    if len(window) - len(window.translate(None, _CONTROLS)) > len(window) // 100:
        return None  # too many control bytes for text
    return "latin-1" if any(b in window for b in _CP1252_HOLES) else "cp1252"


@dataclass(frozen=True)
class Scan:
    """What one pass over a text finds: the SHA-256 of its UTF-8 bytes (BOM dropped), its vocabulary (V,) sorted
    uint32 code points, how often each occurs (V,) int64, and its length in characters."""

    sha256: str
    vocab: np.ndarray  # (V,) uint32
    counts: np.ndarray  # (V,) int64
    chars: int


Files = Iterable[tuple[str, Iterable[bytes]]]  # (name, byte chunks) of each file of a text, in order


def scan(chunks: Iterable[bytes], name: str) -> Scan:
    """Hash, count and measure a UTF-8 text given as byte chunks, in one pass. Raises CorpusError."""
    return scan_files([(name, chunks)])


def scan_files(files: Files, bom: bool = True) -> Scan:
    """scan() of the concatenated text of several UTF-8 files, each decoded on its own (its leading byte-order
    mark dropped unless `bom` is False, its errors named by its own offsets)."""
    sha, counts = hashlib.sha256(), np.zeros(0, np.int64)

    def hashed(body: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in body:
            sha.update(chunk)
            yield chunk

    for cps in _code_points_of(files, bom, hashed):
        c = byte_counts(cps) if cps.dtype == np.uint8 else np.bincount(cps)  # (max+1,) occurrences in this chunk
        if len(c) > len(counts):
            counts = np.concatenate([counts, np.zeros(len(c) - len(counts), np.int64)])
        counts[:len(c)] += c
    vocab = np.flatnonzero(counts).astype(np.uint32)  # (V,) sorted
    return Scan(sha.hexdigest(), vocab, counts[vocab], int(counts.sum()))


def _code_points_of(files: Files, bom: bool, through=lambda body: body) -> Iterator[np.ndarray]:
    """The code point chunks (C,) of every file in turn, each file's bytes passed `through` (hashing) after its
    byte-order mark is split off."""
    for name, chunks in files:
        skip, body = split_bom(chunks) if bom else (0, chunks)
        yield from code_points(through(body), name, start=skip)


def byte_counts(b: np.ndarray) -> np.ndarray:
    """How often each value 0..255 occurs in b (C,) uint8, as (256,) int64. Counted in pairs: bincount casts its
    input to intp, and a uint16 view has half the elements (BENCHMARKS.md, "Large corpora"). A short chunk (a small
    file of a folder) is counted directly: the pairs' 65,536 bins would cost more than its bytes."""
    if len(b) < 1 << 16:
        return np.bincount(b, minlength=256)
    pairs = np.bincount(b[:len(b) & ~1].view(np.uint16), minlength=1 << 16).reshape(256, 256)  # (256,256) byte pairs
    counts = pairs.sum(axis=0) + pairs.sum(axis=1)  # (256,) each byte value, as either half of a pair
    if len(b) & 1:
        counts[b[-1]] += 1
    return counts


def encode(chunks: Iterable[bytes], name: str, vocab: np.ndarray, dtype) -> Iterator[np.ndarray]:
    """The second pass: ids (C,) of `dtype` per chunk of the text whose vocabulary (V,) a `scan` found.

    Raises CorpusError if a character outside `vocab` turns up (the text changed since it was scanned)."""
    return encode_files([(name, chunks)], vocab, dtype)


def encode_files(files: Files, vocab: np.ndarray, dtype, bom: bool = True) -> Iterator[np.ndarray]:
    """encode() of the concatenated text of several files, read as scan_files() reads them."""
    lut = np.full(int(vocab[-1]) + 1 if len(vocab) else 1, len(vocab), np.uint32)  # code point -> id; V = absent
    lut[vocab] = np.arange(len(vocab), dtype=np.uint32)
    table = None  # for one-byte ids: byte -> id as a bytes.translate table, 255 (never an id) where absent
    if np.dtype(dtype) == np.uint8 and len(vocab) < 256:
        low = vocab[vocab < 256]  # (k,) the first k entries of the sorted vocabulary: ids 0..k-1
        table = np.full(256, 255, np.uint8)  # (256,)
        table[low] = np.arange(len(low), dtype=np.uint8)
        table = table.tobytes()
    for name, cps in _named(files, bom):
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


def _named(files: Files, bom: bool) -> Iterator[tuple[str, np.ndarray]]:
    for name, chunks in files:
        for cps in _code_points_of([(name, chunks)], bom):
            yield name, cps
