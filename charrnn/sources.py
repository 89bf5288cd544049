"""Which files a corpus is made of, and their bytes: folders walked in sorted path order, archives inflated.

A corpus is given as paths: files, folders, or "-" (stdin, alone). A folder is walked recursively; entries whose
name starts with "." are skipped at any depth, and so is anything that is neither a file nor a folder (a pipe, a
socket, a broken link); links are followed, except one that leads back into a folder being walked. Its files come
in sorted path order: ordered by their paths' components relative to the folder, each component compared byte by
byte (so `a/z.txt` comes before `a-b.txt` and `a.txt`: "a" sorts before both). `include` globs (fnmatch, case
sensitive) keep only the files of a folder whose *name* matches one of them; a file named on the command line is
always taken, whatever its name. Several arguments keep the order they were given in.

gzip, bzip2 and xz files are recognised by their magic bytes or by their suffix (.gz, .bz2, .xz) and inflated
while they are read (the standard library's gzip, bz2 and lzma), a chunk at a time, so a small archive that
inflates to gigabytes costs no more memory than any other file. Simplification: the file list is held in memory
(a few hundred bytes a file).
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import io
import lzma
import os
import shlex
import stat
import zlib
from typing import BinaryIO, Iterator, NamedTuple, Sequence

from charrnn.stream import CorpusError

MAGIC = {"gzip": (b"\x1f\x8b",), "xz": (b"\xfd7zXZ\x00",),
         "bzip2": tuple(b"BZh" + bytes([d]) + m for d in b"123456789" for m in (b"1AY&SY", b"\x17rE8P\x90"))}
SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz"}
OPENERS = {"gzip": lambda f: gzip.GzipFile(fileobj=f, mode="rb"), "bzip2": bz2.BZ2File, "xz": lzma.LZMAFile}
HEAD = 10  # bytes that tell every format in MAGIC apart


class SourceError(ValueError):
    """The paths do not name a corpus (a folder with no files, stdin among other paths); one line."""


class Source(NamedTuple):
    path: str  # as given, or as found under a folder given; "-" for stdin
    st: os.stat_result | None  # None for stdin


def collect(paths: Sequence[str | os.PathLike], include: Sequence[str] = ()) -> list[Source]:
    """The files the paths name, in corpus order. Raises SourceError, or OSError (FileNotFoundError, ...) for a
    path that cannot be read."""
    paths = [os.fspath(p) for p in paths]
    if "-" in paths and len(paths) > 1:
        raise SourceError("- (stdin) must be the only PATH; give the other text as files, or cat them into the pipe")
    found = []
    for path in paths:
        if path == "-":
            found.append(Source("-", None))
            continue
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            found.append(Source(path, st))
            continue
        files = list(_walk(path, st, include))
        if not files:
            matching = f" matching --include {' or '.join(shlex.quote(g) for g in include)}" if include else ""
            raise SourceError(f"the folder {path} holds no files{matching} (names starting with . are skipped)")
        found.extend(files)
    return found


def _walk(top: str, top_st: os.stat_result, include: Sequence[str]) -> Iterator[Source]:
    """The files under `top`, depth first, each folder's entries sorted by name (bytes); see the module docstring."""
    stack, ancestors = [iter(_entries(top))], [(top_st.st_dev, top_st.st_ino)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            ancestors.pop()
            continue
        try:
            st = entry.stat()  # follows links
        except FileNotFoundError:  # a broken link
            continue
        if stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) not in ancestors:  # else a link back up: a loop
                stack.append(iter(_entries(entry.path)))
                ancestors.append((st.st_dev, st.st_ino))
        elif stat.S_ISREG(st.st_mode) and (not include or any(fnmatch.fnmatchcase(entry.name, g) for g in include)):
            yield Source(entry.path, st)


def _entries(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: os.fsencode(e.name))


def compression(head: bytes, path: str = "") -> str | None:
    """'gzip', 'bzip2' or 'xz' when a file's first bytes (or else its suffix) say so, None for plain bytes."""
    for kind, magics in MAGIC.items():
        if head.startswith(magics):
            return kind
    return SUFFIXES.get(os.path.splitext(path)[1].lower())


def compression_of(source: Source) -> str | None:
    """compression() of a regular file, reading its first bytes."""
    with open(source.path, "rb") as f:
        return compression(f.read(HEAD), source.path)


def chunks(source: Source, size: int, stream: BinaryIO | None = None,
           name: str = "stdin") -> Iterator[tuple[bytes, int]]:
    """(bytes, how far into the source itself) for each chunk of a source (for "-", of `stream`, called `name`),
    inflated if it is an archive, `size` bytes at a time. A damaged archive raises CorpusError naming the file; a
    failed read raises OSError."""
    name = name if source.path == "-" else source.path
    raw = stream if source.path == "-" else open(source.path, "rb")
    try:
        counted = _Counted(raw)
        head = counted.read_head(HEAD)
        kind = compression(head, "" if source.path == "-" else source.path)
        if kind is None:
            while chunk := counted.read(size):  # (the head first)
                yield chunk, counted.done
            return
        inflated = OPENERS[kind](counted)  # its read(size) fills `size` bytes, inflating as it goes
        try:
            while chunk := inflated.read(size):
                yield chunk, counted.done
        except (EOFError, zlib.error, lzma.LZMAError, OSError) as e:
            if isinstance(e, OSError) and e.errno is not None:
                raise  # a failed read, not a damaged archive
            why = "it ends too soon" if isinstance(e, EOFError) else str(e) or type(e).__name__
            raise CorpusError(f"{name} is not a valid {kind} file ({why}); it may be truncated or damaged") from None
    finally:
        if raw is not stream:
            raw.close()


class _Counted(io.RawIOBase):
    """A binary file read through, its first bytes read ahead (to tell its format) and given back first; `done`
    counts the bytes read from the file itself (the progress of a compressed file)."""

    def __init__(self, f: BinaryIO):
        self.f, self.head, self.done = f, b"", 0

    def read_head(self, n: int) -> bytes:
        while len(self.head) < n and (more := self.f.read(n - len(self.head))):
            self.head += more
        self.done = len(self.head)
        return self.head

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        n = self.f.readinto(b)
        self.done += n or 0
        return n

    def read(self, size: int = -1) -> bytes:
        if self.head:
            n = len(self.head) if size is None or size < 0 else size
            out, self.head = self.head[:n], self.head[n:]
            return out
        data = self.f.read(size)
        self.done += len(data)
        return data
