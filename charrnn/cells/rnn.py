"""The vanilla RNN cell, forward and backward. Shapes: T time, N batch, D input, H hidden.

`reference.rnn_forward` and `reference.rnn_backward` (charrnn/cells/reference.py) reorganised: the input
projection of all T steps is one GEMM before the loop and the weight gradients one GEMM each after it, so only
the recurrence stays inside. Unlike the LSTM and GRU, the RNN stays batch-major (N,H): with one gate and H×H
weights the two GEMM orientations cost about the same (see BENCHMARKS.md, "What each change bought").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from charrnn.cells.common import _input_grad, _project, _weight_grads

# ----------------------------------------------------------------------------------------------------------------
# Vanilla RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)


class RNNCache(NamedTuple):
    x: np.ndarray  # (T,N,D) inputs
    hs: np.ndarray  # (T+1,N,H) h_0 .. h_T
    W_ih: np.ndarray  # (H,D)
    W_hh: np.ndarray  # (H,H)


def rnn_forward(x: np.ndarray, state: tuple, p: dict, need_cache: bool = True) -> tuple[np.ndarray, tuple, RNNCache]:
    """x (T,N,D), state (h0,) -> hs (T,N,H), final state (h_T,), cache (None if not need_cache).

    `reference.rnn_forward` with the input projection hoisted out of the loop.
    """
    (h0,) = state
    T, N, _ = x.shape
    H = h0.shape[1]
    hs = np.empty((T + 1, N, H), dtype=x.dtype)  # (T+1,N,H) h_0 .. h_T
    hs[0] = h0
    a = np.empty((T, N, H), dtype=x.dtype)  # (T,N,H) pre-activations
    _project(x, p["weight_ih"], p["bias_ih"] + p["bias_hh"], out=a)
    # W_hh.T as a C-contiguous copy, the faster GEMM layout; at T = 1 (sampling) the copy would cost more than the
    # step, so the view is used (see BENCHMARKS.md, "What each change bought").
    W_hhT = p["weight_hh"].T if T == 1 else np.ascontiguousarray(p["weight_hh"].T)  # (H,H)
    hW = np.empty((N, H), dtype=x.dtype)  # (N,H)
    for t in range(T):
        np.matmul(hs[t], W_hhT, out=hW)
        a[t] += hW
        np.tanh(a[t], out=hs[t + 1])
    return hs[1:], (hs[T],), RNNCache(x, hs, p["weight_ih"], p["weight_hh"]) if need_cache else None


def rnn_activations(cache: RNNCache) -> dict[str, np.ndarray]:
    """What a forward computed, from its cache: {"h": (T,N,H)} h_1 .. h_T. For `charrnn inspect` (see
    lstm_activations)."""
    return {"h": cache.hs[1:]}


def rnn_backward(dhs: np.ndarray, cache: RNNCache) -> tuple[np.ndarray, tuple, dict]:
    """dhs (T,N,H) -> dx (T,N,D), (dh0,), grads under the parameter names.

    `reference.rnn_backward` with the weight and input gradients taken out of the loop: one GEMM each after it.
    """
    x, hs, W_ih, W_hh = cache
    T = dhs.shape[0]
    da = np.square(hs[1:])  # (T,N,H) becomes dLoss/d(pre-activation); tanh' = 1 - h²
    np.subtract(1.0, da, out=da)
    dh = np.zeros_like(hs[0])  # (N,H) gradient arriving at h_t from step t+1
    for t in reversed(range(T)):
        dh += dhs[t]
        da[t] *= dh
        np.matmul(da[t], W_hh, out=dh)
    return _input_grad(da, W_ih), (dh,), _weight_grads(da, x, hs[:-1])
