"""The on-disk corpus cache: a prepared corpus's ids, which training memory-maps, keyed by the corpus's SHA-256.

Shapes: L corpus length in characters, V vocabulary.
Layout under the cache directory (`--cache-dir`, else $CHARRNN_CACHE_DIR, else $XDG_CACHE_HOME/charrnn, else
~/.cache/charrnn):

    corpora/<sha256>.npy    the ids (L,) in the smallest unsigned dtype, a plain .npy
    corpora/<sha256>.json   format, length, dtype, vocabulary (V,) and counts (V,), CRC-32 of the ids
    files/<key>.json        path, device, inode, size, mtime and ctime of each file of a corpus (one file, or a
                            folder's files in order) and the encoding it was read in, last seen with that SHA-256
    .tmp-<pid>-*            files being written (removed once their process is gone)

Every file is written to a temporary name, fsynced and renamed, the .json last: a killed preparation leaves no
entry that looks valid. An entry is trusted only after its header, size and the CRC-32 of every id check out
(a cheap full read, see BENCHMARKS.md "Large corpora"); anything else is rebuilt. Deleting the directory is safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import zlib
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np

FORMAT = 1
ENV = "CHARRNN_CACHE_DIR"
CHECK_CHUNK = 8 << 20  # bytes read at a time when checking an entry
Progress = Callable[[str, int, "int | None"], None]  # (phase, bytes done, bytes in all or None)


def default_dir() -> Path:
    """$CHARRNN_CACHE_DIR, else $XDG_CACHE_HOME/charrnn, else ~/.cache/charrnn."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "charrnn"


class Entry(NamedTuple):
    ids: np.ndarray  # (L,) read-only memory map
    vocab: np.ndarray  # (V,) uint32
    counts: np.ndarray  # (V,) int64


def temp_path(directory: Path, suffix: str = "") -> Path:
    """A fresh temporary name in `directory` (created) that `discard_stale` recognises by the process id."""
    directory.mkdir(parents=True, exist_ok=True)
    discard_stale(directory)
    return directory / f".tmp-{os.getpid()}-{secrets.token_hex(6)}{suffix}"


def discard_stale(directory: Path) -> None:
    """Remove temporary files left by processes that no longer exist (a killed preparation)."""
    for p in directory.glob(".tmp-*"):
        try:
            pid = int(p.name.split("-")[1])
            if pid != os.getpid():
                os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            p.unlink(missing_ok=True)
        except PermissionError:  # alive, someone else's
            pass


def _write_atomically(path: Path, write: Callable) -> None:
    """Call write(file) on a temporary file beside `path`, fsync, rename it to `path`; no trace on failure."""
    tmp = temp_path(path.parent, path.suffix)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _paths(directory: Path, sha256: str) -> tuple[Path, Path]:
    base = directory / "corpora" / sha256
    return base.with_suffix(".npy"), base.with_suffix(".json")


def store(directory: Path, sha256: str, vocab: np.ndarray, counts: np.ndarray, dtype,
          id_chunks: Iterable[np.ndarray]) -> Entry:
    """Write the ids (L = counts.sum()) given as chunks into a new entry; returns it memory-mapped.

    Raises whatever the chunks raise (then nothing is left behind), or ValueError if they do not add up to L."""
    npy, meta = _paths(directory, sha256)
    length, dtype, crc = int(counts.sum()), np.dtype(dtype), 0

    def write_ids(f) -> None:
        nonlocal crc
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
        np.lib.format.write_array_header_1_0(f, header)
        n = 0
        for ids in id_chunks:
            crc = zlib.crc32(ids, crc)
            f.write(ids)
            n += len(ids)
        if n != length:
            raise ValueError(f"{n} ids written for a corpus of {length} characters")

    _write_atomically(npy, write_ids)
    record = {"format": FORMAT, "sha256": sha256, "chars": length, "dtype": dtype.name, "crc32": crc,
              "vocab": vocab.tolist(), "counts": counts.tolist()}
    _write_atomically(meta, lambda f: f.write(json.dumps(record).encode()))
    return Entry(_map(npy, dtype, length), vocab.astype(np.uint32), counts.astype(np.int64))


def load(directory: Path, sha256: str, progress: Progress | None = None) -> Entry | None:
    """The entry for this SHA-256 if it exists and every check passes (header, size, CRC-32 of the ids), else None."""
    npy, meta = _paths(directory, sha256)
    try:
        record = json.loads(meta.read_bytes())
        vocab, counts, dtype, length = _checked_record(record, sha256)
        with open(npy, "rb") as f:
            if np.lib.format.read_magic(f) != (1, 0):
                return None
            shape, fortran, stored = np.lib.format.read_array_header_1_0(f)
            offset = f.tell()
            if (shape, fortran, stored) != ((length,), False, dtype):
                return None
            if os.fstat(f.fileno()).st_size != offset + length * dtype.itemsize:
                return None
            if _crc32(f, length * dtype.itemsize, progress) != record["crc32"]:
                return None
        return Entry(_map(npy, dtype, length), vocab, counts)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def discard(directory: Path, sha256: str) -> None:
    """Remove the entry for this SHA-256, if any (its .json first, so no half of it looks valid)."""
    for p in reversed(_paths(directory, sha256)):
        p.unlink(missing_ok=True)


def _checked_record(record: dict, sha256: str):
    """(vocab, counts, dtype, length) from an entry's .json; ValueError if anything is off."""
    vocab = np.asarray(record["vocab"], dtype=np.int64)
    counts = np.asarray(record["counts"], dtype=np.int64)
    length, dtype = record["chars"], np.dtype(record["dtype"])
    ok = (record["format"] == FORMAT and record["sha256"] == sha256 and isinstance(record["crc32"], int)
          and vocab.ndim == 1 and counts.shape == vocab.shape and type(length) is int
          and np.all(np.diff(vocab) > 0) and (not len(vocab) or (vocab[0] >= 0 and vocab[-1] <= 0x10FFFF))
          and np.all(counts > 0) and int(counts.sum()) == length
          and dtype == np.dtype(np.uint8 if len(vocab) <= 2**8 else np.uint16 if len(vocab) <= 2**16 else np.uint32))
    if not ok:
        raise ValueError("not a valid cache record")
    return vocab.astype(np.uint32), counts, dtype, length


def _crc32(f, size: int, progress: Progress | None) -> int:
    """CRC-32 of the next `size` bytes of f, read through one reused buffer (no mapping, bounded memory)."""
    buf, crc, done = bytearray(min(CHECK_CHUNK, max(size, 1))), 0, 0
    view = memoryview(buf)
    while done < size:
        n = f.readinto(view[:min(len(buf), size - done)])
        if not n:
            raise ValueError("short file")
        crc, done = zlib.crc32(view[:n], crc), done + n
        if progress:
            progress("checking", done, size)
    return crc


def _map(npy: Path, dtype: np.dtype, length: int) -> np.ndarray:
    """The ids (L,) of an entry, memory-mapped read-only (an empty corpus cannot be mapped)."""
    if length == 0:
        return np.zeros(0, dtype)
    return np.load(npy, mmap_mode="r")


def _file_record(directory: Path, paths: list[str], encoding: str) -> Path:
    key = hashlib.sha256(b"\0".join([os.fsencode(p) for p in paths] + [encoding.encode()])).hexdigest()
    return directory / "files" / f"{key}.json"


def _identity(path, st: os.stat_result) -> dict:
    return {"path": os.path.abspath(path), "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _record(files: Iterable[tuple[Path, os.stat_result]], encoding: str) -> dict:
    return {"files": [_identity(path, st) for path, st in files], "encoding": encoding}


def known_sha256(directory: Path, files: list[tuple[Path, os.stat_result]], encoding: str = "utf-8") -> str | None:
    """The SHA-256 recorded for these files (in this order, read in this encoding) when they were last prepared,
    if none has changed since (same device, inode, size, mtime and ctime), else None."""
    want = _record(files, encoding)
    try:
        record = json.loads(_file_record(directory, [f["path"] for f in want["files"]], encoding).read_bytes())
        sha = record.pop("sha256")
        hex_digest = isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)
        if hex_digest and record == want:  # (a name, never a path, goes into the entry's path)
            return sha
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def remember(directory: Path, files: list[tuple[Path, os.stat_result]], encoding: str, sha256: str) -> None:
    """Record that the files with these stats, read in this encoding, make the text with this SHA-256 (best
    effort: the cache is only a cache)."""
    record = _record(files, encoding) | {"sha256": sha256}
    path = _file_record(directory, [f["path"] for f in record["files"]], encoding)
    try:
        _write_atomically(path, lambda f: f.write(json.dumps(record).encode()))
    except OSError:
        pass
