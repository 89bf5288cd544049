"""A prepared corpus: its ids, vocabulary and content hash, the one thing training and evaluation read text through.

Shapes: L corpus length in characters, V vocabulary.
`Corpus.from_text` builds one from a string in memory (tests, short texts). `prepare` streams files, folders
(`sources`) or stdin in chunks, two passes (hash + vocabulary, then ids), never holding the text whole: a small
corpus ends up in memory, a large one in the on-disk cache (`corpus_cache`), memory-mapped, and reused the next
time the same content comes. Archives and other encodings are decoded once into UTF-8 (spooled when long), so
the same text compressed or not, in UTF-8 or not, is the same corpus with the same hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Sequence

import numpy as np

from charrnn import corpus_cache, sources
from charrnn.data import Vocab, id_dtype
from charrnn.sources import Source, SourceError, collect, compression_of
from charrnn.stream import CHUNK, CorpusError, Files, as_utf8, encode_files, read_chunks, scan_files, text_codec

IN_MEMORY_BELOW = 8 << 20  # bytes: a smaller corpus is prepared in memory and leaves nothing on disk
Progress = Callable[[str, int, "int | None"], None]  # (phase, bytes done, bytes in all or None when unknown)

__all__ = ["Corpus", "CorpusError", "SourceError", "prepare", "text_sha256", "IN_MEMORY_BELOW"]


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
    files: int = 1  # how many files the text was read from

    @classmethod
    def from_text(cls, text: str) -> "Corpus":
        vocab = Vocab.from_text(text)
        ids = vocab.encode(text)
        return cls(ids, vocab.codes, text_sha256(text), np.bincount(ids, minlength=len(vocab)).astype(np.int64))

    def __len__(self) -> int:
        return len(self.ids)


def prepare(source: str | os.PathLike | BinaryIO | Sequence[str | os.PathLike],
            cache_dir: str | os.PathLike | None = None, progress: Progress | None = None, chunk_size: int = CHUNK,
            in_memory_below: int | None = None, name: str | None = None, encoding: str | None = None, include: Sequence[str] = ()) -> Corpus:
    """The Corpus of a text file, a folder, stdin ("-"), an open binary stream, or a list of paths, read
    `chunk_size` bytes at a time.

    The text is the concatenation of the files' texts in order (sources.collect: folders walked in sorted path
    order, `include` globs), each file decoded on its own in `encoding` (any text codec Python knows; default
    strict UTF-8), its leading byte-order mark dropped; gzip, bzip2 and xz files are inflated as they are read.
    Below `in_memory_below` bytes of UTF-8 text (default IN_MEMORY_BELOW) the ids stay in memory; otherwise
    they are written to (or found in) the cache under `cache_dir` (default `corpus_cache.default_dir()`) and
    memory-mapped. Plain UTF-8 files are read twice (hash and vocabulary, then ids); anything else (stdin, a pipe,
    an archive, another encoding) is decoded once into UTF-8, held in memory while short, else spooled to a
    temporary file in the cache. `progress(phase, done, total)` hears of every chunk. Raises CorpusError for bad
    content (naming the file and the byte offset of what does not decode), SourceError for paths that hold no
    text, LookupError for an unknown encoding, OSError if reading or the cache fails.
    """
    if in_memory_below is None:
        in_memory_below = IN_MEMORY_BELOW
    encoding = text_codec(encoding)
    directory = Path(cache_dir) if cache_dir is not None else corpus_cache.default_dir()
    stream = sys.stdin.buffer if source == "-" else source if hasattr(source, "read") else None
    if stream is not None:
        files = [Source("-", None)]
        name = name or ("stdin" if source == "-" else "the input")
    else:
        paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
        files = collect(paths, include)
        name = name or (os.fspath(paths[0]) if len(paths) == 1 else f"{len(files)} files")
    plain = all(f.st is not None and stat.S_ISREG(f.st.st_mode) for f in files)  # regular files: re-readable
    identities = [(f.path, f.st) for f in files]
    if plain:
        sha = corpus_cache.known_sha256(directory, identities, encoding)
        entry = corpus_cache.load(directory, sha, progress) if sha else None
        if entry is not None:
            return Corpus(entry.ids, entry.vocab, sha, entry.counts, len(files))
    if plain and encoding == "utf-8" and not any(compression_of(f) for f in files):
        return _prepare_files(files, name, directory, progress, chunk_size, in_memory_below)
    text = _decoded(files, stream, name, encoding, chunk_size, progress if plain else None)
    corpus = _prepare_stream(text, name, directory, None if plain else progress, chunk_size, in_memory_below)
    corpus = dataclasses.replace(corpus, files=len(files))
    on_disk = isinstance(corpus.ids, np.memmap)
    if plain and any(_changed(f.st, os.stat(f.path)) for f in files):
        if on_disk:
            corpus_cache.discard(directory, corpus.sha256)
        raise CorpusError(f"{name} changed while it was being read; run the command again")
    if plain and on_disk:
        corpus_cache.remember(directory, identities, encoding, corpus.sha256)
    return corpus


def _prepare_files(files: list[Source], name: str, directory: Path, progress: Progress | None, chunk_size: int,
                   in_memory_below: int) -> Corpus:
    """Plain UTF-8 files, read twice: held in memory while short, else their ids encoded into the cache."""
    if sum(f.st.st_size for f in files) < in_memory_below:
        held = [(f.path, Path(f.path).read_bytes()) for f in files]
        return _in_memory(lambda: [(path, _slices(data, chunk_size)) for path, data in held], len(files))
    total = sum(f.st.st_size for f in files)
    sha, entry = _cached(lambda phase: _files_chunks(files, chunk_size, phase, progress, total), directory, progress)
    changed = [f.path for f in files if _changed(f.st, os.stat(f.path))]
    if changed:  # what was hashed may not be what was encoded: keep neither
        corpus_cache.discard(directory, sha)
        raise CorpusError(f"{changed[0]} changed while it was being read; run the command again")
    corpus_cache.remember(directory, [(f.path, f.st) for f in files], "utf-8", sha)
    return Corpus(entry.ids, entry.vocab, sha, entry.counts, len(files))


def _cached(files: Callable[[str], Files], directory: Path, progress: Progress | None, bom: bool = True):
    """(sha256, cache Entry) of a text that can be read twice: scanned, then found in the cache or encoded into it."""
    s = scan_files(files("reading"), bom)
    entry = corpus_cache.load(directory, s.sha256, progress)
    if entry is None:
        ids = encode_files(files("encoding"), s.vocab, id_dtype(len(s.vocab)), bom)
        entry = corpus_cache.store(directory, s.sha256, s.vocab, s.counts, id_dtype(len(s.vocab)), ids)
    return s.sha256, entry


def _in_memory(files: Callable[[], Files], n_files: int = 1, bom: bool = True) -> Corpus:
    """The Corpus of a small text that can be read twice, its ids (L,) in memory."""
    s = scan_files(files(), bom)
    ids = np.empty(s.chars, id_dtype(len(s.vocab)))  # (L,)
    at = 0
    for part in encode_files(files(), s.vocab, ids.dtype, bom):
        ids[at:at + len(part)] = part
        at += len(part)
    return Corpus(ids, s.vocab, s.sha256, s.counts, n_files)


def _decoded(files: list[Source], stream: BinaryIO | None, name: str, encoding: str, chunk_size: int,
             progress: Progress | None) -> Iterator[bytes]:
    """The UTF-8 text of every file in turn (inflated, decoded, each one's byte-order mark dropped); progress
    counts the bytes read from the files themselves (for an archive, the compressed bytes)."""
    total = sum(f.st.st_size for f in files) if progress else None
    base = 0
    for f in files:
        here = 0

        def read(f=f) -> Iterator[bytes]:
            nonlocal here
            for chunk, here in sources.chunks(f, chunk_size, stream, name):
                yield chunk
                if progress:
                    progress("decoding", base + here, total)

        yield from as_utf8(read(), name if f.path == "-" else f.path, encoding)
        base += here


def _prepare_stream(chunks: Iterable[bytes], name: str, directory: Path, progress: Progress | None, chunk_size: int,
                    in_memory_below: int) -> Corpus:
    """A UTF-8 text read once: kept in memory while short, spooled to a temporary file in the cache once long.
    Its byte-order marks were dealt with already: a leading U+FEFF here is a character."""
    held, size, spool, out = [], 0, None, None
    try:
        for chunk in chunks:
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
            return _in_memory(lambda: [(name, _slices(data, chunk_size))], bom=False)
        out.close()
        sha, entry = _cached(lambda phase: [(name, _file_chunks(spool, chunk_size, phase, progress))], directory,
                             progress, bom=False)
        return Corpus(entry.ids, entry.vocab, sha, entry.counts)
    finally:
        if out is not None:
            out.close()
            spool.unlink(missing_ok=True)


def _slices(data: bytes, size: int) -> Iterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i:i + size])


def _file_chunks(path: Path, size: int, phase: str, progress: Progress | None, base: int = 0,
                 total: int | None = None) -> Iterator[bytes]:
    total, done = total if total is not None else os.path.getsize(path), base
    with open(path, "rb") as f:
        for chunk in read_chunks(f, size):
            done += len(chunk)
            yield chunk
            if progress:
                progress(phase, done, total)


def _files_chunks(files: list[Source], size: int, phase: str, progress: Progress | None, total: int) -> Files:
    """(path, chunks) of each file, the progress counting through all of them (`total` bytes)."""
    bases = itertools.accumulate([f.st.st_size for f in files], initial=0)
    return [(f.path, _file_chunks(Path(f.path), size, phase, progress, base, total)) for f, base in zip(files, bases)]


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
