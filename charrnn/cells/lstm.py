"""The LSTM cell (PyTorch gate order i, f, g, o), forward and backward. Shapes: T time, N batch, D input,
H hidden."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from charrnn.cells.common import _gate_scale, _gate_scale_rows, _recurrent_weights, _project, _weight_grads, _input_grad

# ----------------------------------------------------------------------------------------------------------------
# LSTM, PyTorch's gate order i, f, g, o:
#   i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)   with a = W_ih x + b_ih + W_hh h + b_hh
#   c' = f ∗ c + i ∗ g,  h' = o ∗ tanh(c')


class LSTMCache(NamedTuple):
    x: np.ndarray  # (T,N,D) inputs
    hs: np.ndarray  # (T+1,N,H) h_0 .. h_T
    cs: np.ndarray  # (T+1,N,H) c_0 .. c_T
    gates: np.ndarray  # (T,N,4H) i, f, g, o after their nonlinearities
    tanh_c: np.ndarray  # (T,N,H) tanh(c_t)
    W_ih: np.ndarray  # (4H,D)
    W_hh: np.ndarray  # (4H,H)


def lstm_forward(x: np.ndarray, state: tuple, p: dict, need_cache: bool = True) -> tuple[np.ndarray, tuple, LSTMCache]:
    """x (T,N,D), state (h0, c0) -> hs (T,N,H), final state (h_T, c_T), cache (None if not need_cache)."""
    if x.shape[0] == 1:
        return _lstm_step(x, state, p, need_cache)
    hs, final, cache = _lstm_loop(x, state, p)
    return hs, final, cache if need_cache else None


def _lstm_step(x: np.ndarray, state: tuple, p: dict, need_cache: bool = True) -> tuple[np.ndarray, tuple, LSTMCache]:
    """`_lstm_loop` for T = 1 (sampling, one call per character), bit for bit, in about half the numpy calls.

    The same operations on the same operands in the same order; what goes is the loop's setup and indexing (the
    projection helper, the weight helper, two scratch buffers, per-step views of hs, cs, gates and tanh_c), and
    the gate rows are broadcast as (1,4H). H 256: 37.7 -> 32.5 µs for layer 0 (D 64), 51.5 -> 45.9 for layer 1;
    without the cache (hs, cs and the LSTMCache exist only for backward) another ~3 µs less per layer.
    """
    h0, c0 = state
    if h0.dtype != x.dtype or c0.dtype != x.dtype:  # cast as the loop's hs, cs do
        h0, c0 = h0.astype(x.dtype), c0.astype(x.dtype)
    N, H = h0.shape
    scale, offset = _gate_scale_rows("lstm", H, x.dtype)  # (1,4H) each
    a = x[0] @ p["weight_ih"].T  # (N,4H) input part of every gate
    a += (p["bias_ih"] + p["bias_hh"])[None]  # (1,4H): a row, for the cheaper equal-ndim broadcast
    a += h0 @ p["weight_hh"].T  # (N,4H) + hidden part
    a *= scale
    np.tanh(a, out=a)
    a *= scale
    a += offset  # i, f, g, o after their nonlinearities
    i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    c = f * c0  # (N,H)
    c += i * g
    tanh_c = np.tanh(c)  # (N,H)
    h = o * tanh_c  # (N,H)
    if not need_cache:
        return h[None], (h, c), None
    hs = np.empty((2, N, H), dtype=x.dtype)  # (2,N,H) h_0, h_1
    cs = np.empty((2, N, H), dtype=x.dtype)  # (2,N,H) c_0, c_1
    hs[0], hs[1], cs[0], cs[1] = h0, h, c0, c
    cache = LSTMCache(x, hs, cs, a[None], tanh_c[None], p["weight_ih"], p["weight_hh"])
    return hs[1:], (hs[1], cs[1]), cache


def _lstm_loop(x: np.ndarray, state: tuple, p: dict) -> tuple[np.ndarray, tuple, LSTMCache]:
    """lstm_forward for any T: the input projection for all steps, then only the recurrence in the loop."""
    h0, c0 = state
    T, N, _ = x.shape
    H = h0.shape[1]
    hs = np.empty((T + 1, N, H), dtype=x.dtype)  # (T+1,N,H)
    cs = np.empty((T + 1, N, H), dtype=x.dtype)  # (T+1,N,H)
    hs[0], cs[0] = h0, c0
    gates = np.empty((T, N, 4 * H), dtype=x.dtype)  # (T,N,4H) pre-activations, then activations, in place
    tanh_c = np.empty((T, N, H), dtype=x.dtype)  # (T,N,H)
    scale, offset = _gate_scale("lstm", H, x.dtype)  # (4H,) each: 1/2 and 1/2 on i, f, o; 1 and 0 on g
    W_ih, W_hhT, prescaled = _recurrent_weights(p, T, scale)
    bias = p["bias_ih"] + p["bias_hh"]  # (4H,)
    _project(x, W_ih, bias * scale if prescaled else bias, out=gates)
    hW, ig = np.empty((N, 4 * H), dtype=x.dtype), np.empty((N, H), dtype=x.dtype)
    for t in range(T):
        a = gates[t]  # (N,4H)
        np.matmul(hs[t], W_hhT, out=hW)
        a += hW
        if not prescaled:
            a *= scale
        np.tanh(a, out=a)  # now tanh(a/2) on i, f, o; tanh(a) on g
        a *= scale  # whole rows rather than per-gate slices: two contiguous passes instead of strided ones
        a += offset
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        np.multiply(f, cs[t], out=cs[t + 1])
        np.multiply(i, g, out=ig)
        cs[t + 1] += ig
        np.tanh(cs[t + 1], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=hs[t + 1])
    cache = LSTMCache(x, hs, cs, gates, tanh_c, p["weight_ih"], p["weight_hh"])
    return hs[1:], (hs[T], cs[T]), cache


def lstm_backward(dhs: np.ndarray, cache: LSTMCache) -> tuple[np.ndarray, tuple, dict]:
    """dhs (T,N,H) -> dx (T,N,D), (dh0, dc0), grads under the parameter names."""
    x, hs, cs, gates, tanh_c, W_ih, W_hh = cache
    T, N, H = dhs.shape
    _, offset = _gate_scale("lstm", H, dhs.dtype)
    shift = 1.0 - 2.0 * offset  # (4H,) 0 on i, f, o and 1 on g: (1 - y)(y + shift) is σ' = y(1-y) or tanh' = 1 - y²
    da = np.empty_like(gates)  # (T,N,4H) dLoss/d(pre-activation)
    dh = np.zeros((N, H), dtype=dhs.dtype)  # (N,H) arriving at h_t from step t+1
    dc = np.zeros((N, H), dtype=dhs.dtype)  # (N,H) arriving at c_t from step t+1
    dgate, local = np.empty((N, 4 * H), dtype=dhs.dtype), np.empty((N, 4 * H), dtype=dhs.dtype)
    tmp, dtanh = np.empty((N, H), dtype=dhs.dtype), np.empty((N, H), dtype=dhs.dtype)
    di, df, dg, do = dgate[:, :H], dgate[:, H : 2 * H], dgate[:, 2 * H : 3 * H], dgate[:, 3 * H :]
    for t in reversed(range(T)):
        # The local derivatives are formed here, one step at a time, rather than for all T before the loop: the
        # step's gates are then still in cache (whole-sequence passes over the 8 MB `gates` ran from memory).
        y = gates[t]  # (N,4H) i, f, g, o
        i, f, g, o = y[:, :H], y[:, H : 2 * H], y[:, 2 * H : 3 * H], y[:, 3 * H :]
        np.subtract(1.0, y, out=local)
        np.add(y, shift, out=da[t])
        da[t] *= local  # local derivative of every gate
        np.square(tanh_c[t], out=dtanh)
        np.subtract(1.0, dtanh, out=dtanh)  # 1 - tanh(c)²
        dh += dhs[t]  # total gradient at h_t
        np.multiply(dh, o, out=tmp)
        tmp *= dtanh
        dc += tmp  # total gradient at c_t
        np.multiply(dh, tanh_c[t], out=do)
        np.multiply(dc, g, out=di)
        np.multiply(dc, cs[t], out=df)
        np.multiply(dc, i, out=dg)
        da[t] *= dgate  # through the nonlinearities
        dc *= f  # to c_{t-1} through f
        np.matmul(da[t], W_hh, out=dh)  # to h_{t-1}
    return _input_grad(da, W_ih), (dh, dc), _weight_grads(da, x, hs[:-1])
