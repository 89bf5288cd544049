"""Per-character surprisal: how many bits a model spends on each character of a text, for `charrnn eval --show`.

Shapes: T steps of a chunk, V vocabulary, L characters. One stream from the zero state, as a stream of
`train.evaluate` starts, through the same forward path (`model.forward` in chunks with the hidden state carried,
`model.nll` per position); so the mean of the scored entries, in nats, is what `evaluate(..., batch=1)` gives.
"""

from __future__ import annotations

import math

import numpy as np

from charrnn import model
from charrnn.config import ModelConfig


def surprisal_bits(params: dict, mc: ModelConfig, ids: np.ndarray, seq: int = 64) -> np.ndarray:
    """ids (L,) in the model's vocabulary -> bits (L,) float64: entry t is -log2 p(ids[t] | ids[:t]).

    Entry 0 is nan: the first character of a stream is not predicted (evaluation does not score it either).
    """
    ids = np.asarray(ids)
    bits = np.full(len(ids), np.nan)  # (L,)
    state = model.init_state(mc, 1, params["decoder.weight"].dtype)
    for start in range(0, len(ids) - 1, seq):
        chunk = ids[None, start : start + seq + 1]  # (1,≤seq+1) inputs and, shifted by one, targets
        logits, state, _ = model.forward(params, mc, chunk[:, :-1], state, need_cache=False)  # (T,1,V)
        T, _, V = logits.shape
        bits[start + 1 : start + 1 + T] = model.nll(logits.reshape(T, V), chunk[0, 1:]) / math.log(2)  # (T,)
    return bits
