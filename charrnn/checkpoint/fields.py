"""Type and range checks of every field of a checkpoint's model_config, train_config and meta.

A checkpoint may come from a stranger, so each field is checked against the documented maxima in `config` before
anything is sized from it: a config that asks for 10**9 layers, or a meta whose history is a string, is one line
of error, not an allocation or a traceback later. Fields this version does not know (written by a newer charrnn)
must still be plain JSON scalars. Each check returns the first problem as text, or None.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from charrnn import config
from charrnn.config import ModelConfig, TrainConfig

MAX_COUNT = 2**62  # steps, characters, cursors: far beyond any run, still exact in float64 JSON readers
MAX_SEED = config.MAX_SEED


def show(value) -> str:
    """A short one-line repr of a (possibly hostile) value for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def int_problem(where: str, value, lo: int, hi: int, optional: bool = False) -> str | None:
    """`value` must be an integer in [lo, hi] (or None when optional)."""
    if optional and value is None:
        return None
    if not _is_int(value) or not lo <= value <= hi:
        return f"{where} must be an integer in [{lo}, {hi}]{' or null' if optional else ''}, got {show(value)}"
    return None


def real_problem(where: str, value, lo: float, hi: float, hi_open: bool = False, lo_open: bool = False,
                 optional: bool = False) -> str | None:
    """`value` must be a finite number in [lo, hi] (open ends as asked; None when optional)."""
    if optional and value is None:
        return None
    ok = _is_real(value) and math.isfinite(value) and (lo < value if lo_open else lo <= value)
    ok = ok and (value < hi if hi_open else value <= hi)
    if not ok:
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        return f"{where} must be a finite number in {span}{' or null' if optional else ''}, got {show(value)}"
    return None


def _name_problem(where: str, value, known: tuple[str, ...]) -> str | None:
    if not isinstance(value, str) or value not in known:
        return f"unknown {where} {show(value)} (known: {', '.join(known)})"
    return None


def _scalar_problem(where: str, value) -> str | None:
    """A field this version does not check: a JSON scalar, a short string at most."""
    if value is None or isinstance(value, (bool, numbers.Real)) or (isinstance(value, str) and len(value) <= 1000):
        return None
    return f"{where} must be a JSON scalar, got {show(value)}"


INF = math.inf
_MODEL_CHECKS = {
    "cell": lambda w, v: _name_problem(w, v, config.CELL_NAMES),
    "vocab_size": lambda w, v: int_problem(w, v, 1, config.MAX_VOCAB),
    "embed": lambda w, v: int_problem(w, v, 1, config.MAX_EMBED),
    "hidden": lambda w, v: int_problem(w, v, 1, config.MAX_HIDDEN),
    "layers": lambda w, v: int_problem(w, v, 1, config.MAX_LAYERS),
    "dropout": lambda w, v: real_problem(w, v, 0.0, 1.0, hi_open=True),
}
_TRAIN_CHECKS = {
    "batch": lambda w, v: int_problem(w, v, 1, config.MAX_BATCH),
    "seq": lambda w, v: int_problem(w, v, 1, config.MAX_SEQ),
    "lr": lambda w, v: real_problem(w, v, 0.0, INF, lo_open=True, hi_open=True),
    "optimizer": lambda w, v: _name_problem(w, v, config.OPTIMIZER_NAMES),
    "momentum": lambda w, v: real_problem(w, v, 0.0, 1.0, hi_open=True),
    "weight_decay": lambda w, v: real_problem(w, v, 0.0, INF, hi_open=True),
    "clip": lambda w, v: real_problem(w, v, 0.0, INF, hi_open=True),
    "schedule": lambda w, v: _name_problem(w, v, config.SCHEDULE_NAMES),
    "warmup": lambda w, v: int_problem(w, v, 0, config.MAX_LENGTH),
    "steps": lambda w, v: int_problem(w, v, 1, config.MAX_LENGTH, optional=True),
    "epochs": lambda w, v: real_problem(w, v, 0.0, INF, lo_open=True, hi_open=True, optional=True),
    "max_time": lambda w, v: real_problem(w, v, 0.0, INF, lo_open=True, hi_open=True, optional=True),
    "val_frac": lambda w, v: real_problem(w, v, 0.0, 0.5),
    "val_chars": lambda w, v: int_problem(w, v, 0, MAX_COUNT),
    "eval_every": lambda w, v: int_problem(w, v, 1, config.MAX_LENGTH),
    "patience": lambda w, v: int_problem(w, v, 1, config.MAX_LENGTH, optional=True),
    "checkpoint_every": lambda w, v: real_problem(w, v, 0.0, INF, lo_open=True, hi_open=True, optional=True),
    "seed": lambda w, v: int_problem(w, v, 0, MAX_SEED, optional=True),
    "dtype": lambda w, v: _name_problem(w, v, config.DTYPE_NAMES),
    "threads": lambda w, v: int_problem(w, v, 1, config.MAX_THREADS, optional=True),
}


def _fields_problem(obj, where: str, checks: dict) -> str | None:
    for f in dataclasses.fields(obj):
        check = checks.get(f.name, _scalar_problem)
        problem = check(f"{where}.{f.name}", getattr(obj, f.name))
        if problem:
            return problem
    return None


def config_problem(mc, tc) -> str | None:
    """The first thing wrong with the two configs (every field, within the documented maxima), or None."""
    if not isinstance(mc, ModelConfig) or not isinstance(tc, TrainConfig):
        return "model_config/train_config must be ModelConfig/TrainConfig"
    problem = _fields_problem(mc, "model_config", _MODEL_CHECKS) or _fields_problem(tc, "train_config", _TRAIN_CHECKS)
    if problem:
        return problem
    if config.param_count(mc) > config.MAX_PARAMS:
        return (f"model_config describes {config.param_count(mc):,} parameters, more than the {config.MAX_PARAMS:,} "
                f"charrnn allows")
    return None


# ------------------------------------------------------------------------------------------------------ meta

_HISTORY_KEYS = {"step": "int", "n": "int", "chars": "int", "epoch": "real", "elapsed": "real", "loss": "real",
                 "val_loss": "real", "lr": "real"}


def _history_problem(history) -> str | None:
    if not isinstance(history, list):
        return f"meta.history must be a list, got {show(history)}"
    for i, row in enumerate(history):
        if not isinstance(row, dict):
            return f"meta.history[{i}] must be an object, got {show(row)}"
        for key, kind in _HISTORY_KEYS.items():
            value = row.get(key)
            problem = (int_problem(f"meta.history[{i}].{key}", value, 0, MAX_COUNT, optional=True) if kind == "int"
                       else real_problem(f"meta.history[{i}].{key}", value, -INF, INF, True, True, optional=True))
            if problem:
                return problem
    return None


def _curve_problem(curve) -> str | None:
    """The training-loss curve: [step, finite loss] pairs."""
    if not isinstance(curve, list):
        return f"meta.curve must be a list, got {show(curve)}"
    for i, point in enumerate(curve):
        if (not isinstance(point, list) or len(point) != 2 or int_problem("", point[0], 0, MAX_COUNT)
                or real_problem("", point[1], -INF, INF, True, True)):
            return f"meta.curve[{i}] must be a [step, finite loss] pair, got {show(point)}"
    return None


def _rng_problem(rng) -> str | None:
    """The state of numpy's PCG64 bit generator, as `bit_generator.state` gives it."""
    state = rng.get("state") if isinstance(rng, dict) else None
    if (not isinstance(rng, dict) or rng.get("bit_generator") != "PCG64" or not isinstance(state, dict)
            or int_problem("", state.get("state"), 0, 2**128 - 1) or int_problem("", state.get("inc"), 0, 2**128 - 1)
            or int_problem("", rng.get("has_uint32"), 0, 1) or int_problem("", rng.get("uinteger"), 0, 2**32 - 1)):
        return "meta.rng is not the state of a PCG64 generator"
    return None


def _cursor_problem(meta: dict, tc: TrainConfig) -> str | None:
    """The data cursor must point inside an epoch of the corpus the run was trained on."""
    from charrnn.data import split

    n = meta.get("corpus_chars")
    if "cursor" not in meta or n is None:
        return None
    n_train = n - len(split(range(n), tc.val_frac)[1])
    per_epoch = max(1, (n_train // tc.batch - 1) // tc.seq)
    if meta["cursor"] >= per_epoch:
        return (f"meta.cursor {meta['cursor']} is past the data (an epoch of {n} characters with batch {tc.batch} "
                f"and seq {tc.seq} has {per_epoch} batches)")
    return None


def _origin_problem(where: str, origin) -> str | None:
    """meta.init_from (a fine-tuned run's source): null, or an object of JSON scalars, its counts in range."""
    if origin is None:
        return None
    if not isinstance(origin, dict):
        return f"{where} must be an object or null, got {show(origin)}"
    checks = {"steps": lambda w, v: int_problem(w, v, 0, MAX_COUNT, optional=True),
              "best_val_loss": lambda w, v: real_problem(w, v, -INF, INF, True, True, optional=True)}
    for key, value in origin.items():
        problem = checks.get(key, _scalar_problem)(f"{where}.{key}", value)
        if problem:
            return problem
    return None


_META_CHECKS = {
    "step": lambda w, v: int_problem(w, v, 0, MAX_COUNT),
    "cursor": lambda w, v: int_problem(w, v, 0, MAX_COUNT),
    "epochs_done": lambda w, v: int_problem(w, v, 0, MAX_COUNT),
    "chars": lambda w, v: int_problem(w, v, 0, MAX_COUNT),
    "corpus_chars": lambda w, v: int_problem(w, v, 0, MAX_COUNT),
    "corpus_files": lambda w, v: int_problem(w, v, 0, MAX_COUNT, optional=True),
    "bad_evals": lambda w, v: int_problem(w, v, 0, MAX_COUNT),
    "best_step": lambda w, v: int_problem(w, v, 0, MAX_COUNT, optional=True),
    "val_chars": lambda w, v: int_problem(w, v, 0, MAX_COUNT, optional=True),
    "seed": lambda w, v: int_problem(w, v, 0, MAX_SEED, optional=True),
    "elapsed": lambda w, v: real_problem(w, v, 0.0, INF, hi_open=True),
    "best_val_loss": lambda w, v: real_problem(w, v, -INF, INF, True, True, optional=True),
    "corpus_sha256": lambda w, v: None if isinstance(v, str) and len(v) <= 128 else f"{w} must be a short string",
    "history": lambda w, v: _history_problem(v),
    "curve": lambda w, v: _curve_problem(v),
    "curve_every": lambda w, v: int_problem(w, v, 1, MAX_COUNT),
    "history_every": lambda w, v: int_problem(w, v, 1, MAX_COUNT),
    "curve_n": lambda w, v: int_problem(w, v, 0, MAX_COUNT),
    "window_n": lambda w, v: int_problem(w, v, 0, MAX_COUNT),
    "validations": lambda w, v: int_problem(w, v, 0, MAX_COUNT),
    "curve_sum": lambda w, v: real_problem(w, v, -INF, INF, True, True),
    "window_sum": lambda w, v: real_problem(w, v, -INF, INF, True, True),
    "window": lambda w, v: (None if isinstance(v, list) and not any(real_problem("", x, -INF, INF, True, True)
                                                                     for x in v)
                            else f"{w} must be a list of finite numbers"),
    "rng": lambda w, v: _rng_problem(v),
    "init_from": _origin_problem,
}


def meta_problem(meta, tc: TrainConfig) -> str | None:
    """The first thing wrong with meta: a dict whose known keys have the types and ranges a run writes."""
    if not isinstance(meta, dict):
        return f"meta must be a dict, got {type(meta).__name__}"
    for key, check in _META_CHECKS.items():
        if key in meta:
            problem = check(f"meta.{key}", meta[key])
            if problem:
                return problem
    return _cursor_problem(meta, tc)
