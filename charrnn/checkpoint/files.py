"""Checkpoint files: written atomically (temp file, fsync, os.replace), read without pickle, validated on load."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time

import numpy as np

from charrnn import config
from charrnn.checkpoint.fields import config_problem
from charrnn.checkpoint.reader import directory, invalid, open_regular, parse_json, read_array, short
from charrnn.checkpoint.record import (BAD_FILE_HINT, FORMAT_VERSION, OTHER_RESUME_BYTES, RESERVED, RESUME_PREFIX,
                                       TEXT_KEYS, TRAIN_HINT, Checkpoint, CheckpointError, _first_problem,
                                       resume_shape)
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


STALE_UNKNOWN_AGE = 3600.0  # seconds: a temp file whose name carries no process id is stale after this


def _temp_prefix(path: str) -> str:
    """Temp files of a save to `path` are named .NAME.PID.RANDOM.tmp next to it (PID: the writing process)."""
    return f".{os.path.basename(path)}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # EPERM: alive, someone else's
        return True
    return True


def _remove_stale_temp_files(path: str) -> None:
    """Remove temp files of earlier saves to `path` that no save will finish: their process is gone (kill -9,
    power loss), or it is this process and the save is over, or (a name without a process id) they are older
    than STALE_UNKNOWN_AGE. A concurrent save by a live process keeps its file. Best effort, never raises."""
    directory, prefix = os.path.dirname(path) or ".", _temp_prefix(path)
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        tmp = os.path.join(directory, name)
        pid, stale = name[len(prefix):].split(".", 1)[0], False
        if pid.isdigit() and int(pid) > 0:
            stale = not _pid_alive(int(pid)) or (int(pid) == os.getpid() and tmp not in _IN_FLIGHT)
        else:
            with contextlib.suppress(OSError):
                stale = time.time() - os.lstat(tmp).st_mtime > STALE_UNKNOWN_AGE
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _make_parents(directory: str) -> list[str]:
    """Create `directory` and its missing parents; the ones created, deepest first (to remove on failure)."""
    created, d = [], directory
    while d and not os.path.isdir(d):
        created.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    os.makedirs(directory, exist_ok=True)
    return created


def save(path, ckpt: Checkpoint) -> None:
    """Validate `ckpt` and write it to `path` atomically: a temp file in the same directory, fsync, os.replace.

    The file is written exactly at `path` (no ".npz" appended); parent directories are created. A symbolic link
    at `path` stays a link: the file it points to is replaced. Stale temp files of earlier saves to the same path
    are removed first. On any error the temp file and the directories this save created are removed, and an
    existing checkpoint at `path` is left untouched.
    """
    path = os.fspath(path)
    problem = _first_problem(ckpt, FORMAT_VERSION)
    if problem:
        raise CheckpointError(f"refusing to write {path}: {problem}")
    try:
        arrays = _arrays(ckpt)
    except (TypeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"refusing to write {path}: meta is not JSON-serialisable ({short(exc, 100)})") from exc
    for key, limit in TEXT_CHARS.items():  # what load() would refuse is never written
        if len(str(arrays[key][()])) > limit:
            raise CheckpointError(f"refusing to write {path}: {key} is {len(str(arrays[key][()])):,} characters of "
                                  f"JSON, more than the {limit:,} a checkpoint may hold")
    target = os.path.realpath(path) if os.path.islink(path) else os.path.abspath(path)
    directory = os.path.dirname(target)
    created = _make_parents(directory)
    mode = _file_mode(target)
    _remove_stale_temp_files(target)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(target)}{os.getpid()}.", suffix=".tmp", dir=directory)
        _IN_FLIGHT.add(tmp)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for d in created:  # deepest first; rmdir refuses a directory someone else has put something in
            with contextlib.suppress(OSError):
                os.rmdir(d)
        raise
    finally:
        _IN_FLIGHT.discard(tmp)
    _fsync_dir(directory)


def check_writable(path) -> None:
    """Fail fast, before any work, if a checkpoint could not be saved at `path`: its directory (or the nearest
    existing parent, when it is to be created) must let us create a file. Raises CheckpointError."""
    path = os.fspath(path)
    target = os.path.realpath(path) if os.path.islink(path) else os.path.abspath(path)
    d = os.path.dirname(target)
    while not os.path.isdir(d) and os.path.dirname(d) != d:
        if os.path.lexists(d):
            raise CheckpointError(f"cannot write {path}: {d} is not a directory")
        d = os.path.dirname(d)
    if d != os.path.dirname(target):  # parents are to be created: only ask
        if not os.access(d, os.W_OK | os.X_OK):
            raise CheckpointError(f"cannot write {path}: no permission to create directories in {d}")
        return
    try:
        fd, probe = tempfile.mkstemp(prefix=f"{_temp_prefix(target)}{os.getpid()}.", suffix=".tmp", dir=d)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror} in {d}") from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


TEXT_CHARS = {"model_config": 2**16, "train_config": 2**16, "meta": 2**23}  # JSON text members, in characters


def _version(path: str, members: dict, archive) -> int:
    """The file's format version, checked against FORMAT_VERSION."""
    if "format_version" not in members:
        raise CheckpointError(f"{path} is not a charrnn checkpoint (missing 'format_version'); {TRAIN_HINT}")
    v = read_array(path, archive, members["format_version"], 64)
    if v.shape != () or v.dtype.kind not in "iu" or int(v) < 1:
        raise CheckpointError(f"{path} has an invalid format_version ({v.dtype} {v.shape}); {BAD_FILE_HINT}")
    if int(v) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer charrnn (checkpoint format {int(v)}, this one reads "
                              f"up to {FORMAT_VERSION}); upgrade charrnn")
    return int(v)


def _member_bytes(path: str, key: str, mc: ModelConfig, tc: TrainConfig) -> int:
    """The most data bytes the member `key` (not a reserved one) may hold for these configs."""
    shapes = config.param_shapes(mc)
    sizes = f"a {mc.layers}-layer {mc.cell} (embed {mc.embed}, hidden {mc.hidden}, vocab {mc.vocab_size})"
    if not key.startswith(RESUME_PREFIX):
        if key not in shapes:
            raise invalid(path, f"unexpected parameter {key[:80]!r} for {sizes}")
        return 8 * math.prod(shapes[key])
    shape = resume_shape(key[len(RESUME_PREFIX):], mc, tc)
    if shape is False:
        raise invalid(path, f"resume key {key[len(RESUME_PREFIX):][:80]!r} names no parameter or layer of {sizes}")
    return OTHER_RESUME_BYTES if shape is None else 8 * math.prod(shape)


def load(path) -> Checkpoint:
    """Read and validate the checkpoint at `path` as hostile input (see reader.py); any problem raises a one-line
    CheckpointError. The configs are read and checked first; every other member is then held to the size they
    give it."""
    path = os.fspath(path)
    with open_regular(path) as f:
        archive, members = directory(path, f)
        version = _version(path, members, archive)
        for key in RESERVED:
            if key not in members:
                raise CheckpointError(f"{path} is damaged: missing '{key}'; {BAD_FILE_HINT}")
        mc, tc, meta = (parse_json(path, key, read_array(path, archive, members[key], 4 * TEXT_CHARS[key]))
                        for key in TEXT_KEYS)
        try:
            mc, tc = config.from_dict(ModelConfig, mc), config.from_dict(TrainConfig, tc)
        except TypeError as exc:  # e.g. a key that is not a string
            raise invalid(path, f"a config does not fit ({short(exc, 80)})") from exc
        problem = config_problem(mc, tc)
        if problem:
            raise invalid(path, problem)
        vocab = read_array(path, archive, members["vocab"], 8 * mc.vocab_size)
        arrays = {key: read_array(path, archive, info, _member_bytes(path, key, mc, tc))
                  for key, info in members.items() if key not in RESERVED}
    ckpt = Checkpoint(
        model_config=mc,
        train_config=tc,
        vocab=vocab,
        params={k: v for k, v in arrays.items() if not k.startswith(RESUME_PREFIX)},
        resume={k[len(RESUME_PREFIX):]: v for k, v in arrays.items() if k.startswith(RESUME_PREFIX)},
        meta=meta,
        version=version,
    )
    problem = _first_problem(ckpt, version)
    if problem:
        raise invalid(path, problem)
    order = list(config.param_shapes(ckpt.model_config))
    ckpt.storage = ckpt.params[order[0]].dtype.name
    compute = np.float32 if ckpt.storage == "float16" else None  # float16 is storage only: upcast (exact)
    ckpt.params = {k: ckpt.params[k] if compute is None else ckpt.params[k].astype(compute) for k in order}
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
        "storage": ckpt.storage or str(next(iter(ckpt.params.values())).dtype),  # how the file stores the weights
        "steps": meta.get("step"),
        "seed": meta.get("seed", ckpt.train_config.seed),
        "best_val_loss": best if isinstance(best, (int, float)) and math.isfinite(best) else None,
        "val_chars": meta.get("val_chars"),  # held-out characters each validation scored (None: none ran)
        "history": meta.get("history", []),
        "init_from": meta.get("init_from"),  # a fine-tuned run's source: path, sha256, steps, ... (None: none)
    }
