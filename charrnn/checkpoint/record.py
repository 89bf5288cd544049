"""The checkpoint record (what a checkpoint holds), its constants and errors, and the checks that guard both
writing and reading it. Shapes: V vocabulary."""

from __future__ import annotations

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
