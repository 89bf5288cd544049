"""The checkpoint record (what a checkpoint holds), its constants and errors, and the checks that guard both
writing and reading it. Shapes: V vocabulary."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from charrnn import config
from charrnn.checkpoint.fields import config_problem, meta_problem, show
from charrnn.config import ModelConfig, TrainConfig

FORMAT_VERSION = 2  # 2: the weights may be stored as float16 (version 1: float32 or float64 only)
# How the weights (every parameter, one dtype for all) may be stored, per format version. Computation never runs in
# float16: load() upcasts such weights to float32 (exactly), and `Checkpoint.storage` says how they were stored.
WEIGHT_DTYPES = {1: ("float32", "float64"), 2: ("float16", "float32", "float64")}
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
    storage: str = ""  # the dtype the file stored the weights in (set by load; "" for one not read from a file)


# ---------------------------------------------------------------------------------------------- validation


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
    surrogates = vocab[(vocab >= 0xD800) & (vocab <= 0xDFFF)]
    if len(surrogates):
        return f"vocab holds {int(surrogates[0]):#x}, a surrogate, not a character (U+D800-U+DFFF are none)"
    return None


def _param_problem(params, mc: ModelConfig, version: int) -> str | None:
    """The first thing wrong with the parameters: exactly config.param_shapes(mc), one float dtype that format
    `version` stores (WEIGHT_DTYPES), all finite."""
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
    dtype, allowed = params["embedding.weight"].dtype, WEIGHT_DTYPES.get(version, ())
    if dtype.name not in allowed:
        names = f"{', '.join(allowed[:-1])} or {allowed[-1]}" if allowed else "(none)"
        return f"parameters must be {names} in format version {version}, found {dtype}"
    for name, p in params.items():
        if p.dtype != dtype:
            return f"parameter {name!r} is {p.dtype} but 'embedding.weight' is {dtype}; all must share one dtype"
        if not np.all(np.isfinite(p)):
            return f"parameter {name!r} holds NaN or infinite values"
    return None


def resume_shape(key: str, mc: ModelConfig, tc: TrainConfig) -> tuple | bool | None:
    """The shape a `resume/` array must have, from the configs: weights and optimizer moments like the parameters
    ("params/<name>", "optim/<buffer>/<name>"), the step count "optim/t" a scalar, the carried state
    "state/<layer>/<i>" (B, H). False for such a key that names no parameter or layer of this model; None for a
    key of another kind (at most OTHER_RESUME_BYTES, any shape)."""
    shapes = config.param_shapes(mc)
    parts = key.split("/")
    if parts[0] == "params" and len(parts) == 2:
        return shapes.get(parts[1], False)
    if key == "optim/t":
        return ()
    if parts[0] == "optim" and len(parts) == 3:
        return shapes.get(parts[2], False)
    if parts[0] == "state" and len(parts) == 3:
        ok = parts[1] in {str(k) for k in range(mc.layers)} and parts[2] in ("0", "1")
        return (tc.batch, mc.hidden) if ok else False
    return None


OTHER_RESUME_BYTES = 2**20


def _state_problem(resume, mc: ModelConfig, tc: TrainConfig) -> str | None:
    """The first thing wrong with the training state: string keys, non-object arrays of the shape the configs
    give (see resume_shape), floats where weights are kept."""
    if not isinstance(resume, dict):
        return "resume must be a dict of arrays"
    for key, value in resume.items():
        if not isinstance(key, str) or not key:
            return f"resume key {show(key)} must be a non-empty string"
        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            return f"resume[{key!r}] must be a numeric or string ndarray (no Python objects)"
        shape = resume_shape(key, mc, tc)
        if shape is None:
            if value.nbytes > OTHER_RESUME_BYTES:
                return f"resume[{key!r}] holds {value.nbytes:,} bytes, more than {OTHER_RESUME_BYTES:,}"
            continue
        if shape is False:
            return f"resume key {key!r} names no parameter or layer of this model"
        if value.shape != shape:
            return f"resume[{key!r}] has shape {value.shape}, expected {shape}"
        kinds = "iu" if key == "optim/t" else "f"
        if value.dtype.kind not in kinds or value.dtype.itemsize > 8:
            return f"resume[{key!r}] is {value.dtype}, expected {'an integer' if kinds == 'iu' else 'floats'}"
    return None


def _first_problem(ckpt: Checkpoint, version: int) -> str | None:
    """The first thing wrong with `ckpt` as a file of format `version`, or None: the same checks guard save and
    load."""
    mc, tc = ckpt.model_config, ckpt.train_config
    return (
        config_problem(mc, tc)
        or _vocab_problem(ckpt.vocab, mc.vocab_size)
        or _param_problem(ckpt.params, mc, version)
        or _state_problem(ckpt.resume, mc, tc)
        or meta_problem(ckpt.meta, tc)
    )
