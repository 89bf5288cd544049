"""Checkpoints: one versioned, pickle-free `.npz` per model, written atomically and validated on load.

Keys in the file (see CLI.md, "Checkpoint"):
    format_version        () int64
    model_config          () str, JSON of ModelConfig
    train_config          () str, JSON of TrainConfig
    meta                  () str, JSON: step, seed, best_val_loss, history, corpus hash, rng state, ...
    vocab                 (V,) uint32 code points, sorted, unique
    <param name>          PyTorch state_dict names and shapes, config.param_shapes; one float dtype for all
    resume/<key>          training state (any non-object arrays)
Simplification chosen on purpose: the file is the whole truth; nothing is pickled, so every array is read with
`allow_pickle=False`, and every failure to read or validate becomes a one-line CheckpointError with a hint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from charrnn import config
from charrnn.config import ModelConfig, TrainConfig

FORMAT_VERSION = 1
RESUME_PREFIX = "resume/"
TEXT_KEYS = ("model_config", "train_config", "meta")
RESERVED = ("format_version", *TEXT_KEYS, "vocab")
MAX_CODE_POINT = 0x10FFFF
TRAIN_HINT = "train one with `charrnn train CORPUS`"
BAD_FILE_HINT = "use another checkpoint, or train a new one with `charrnn train CORPUS`"


class CheckpointError(Exception):
    """A checkpoint that cannot be read, validated or written. The message is one line: what is wrong, what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).splitlines()))


@dataclass
class Checkpoint:
    """Everything needed to sample, evaluate and resume. `resume` keys carry no "resume/" prefix."""

    model_config: ModelConfig
    train_config: TrainConfig
    vocab: np.ndarray  # (V,) uint32 code points, sorted, unique
    params: dict[str, np.ndarray]  # weights for sample/eval, PyTorch names
    resume: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    version: int = FORMAT_VERSION


# ---------------------------------------------------------------------------------------------- validation


def _config_problem(mc, tc) -> str | None:
    """The first thing wrong with the two configs, or None."""
    if not isinstance(mc, ModelConfig) or not isinstance(tc, TrainConfig):
        return "model_config/train_config must be ModelConfig/TrainConfig"
    if mc.cell not in config.CELL_NAMES:
        return f"unknown cell {mc.cell!r} (known: {', '.join(config.CELL_NAMES)})"
    for name in ("vocab_size", "embed", "hidden", "layers"):
        value = getattr(mc, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return f"model_config.{name} must be a positive integer, got {value!r}"
    if not isinstance(mc.dropout, (int, float)) or not 0.0 <= mc.dropout < 1.0:
        return f"model_config.dropout must be in [0, 1), got {mc.dropout!r}"
    for name, known in (("optimizer", config.OPTIMIZER_NAMES), ("schedule", config.SCHEDULE_NAMES),
                        ("dtype", config.DTYPE_NAMES)):
        if getattr(tc, name) not in known:
            return f"unknown train_config.{name} {getattr(tc, name)!r} (known: {', '.join(known)})"
    return None


def _vocab_problem(vocab, vocab_size: int) -> str | None:
    """The first thing wrong with the vocabulary: (V,) uint32, strictly increasing, V = vocab_size, <= U+10FFFF."""
    if not isinstance(vocab, np.ndarray) or vocab.ndim != 1 or vocab.dtype != np.uint32:
        found = f"{vocab.dtype} {vocab.shape}" if isinstance(vocab, np.ndarray) else type(vocab).__name__
        return f"vocab must be a 1-D uint32 array, found {found}"
    if len(vocab) != vocab_size:
        return f"vocab has {len(vocab)} code points but model_config.vocab_size is {vocab_size}"
    if np.any(vocab[1:] <= vocab[:-1]):
        return "vocab is not sorted and unique"
    if int(vocab.max()) > MAX_CODE_POINT:
        return f"vocab holds {int(vocab.max()):#x}, beyond the last Unicode code point {MAX_CODE_POINT:#x}"
    return None


def _param_problem(params, mc: ModelConfig) -> str | None:
    """The first thing wrong with the parameters: exactly config.param_shapes(mc), one float dtype, all finite."""
    if not isinstance(params, dict):
        return "params must be a dict of arrays"
    expected = config.param_shapes(mc)
    sizes = f"a {mc.layers}-layer {mc.cell} (embed {mc.embed}, hidden {mc.hidden}, vocab {mc.vocab_size})"
    for name, shape in expected.items():
        if name not in params:
            return f"missing parameter {name!r} (expected shape {shape} for {sizes})"
        if not isinstance(params[name], np.ndarray) or params[name].shape != shape:
            found = getattr(params[name], "shape", type(params[name]).__name__)
            return f"parameter {name!r} has shape {found}, expected {shape} for {sizes}"
    extra = [name for name in params if name not in expected]
    if extra:
        return f"unexpected parameter {extra[0]!r} for {sizes}"
    dtype = params["embedding.weight"].dtype
    if dtype not in (np.float32, np.float64):
        return f"parameters must be float32 or float64, found {dtype}"
    for name, p in params.items():
        if p.dtype != dtype:
            return f"parameter {name!r} is {p.dtype} but 'embedding.weight' is {dtype}; all must share one dtype"
        if not np.all(np.isfinite(p)):
            return f"parameter {name!r} holds NaN or infinite values"
    return None


def _state_problem(resume, meta) -> str | None:
    """The first thing wrong with the training state (string keys, non-object arrays) or meta (a dict)."""
    if not isinstance(resume, dict):
        return "resume must be a dict of arrays"
    for key, value in resume.items():
        if not isinstance(key, str) or not key:
            return f"resume key {key!r} must be a non-empty string"
        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            return f"resume[{key!r}] must be a numeric or string ndarray (no Python objects)"
    if not isinstance(meta, dict):
        return f"meta must be a dict, got {type(meta).__name__}"
    return None


def _first_problem(ckpt: Checkpoint) -> str | None:
    """The first thing wrong with `ckpt`, or None: the same checks guard save and load."""
    mc = ckpt.model_config
    return (
        _config_problem(mc, ckpt.train_config)
        or _vocab_problem(ckpt.vocab, mc.vocab_size)
        or _param_problem(ckpt.params, mc)
        or _state_problem(ckpt.resume, ckpt.meta)
    )


# ------------------------------------------------------------------------------------------------- saving


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
    _fsync_dir(directory)


# ------------------------------------------------------------------------------------------------ loading


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
