"""Packaging a trained checkpoint for shipping (the bundled model): the weights to sample and evaluate with, the
configs and the run's story (meta, its curve), without what only a resume needs.

Dropped: the `resume/` training state (latest weights, optimizer moments, carried state: three times the weights),
and the meta only a resume reads (RUN_ONLY_META). The history and the curve stay. The result
samples, evaluates, shows its curve in `charrnn info` and can seed a new run (`train --init-from`), but cannot be
resumed. With float16=True the weights are stored as float16 (half the bytes; load() upcasts them to float32, so
every weight is off by at most its float16 rounding, a relative 2**-11).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from charrnn.checkpoint.files import load, save
from charrnn.checkpoint.record import Checkpoint, CheckpointError

# meta that only a resume reads: the generator's state and the unfinished intervals of the history and the curve
RUN_ONLY_META = ("rng", "window", "window_sum", "window_n", "curve_sum", "curve_n")
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504


def for_shipping(ckpt: Checkpoint, float16: bool = False) -> Checkpoint:
    """`ckpt` without its training state and run-only meta; weights cast to float16 when asked. Raises
    CheckpointError when a weight lies beyond float16's range (it would become infinite)."""
    params = ckpt.params
    if float16:
        for name, p in params.items():
            if np.abs(p).max(initial=0.0) > FLOAT16_MAX:
                raise CheckpointError(f"parameter {name!r} holds {float(np.abs(p).max()):.4g}, beyond float16's "
                                      f"range (±{FLOAT16_MAX:g}); package it without float16")
        params = {name: p.astype(np.float16) for name, p in params.items()}
    meta = {k: v for k, v in ckpt.meta.items() if k not in RUN_ONLY_META}
    return dataclasses.replace(ckpt, params=params, resume={}, meta=meta, storage="")


def package(src, dst, float16: bool = False) -> Checkpoint:
    """Load the checkpoint at `src`, write it to `dst` for shipping (see for_shipping) and return what was
    written. Raises CheckpointError."""
    shipped = for_shipping(load(src), float16)
    save(dst, shipped)
    return shipped
