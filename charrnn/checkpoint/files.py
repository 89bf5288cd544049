"""Checkpoint files: written atomically (temp file, fsync, os.replace), read without pickle, validated on load."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile

import numpy as np

from charrnn import config
from charrnn.checkpoint.record import (BAD_FILE_HINT, FORMAT_VERSION, RESERVED, RESUME_PREFIX, TEXT_KEYS, TRAIN_HINT,
                                       Checkpoint, CheckpointError, _first_problem)
from charrnn.config import ModelConfig, TrainConfig

# ------------------------------------------------------------------------------------------------- saving

_IN_FLIGHT: set[str] = set()  # temp files of saves in progress (see discard_temp_files)


def discard_temp_files() -> None:
    """Remove the temp files of saves in progress, for a caller about to leave with os._exit (a second Ctrl-C
    during a save): os._exit skips save's own clean-up. The checkpoint at the target path is never touched."""
    for tmp in list(_IN_FLIGHT):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _json_default(obj):
    """Let numpy scalars and arrays in `meta` become JSON numbers and lists."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _text(obj) -> np.ndarray:
    """obj as JSON text in a () str array (no pickle needed)."""
    return np.array(json.dumps(obj, default=_json_default, sort_keys=True))


def _arrays(ckpt: Checkpoint) -> dict[str, np.ndarray]:
    """Every array that goes into the file, under its key."""
    out = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "model_config": _text(config.to_dict(ckpt.model_config)),
        "train_config": _text(config.to_dict(ckpt.train_config)),
        "meta": _text(ckpt.meta),
        "vocab": ckpt.vocab,
    }
    out.update(ckpt.params)
    out.update({RESUME_PREFIX + k: v for k, v in ckpt.resume.items()})
    return out


def _file_mode(path: str) -> int:
    """The existing file's permissions, or what a plain open() would give (0o666 less the umask)."""
    with contextlib.suppress(OSError):
        return os.stat(path).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (best effort: not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save(path, ckpt: Checkpoint) -> None:
    """Validate `ckpt` and write it to `path` atomically: a temp file in the same directory, fsync, os.replace.

    The file is written exactly at `path` (no ".npz" appended); parent directories are created. On any error
    the temp file is removed and an existing checkpoint at `path` is left untouched.
    """
    path = os.fspath(path)
    problem = _first_problem(ckpt)
    if problem:
        raise CheckpointError(f"refusing to write {path}: {problem}")
    try:
        arrays = _arrays(ckpt)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"refusing to write {path}: meta is not JSON-serialisable ({exc})") from exc
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    _IN_FLIGHT.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        _IN_FLIGHT.discard(tmp)
    _fsync_dir(directory)


def _read(path: str) -> dict[str, np.ndarray]:
    """Every array in the .npz at `path`, read into memory; the file is closed on return."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} not found; {TRAIN_HINT} or pass -c PATH")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory, not a checkpoint; pass the .npz file with -c PATH")
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}; check its permissions") from exc
    with f:
        head = f.read(2)
        if head != b"PK":  # every .npz is a zip archive, and every zip archive starts with "PK"
            what = "it is empty" if not head else "it is not a zip archive"
            raise CheckpointError(f"{path} is not a readable .npz checkpoint ({what}); {BAD_FILE_HINT}")
        f.seek(0)
        try:
            archive = np.load(f, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with archive:
                return {key: archive[key] for key in archive.files}
        except Exception as exc:  # zipfile, zlib, numpy format and pickle refusals all mean "unreadable"
            detail = f"{type(exc).__name__}: {exc}"[:120]
            raise CheckpointError(f"{path} is not a readable .npz checkpoint (corrupt or truncated? {detail}); "
                                  f"{BAD_FILE_HINT}") from exc


def _version(path: str, data: dict) -> int:
    """The file's format version, checked against FORMAT_VERSION."""
    if "format_version" not in data:
        raise CheckpointError(f"{path} is not a charrnn checkpoint (missing 'format_version'); {TRAIN_HINT}")
    v = data["format_version"]
    if v.shape != () or v.dtype.kind not in "iu" or int(v) < 1:
        raise CheckpointError(f"{path} has an invalid format_version ({v.dtype} {v.shape}); {BAD_FILE_HINT}")
    if int(v) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer charrnn (checkpoint format {int(v)}, this one reads "
                              f"up to {FORMAT_VERSION}); upgrade charrnn")
    return int(v)


def _parse_json(path: str, data: dict, key: str) -> dict:
    """The JSON object stored as text under `key`."""
    arr = data[key]
    try:
        if arr.shape != () or arr.dtype.kind != "U":
            raise ValueError(f"a {arr.dtype} array of shape {arr.shape}, not text")
        obj = json.loads(str(arr[()]))
        if not isinstance(obj, dict):
            raise ValueError(f"a JSON {type(obj).__name__}, not an object")
    except ValueError as exc:
        raise CheckpointError(f"{path}: '{key}' is not valid JSON object text ({exc}); {BAD_FILE_HINT}") from exc
    return obj


def load(path) -> Checkpoint:
    """Read and validate the checkpoint at `path`; any problem raises a one-line CheckpointError."""
    path = os.fspath(path)
    data = _read(path)
    version = _version(path, data)
    for key in RESERVED:
        if key not in data:
            raise CheckpointError(f"{path} is damaged: missing '{key}'; {BAD_FILE_HINT}")
    mc, tc, meta = (_parse_json(path, data, key) for key in TEXT_KEYS)
    ckpt = Checkpoint(
        model_config=config.from_dict(ModelConfig, mc),
        train_config=config.from_dict(TrainConfig, tc),
        vocab=data["vocab"],
        params={k: v for k, v in data.items() if k not in RESERVED and not k.startswith(RESUME_PREFIX)},
        resume={k[len(RESUME_PREFIX):]: v for k, v in data.items() if k.startswith(RESUME_PREFIX)},
        meta=meta,
        version=version,
    )
    problem = _first_problem(ckpt)
    if problem:
        raise CheckpointError(f"{path} is not a valid checkpoint: {problem}; {BAD_FILE_HINT}")
    order = list(config.param_shapes(ckpt.model_config))
    ckpt.params = {k: ckpt.params[k] for k in order}
    return ckpt


def describe(ckpt: Checkpoint) -> dict:
    """A JSON-able summary for `charrnn info`: version, sizes, parameter count, training progress and curve."""
    mc, meta = ckpt.model_config, ckpt.meta
    best = meta.get("best_val_loss")
    return {
        "format_version": ckpt.version,
        "cell": mc.cell,
        "embed": mc.embed,
        "hidden": mc.hidden,
        "layers": mc.layers,
        "dropout": mc.dropout,
        "parameters": int(sum(p.size for p in ckpt.params.values())),
        "vocab_size": int(len(ckpt.vocab)),
        "dtype": str(next(iter(ckpt.params.values())).dtype),
        "steps": meta.get("step"),
        "seed": meta.get("seed", ckpt.train_config.seed),
        "best_val_loss": best if isinstance(best, (int, float)) and math.isfinite(best) else None,
        "history": meta.get("history", []),
    }
