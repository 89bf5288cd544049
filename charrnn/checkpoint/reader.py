"""Reading a checkpoint file as hostile input: bounded work for any bytes.

Only a regular file is opened (a FIFO or a device would block or never end). The zip directory is read first and
every member is held to a size before any of it is inflated: the members together may not inflate to more than
INFLATE_RATIO times the file plus INFLATE_SLACK (charrnn writes them uncompressed, and weights do not compress
that much), and each member's declared size must fit what its name may hold (the caller says how much). A
member's .npy header is read and its dtype and shape checked before its data, so a member that claims 10 GB is
refused after reading a few hundred bytes. JSON text may nest only JSON_MAX_DEPTH deep.
Simplification chosen on purpose: only the zip methods numpy writes (stored, deflated) are read.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile

import numpy as np

from charrnn.checkpoint.record import BAD_FILE_HINT, TRAIN_HINT, CheckpointError

NPY_HEADER_MAX = 4096  # bytes of .npy magic + header accepted (np.save writes 128)
MAX_MEMBERS = 4096  # a model within the maxima has fewer than 2,000 arrays, its training state included
INFLATE_RATIO = 4  # "a few times the file": charrnn writes members uncompressed (ratio ~1)
INFLATE_SLACK = 2**22
JSON_MAX_DEPTH = 32


def short(text: str, limit: int = 160) -> str:
    """`text` on one line, cut at a word boundary (never mid-word) when longer than `limit`."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else text[:limit]) + " ..."


def unreadable(path: str, exc: BaseException) -> CheckpointError:
    detail = short(f"{type(exc).__name__}: {exc}")
    return CheckpointError(f"{path} is not a readable .npz checkpoint (corrupt or truncated? {detail}); "
                           f"{BAD_FILE_HINT}")


def invalid(path: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid checkpoint: {problem}; {BAD_FILE_HINT}")


def open_regular(path: str):
    """The file at `path` opened for reading, only if it is a regular file (checked before and after opening)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} not found; {TRAIN_HINT} or pass -c PATH") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}; check the path") from exc
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{path} is a directory, not a checkpoint; pass the .npz file with -c PATH")

    def not_regular(mode: int) -> CheckpointError:
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or
                stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        return CheckpointError(f"{path} is {kind}, not a checkpoint file; pass a .npz file with -c PATH")

    if not stat.S_ISREG(st.st_mode):
        raise not_regular(st.st_mode)
    try:  # O_NONBLOCK: if it became a FIFO since the stat, opening it must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}; check its permissions") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_regular(mode)
    return os.fdopen(fd, "rb")


def directory(path: str, f) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    """The zip archive in `f` and its members by key (name without ".npy"), after checking their number, names,
    compression and declared sizes against the file's size."""
    size = os.fstat(f.fileno()).st_size
    head = f.read(2)
    if head != b"PK":  # every .npz is a zip archive, and every zip archive starts with "PK"
        what = "it is empty" if not head else "it is not a zip archive"
        raise CheckpointError(f"{path} is not a readable .npz checkpoint ({what}); {BAD_FILE_HINT}")
    f.seek(0)
    try:
        end = zipfile._EndRecData(f)  # the end record, to count members before the directory is parsed
        if end and end[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:
            raise invalid(path, f"the archive lists {end[zipfile._ECD_ENTRIES_TOTAL]:,} members, more than "
                                f"{MAX_MEMBERS:,}")
        archive = zipfile.ZipFile(f)
        infos = archive.infolist()
    except CheckpointError:
        raise
    except Exception as exc:
        raise unreadable(path, exc) from exc
    if len(infos) > MAX_MEMBERS:
        raise invalid(path, f"the archive holds {len(infos):,} members, more than {MAX_MEMBERS:,}")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise invalid(path, f"member {info.filename[:80]!r} is not a .npy array")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise invalid(path, f"member {info.filename[:80]!r} uses zip method {info.compress_type}, not one numpy "
                                f"writes")
        key = info.filename[: -len(".npy")]
        if key in members:
            raise invalid(path, f"member {key[:80]!r} appears twice")
        members[key] = info
    declared = sum(info.file_size for info in infos)
    if declared > INFLATE_RATIO * size + INFLATE_SLACK:
        raise invalid(path, f"its members inflate to {declared:,} bytes, more than a {size:,}-byte checkpoint "
                            f"can hold (a zip bomb?)")
    return archive, members


def read_array(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int,
               kinds: str = "biufSU") -> np.ndarray:
    """The array in one member, read only if it declares at most `max_bytes` of data, has a plain dtype of one of
    `kinds` and a header that says so; its data is read only after the header is checked."""
    key = info.filename[: -len(".npy")]
    if info.file_size > max_bytes + NPY_HEADER_MAX:
        raise invalid(path, f"member {key!r} declares {info.file_size:,} bytes, more than its name allows "
                            f"({max_bytes + NPY_HEADER_MAX:,})")
    try:
        with archive.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in reader:
                raise ValueError(f".npy format {version} is not one numpy's np.save writes here")
            shape, fortran, dtype = reader[version](fp, max_header_size=NPY_HEADER_MAX)
            if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None or dtype.kind not in kinds:
                raise invalid(path, f"member {key!r} holds {dtype}, not a plain array of the kind expected")
            count = math.prod(shape)
            if max(count, 1) * max(dtype.itemsize, 1) > max_bytes:
                raise invalid(path, f"member {key!r} is {dtype} {shape}, more than its name allows")
            data = np.empty(count, dtype)
            got = fp.readinto(memoryview(data).cast("B")) if data.nbytes else 0
            if got != data.nbytes:
                raise ValueError(f"member {key!r} ends after {got} of its {data.nbytes} bytes")
    except CheckpointError:
        raise
    except Exception as exc:  # zipfile, zlib and .npy format errors all mean "unreadable"
        raise unreadable(path, exc) from exc
    return np.array(data.reshape(shape, order="F"), order="C") if fortran else data.reshape(shape)


def _depth_problem(obj) -> str | None:
    """Whether `obj` nests deeper than JSON_MAX_DEPTH (walked with a stack of our own, not by recursion)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > JSON_MAX_DEPTH:
                return f"nested deeper than {JSON_MAX_DEPTH} levels"
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return None


def parse_json(path: str, key: str, arr: np.ndarray) -> dict:
    """The JSON object stored as text in a () str array, nested at most JSON_MAX_DEPTH deep (the parser stops a
    deeper one at Python's recursion limit with a RecursionError, which is caught)."""
    try:
        if arr.shape != () or arr.dtype.kind != "U":
            raise ValueError(f"a {arr.dtype} array of shape {arr.shape}, not text")
        obj = json.loads(str(arr[()]))
        if not isinstance(obj, dict):
            raise ValueError(f"a JSON {type(obj).__name__}, not an object")
        problem = _depth_problem(obj)
        if problem:
            raise ValueError(problem)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: '{key}' is not valid JSON object text ({short(exc, 100)}); "
                              f"{BAD_FILE_HINT}") from exc
    return obj
