"""A prepared corpus: its ids, vocabulary and content hash, the one thing training and evaluation read text through.

Shapes: L corpus length in characters, V vocabulary.
`Corpus.from_text` builds one from a string in memory (tests, short texts). `prepare` streams a file or stdin in
chunks, two passes (hash + vocabulary, then ids), never holding the text whole: a small corpus ends up in memory,
a large one in the on-disk cache (`corpus_cache`), memory-mapped, and reused the next time the same content comes.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from charrnn import corpus_cache
from charrnn.data import Vocab, id_dtype
from charrnn.stream import CHUNK, CorpusError, encode, read_chunks, scan

IN_MEMORY_BELOW = 8 << 20  # bytes: a smaller corpus is prepared in memory and leaves nothing on disk
Progress = Callable[[str, int, "int | None"], None]  # (phase, bytes done, bytes in all or None when unknown)

__all__ = ["Corpus", "CorpusError", "prepare", "text_sha256", "IN_MEMORY_BELOW"]


def text_sha256(text: str) -> str:
    """The SHA-256 of a text's UTF-8 bytes (the identity a checkpoint stores as `corpus_sha256`)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Corpus:
    """A corpus ready to train on: ids (L,) in the smallest unsigned dtype (possibly a read-only memory map),
    the vocabulary (V,) uint32 code points it was encoded with, the SHA-256 of its UTF-8 text, and how often
    each vocabulary entry occurs (V,) int64."""

    ids: np.ndarray  # (L,) uint8/16/32
    vocab: np.ndarray  # (V,) uint32, sorted, unique
    sha256: str
    counts: np.ndarray | None = None  # (V,) int64

    @classmethod
    def from_text(cls, text: str) -> "Corpus":
        vocab = Vocab.from_text(text)
        ids = vocab.encode(text)
        return cls(ids, vocab.codes, text_sha256(text), np.bincount(ids, minlength=len(vocab)).astype(np.int64))

    def __len__(self) -> int:
        return len(self.ids)


def prepare(source: str | os.PathLike | BinaryIO, cache_dir: str | os.PathLike | None = None,
            progress: Progress | None = None, chunk_size: int = CHUNK, in_memory_below: int | None = None,
            name: str | None = None) -> Corpus:
    """The Corpus of a UTF-8 file, of stdin ("-"), or of an open binary stream, read `chunk_size` bytes at a time.

    A leading byte-order mark is dropped. Below `in_memory_below` bytes (default IN_MEMORY_BELOW) the ids stay in
    memory; otherwise they are written to (or found in) the cache under `cache_dir` (default
    `corpus_cache.default_dir()`) and memory-mapped; a stream that long is spooled to a temporary file there.
    `progress(phase, done, total)` hears of every chunk. Raises CorpusError for bad content (with the byte
    offset of invalid UTF-8), OSError if reading or the cache fails.
    """
    if in_memory_below is None:
        in_memory_below = IN_MEMORY_BELOW
    if source == "-" or hasattr(source, "read"):
        stream = sys.stdin.buffer if source == "-" else source
        return _prepare_stream(stream, name or ("stdin" if source == "-" else "the input"), cache_dir, progress,
                               chunk_size, in_memory_below)
    path = Path(source)
    name = name or str(source)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):  # a pipe (`<(cat x)`) or device: read once, like stdin
        with open(path, "rb") as f:
            return _prepare_stream(f, name, cache_dir, progress, chunk_size, in_memory_below)
    if st.st_size < in_memory_below:
        data = path.read_bytes()
        return _in_memory(lambda: _slices(data, chunk_size), name)
    directory = Path(cache_dir) if cache_dir is not None else corpus_cache.default_dir()
    sha = corpus_cache.known_sha256(directory, path, st)
    entry = corpus_cache.load(directory, sha, progress) if sha else None
    if entry is None:
        sha, entry = _cached(lambda phase: _file_chunks(path, chunk_size, phase, progress), name, directory, progress)
        if _changed(st, os.stat(path)):  # what was hashed may not be what was encoded: keep neither
            corpus_cache.discard(directory, sha)
            raise CorpusError(f"{name} changed while it was being read; run the command again")
        corpus_cache.remember(directory, path, st, sha)
    return Corpus(entry.ids, entry.vocab, sha, entry.counts)


def _cached(chunks: Callable[[str], Iterator[bytes]], name: str, directory: Path, progress: Progress | None):
    """(sha256, cache Entry) of a text that can be read twice: scanned, then found in the cache or encoded into it."""
    s = scan(chunks("reading"), name)
    entry = corpus_cache.load(directory, s.sha256, progress)
    if entry is None:
        ids = encode(chunks("encoding"), name, s.vocab, id_dtype(len(s.vocab)))
        entry = corpus_cache.store(directory, s.sha256, s.vocab, s.counts, id_dtype(len(s.vocab)), ids)
    return s.sha256, entry


def _in_memory(chunks: Callable[[], Iterator[bytes]], name: str) -> Corpus:
    """The Corpus of a small text that can be read twice, its ids (L,) in memory."""
    s = scan(chunks(), name)
    ids = np.empty(s.chars, id_dtype(len(s.vocab)))  # (L,)
    at = 0
    for part in encode(chunks(), name, s.vocab, ids.dtype):
        ids[at:at + len(part)] = part
        at += len(part)
    return Corpus(ids, s.vocab, s.sha256, s.counts)


def _prepare_stream(f: BinaryIO, name: str, cache_dir, progress: Progress | None, chunk_size: int,
                    in_memory_below: int) -> Corpus:
    """A stream is read once: kept in memory while short, spooled to a temporary file in the cache once long."""
    held, size, spool, out = [], 0, None, None
    directory = Path(cache_dir) if cache_dir is not None else corpus_cache.default_dir()
    try:
        for chunk in read_chunks(f, chunk_size):
            size += len(chunk)
            if spool is None and size >= in_memory_below:
                spool = corpus_cache.temp_path(directory / "corpora", ".spool")
                out = open(spool, "wb")
                out.writelines(held)
                held = []
            if out is not None:
                out.write(chunk)
            else:
                held.append(chunk)
            if progress:
                progress("spooling", size, None)
        if out is None:
            data = b"".join(held)
            del held
            return _in_memory(lambda: _slices(data, chunk_size), name)
        out.close()
        sha, entry = _cached(lambda phase: _file_chunks(spool, chunk_size, phase, progress), name, directory,
                             progress)
        return Corpus(entry.ids, entry.vocab, sha, entry.counts)
    finally:
        if out is not None:
            out.close()
            spool.unlink(missing_ok=True)


def _slices(data: bytes, size: int) -> Iterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i:i + size])


def _file_chunks(path: Path, size: int, phase: str, progress: Progress | None) -> Iterator[bytes]:
    total, done = os.path.getsize(path), 0
    with open(path, "rb") as f:
        for chunk in read_chunks(f, size):
            done += len(chunk)
            yield chunk
            if progress:
                progress(phase, done, total)


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return ((before.st_size, before.st_mtime_ns, before.st_ino) != (after.st_size, after.st_mtime_ns, after.st_ino))


def to_vocab(corpus: Corpus, codes: np.ndarray) -> tuple[np.ndarray, list[str], int]:
    """How the corpus's ids map to another vocabulary `codes` (V',) (a model's): (lut (V,) int64 with each id's
    id in `codes` or -1 where `codes` lacks the character, the characters it lacks, how often they occur)."""
    codes = np.asarray(codes, dtype=np.uint32)
    pos = np.minimum(np.searchsorted(codes, corpus.vocab), max(len(codes) - 1, 0))  # (V,)
    found = (codes[pos] == corpus.vocab) if len(codes) else np.zeros(len(corpus.vocab), bool)
    lut = np.where(found, pos, -1).astype(np.int64)  # (V,)
    counts = corpus.counts if corpus.counts is not None else np.bincount(corpus.ids, minlength=len(lut))
    missing = [chr(c) for c in corpus.vocab[~found].tolist()]
    return lut, missing, int(counts[~found].sum())


def without_unknown(corpus: Corpus, lut: np.ndarray, cache_dir=None, chunk: int = CHUNK) -> np.ndarray:
    """The corpus's ids in the vocabulary `lut` maps to, characters it lacks (-1) left out: (L',) in memory
    for an in-memory corpus, else written chunk by chunk to a nameless temporary file and memory-mapped."""
    dtype = id_dtype(int(lut.max()) + 1)
    if not isinstance(corpus.ids, np.memmap):
        mapped = lut[corpus.ids]  # (L,)
        return mapped[mapped >= 0].astype(dtype)
    directory = Path(cache_dir) if cache_dir is not None else corpus_cache.default_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory) as f:  # gone from the directory at once, from the disk when unmapped
        n = 0
        for at in range(0, len(corpus.ids), chunk):
            mapped = lut[corpus.ids[at:at + chunk]]  # (≤chunk,)
            kept = mapped[mapped >= 0].astype(dtype)
            f.write(kept.tobytes())
            n += len(kept)
        f.flush()
        return np.memmap(f, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
