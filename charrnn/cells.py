"""Recurrent cells: vanilla RNN, LSTM and GRU, forward and backward side by side.

Shapes: T time, N batch, D input, H hidden, G gate blocks (1 rnn, 4 lstm, 3 gru).
Arrays are time-major, x (T,N,D), so every step reads and writes one contiguous (N,·) slice.

Parameters follow PyTorch's names and layouts (`weight_ih` (G·H,D), `weight_hh` (G·H,H), `bias_ih`, `bias_hh`
(G·H,)), gate order LSTM i, f, g, o and GRU r, z, n with r applied to (W_hn h + b_hn), so checkpoints interoperate
with `nn.RNN/LSTM/GRU`. A state is a tuple: (h,) for rnn and gru, (h, c) for lstm, each (N,H).

Speed is designed in (measurements in BENCHMARKS.md): only the recurrence runs inside the time loop. The input
projection of all T steps is one GEMM before it; the weight gradients are one GEMM each after it; elementwise work
writes into preallocated whole-sequence arrays with `out=`, so the loop allocates nothing. For T > 1 the recurrent
GEMM multiplies by a C-contiguous copy of W_hh.T made once per call: OpenBLAS runs h @ W.T about 25% slower when
W.T is a transposed view. All gates share ONE tanh pass: σ(a) = (1 + tanh(a/2)) / 2, so the sigmoid gates' rows
of the weights and biases are halved in those per-call copies (see `_recurrent_weights`; at T = 1 the
pre-activations are scaled instead) and the sigmoid gates are fixed up with one multiply-add. numpy's float32 tanh
is cheaper here than the exp, add and reciprocal of 1 / (1 + exp(-a)), and it saturates to exactly ±1 without
overflow. Backward recomputes nothing: the cache holds each gate after its nonlinearity, and the local derivatives
are formed from it one step at a time inside the loop, while that step's gates are in cache.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import numpy as np


def init_params(rng: np.random.Generator, D: int, H: int, G: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """PyTorch's initialisation: every weight and bias uniform in ±1/sqrt(H)."""
    k = 1.0 / np.sqrt(H)
    shapes = {"weight_ih": (G * H, D), "weight_hh": (G * H, H), "bias_ih": (G * H,), "bias_hh": (G * H,)}
    return {name: rng.uniform(-k, k, size=shape).astype(dtype) for name, shape in shapes.items()}


@functools.lru_cache(maxsize=None)
def _gate_scale(cell: str, H: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset), each (G·H,) and read-only, built once per shape (sampling calls forward per character).

    scale is 1/2 on the rows of the sigmoid gates (lstm i, f, o; gru r, z) and 1 on tanh rows (lstm g, gru n);
    offset = 1 - scale, so `tanh(scale * a) * scale + offset` is σ(a) on sigmoid rows and tanh(a) on tanh rows.
    """
    half = {"lstm": [(0, 2 * H), (3 * H, 4 * H)], "gru": [(0, 2 * H)]}[cell]
    scale = np.ones({"lstm": 4, "gru": 3}[cell] * H, dtype=dtype)
    for lo, hi in half:
        scale[lo:hi] = 0.5
    offset = 1.0 - scale
    scale.flags.writeable = offset.flags.writeable = False
    return scale, offset


@functools.lru_cache(maxsize=None)
def _gate_scale_rows(cell: str, H: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """`_gate_scale` as (1,G·H) rows. At N = 1 an (N,G·H) ∘ (1,G·H) ufunc call costs ~1.1 µs and an
    (N,G·H) ∘ (G·H,) one ~1.55 µs (numpy's broadcasting setup for unequal ndim); same values, same results."""
    return tuple(v[None] for v in _gate_scale(cell, H, dtype))


def _recurrent_weights(p: dict, T: int, scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(W_ih (G·H,D), W_hh.T (H,G·H), prescaled) for a forward of T steps.

    For T > 1 these are per-call copies with `scale` folded into the rows, W_hh.T made C-contiguous (the fast GEMM
    layout), and prescaled is True: the pre-activations come out already halved on sigmoid rows. For T = 1
    (sampling) copying a megabyte per character would cost more than the step itself, so the parameters' own
    views are returned, prescaled is False and the caller multiplies the pre-activations by `scale` instead.
    """
    W_ih, W_hh = p["weight_ih"], p["weight_hh"]
    if T == 1:
        return W_ih, W_hh.T, False
    W_hhT = np.empty(W_hh.shape[::-1], dtype=W_hh.dtype)  # (H,G·H) C-contiguous
    if scale is None:
        np.copyto(W_hhT, W_hh.T)
        return W_ih, W_hhT, True
    np.multiply(W_hh.T, scale, out=W_hhT)
    return W_ih * scale[:, None], W_hhT, True


def _project(x: np.ndarray, W_ih: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """out (T,N,G·H) <- x (T,N,D) @ W_ih.T + bias: the input part of every gate for all T steps, one GEMM."""
    T, N, D = x.shape
    np.matmul(x.reshape(T * N, D), W_ih.T, out=out.reshape(T * N, -1))
    out += bias


def _weight_grads(da: np.ndarray, x: np.ndarray, h_prev: np.ndarray, dgh: np.ndarray | None = None) -> dict:
    """Weight and bias gradients from the gate pre-activation gradients, one GEMM per weight.

    da (T,N,G·H) is dLoss/d(input part of the gates), dgh the same for the hidden part (defaults to da),
    x (T,N,D) the inputs, h_prev (T,N,H) the hidden state each step started from.
    """
    GH = da.shape[-1]
    da2 = da.reshape(-1, GH)  # (T·N,G·H)
    dgh2 = da2 if dgh is None else dgh.reshape(-1, GH)  # (T·N,G·H)
    db_ih = da2.sum(axis=0)  # (G·H,)
    return {
        "weight_ih": da2.T @ x.reshape(da2.shape[0], -1),  # (G·H,D)
        "weight_hh": dgh2.T @ h_prev.reshape(da2.shape[0], -1),  # (G·H,H)
        "bias_ih": db_ih,
        "bias_hh": db_ih.copy() if dgh is None else dgh2.sum(axis=0),  # (G·H,) the same sum when dgh is da
    }


def _input_grad(da: np.ndarray, W_ih: np.ndarray) -> np.ndarray:
    """dx (T,N,D) = da (T,N,G·H) @ W_ih, one GEMM for all steps."""
    T, N, GH = da.shape
    return (da.reshape(T * N, GH) @ W_ih).reshape(T, N, -1)


# ----------------------------------------------------------------------------------------------------------------
# Vanilla RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)


class RNNCache(NamedTuple):
    x: np.ndarray  # (T,N,D) inputs
    hs: np.ndarray  # (T+1,N,H) h_0 .. h_T
    W_ih: np.ndarray  # (H,D)
    W_hh: np.ndarray  # (H,H)


def rnn_forward(x: np.ndarray, state: tuple, p: dict, need_cache: bool = True) -> tuple[np.ndarray, tuple, RNNCache]:
    """x (T,N,D), state (h0,) -> hs (T,N,H), final state (h_T,), cache (None if not need_cache)."""
    (h0,) = state
    T, N, _ = x.shape
    H = h0.shape[1]
    hs = np.empty((T + 1, N, H), dtype=x.dtype)  # (T+1,N,H) h_0 .. h_T
    hs[0] = h0
    a = np.empty((T, N, H), dtype=x.dtype)  # (T,N,H) pre-activations
    _project(x, p["weight_ih"], p["bias_ih"] + p["bias_hh"], out=a)
    _, W_hhT, _ = _recurrent_weights(p, T)  # (H,H)
    hW = np.empty((N, H), dtype=x.dtype)  # (N,H)
    for t in range(T):
        np.matmul(hs[t], W_hhT, out=hW)
        a[t] += hW
        np.tanh(a[t], out=hs[t + 1])
    return hs[1:], (hs[T],), RNNCache(x, hs, p["weight_ih"], p["weight_hh"]) if need_cache else None


def rnn_backward(dhs: np.ndarray, cache: RNNCache) -> tuple[np.ndarray, tuple, dict]:
    """dhs (T,N,H) -> dx (T,N,D), (dh0,), grads under the parameter names."""
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


# ----------------------------------------------------------------------------------------------------------------
# GRU, exactly PyTorch's variant (r applied to the hidden projection, bias included):
#   r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
#   n = tanh(W_in x + b_in + r ∗ (W_hn h + b_hn)),  h' = (1 − z) ∗ n + z ∗ h


class GRUCache(NamedTuple):
    x: np.ndarray  # (T,N,D) inputs
    hs: np.ndarray  # (T+1,N,H) h_0 .. h_T
    gates: np.ndarray  # (T,N,3H) r, z, n after their nonlinearities
    ghn: np.ndarray  # (T,N,H) W_hn h + b_hn
    W_ih: np.ndarray  # (3H,D)
    W_hh: np.ndarray  # (3H,H)


def gru_forward(x: np.ndarray, state: tuple, p: dict, need_cache: bool = True) -> tuple[np.ndarray, tuple, GRUCache]:
    """x (T,N,D), state (h0,) -> hs (T,N,H), final state (h_T,), cache (None if not need_cache)."""
    (h0,) = state
    T, N, _ = x.shape
    H = h0.shape[1]
    hs = np.empty((T + 1, N, H), dtype=x.dtype)  # (T+1,N,H)
    hs[0] = h0
    scale, offset = _gate_scale("gru", H, x.dtype)  # (3H,) each: 1/2 and 1/2 on r, z; 1 and 0 on n
    W_ih, W_hhT, prescaled = _recurrent_weights(p, T, scale)
    bias = p["bias_ih"].copy()  # (3H,) b_hr and b_hz join the input side; b_hn must stay inside r ∗ (...)
    bias[: 2 * H] += p["bias_hh"][: 2 * H]
    xa = np.empty((T, N, 3 * H), dtype=x.dtype)  # (T,N,3H) input part of r, z (halved) and n
    _project(x, W_ih, bias * scale if prescaled else bias, out=xa)
    gates = np.empty((T, N, 3 * H), dtype=x.dtype)  # (T,N,3H) r, z, n
    ghn = np.empty((T, N, H), dtype=x.dtype)  # (T,N,H)
    b_hn = p["bias_hh"][2 * H :]  # (H,)
    gh, tmp = np.empty((N, 3 * H), dtype=x.dtype), np.empty((N, H), dtype=x.dtype)
    for t in range(T):
        a = gates[t]  # (N,3H)
        np.matmul(hs[t], W_hhT, out=gh)
        # r and z are computed with whole-row passes, which also run over the n block (overwritten below): numpy
        # is ~3x slower per element on the strided (N,2H) slice of an (N,3H) row than on the contiguous row.
        np.add(xa[t], gh, out=a)
        if not prescaled:
            a *= scale
        np.tanh(a, out=a)
        a *= scale
        a += offset
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        np.add(gh[:, 2 * H :], b_hn, out=ghn[t])
        np.multiply(r, ghn[t], out=tmp)
        tmp += xa[t, :, 2 * H :]
        np.tanh(tmp, out=n)
        np.subtract(hs[t], n, out=tmp)  # h' = n + z ∗ (h - n)
        tmp *= z
        np.add(n, tmp, out=hs[t + 1])
    return hs[1:], (hs[T],), GRUCache(x, hs, gates, ghn, p["weight_ih"], p["weight_hh"]) if need_cache else None


def gru_backward(dhs: np.ndarray, cache: GRUCache) -> tuple[np.ndarray, tuple, dict]:
    """dhs (T,N,H) -> dx (T,N,D), (dh0,), grads under the parameter names."""
    x, hs, gates, ghn, W_ih, W_hh = cache
    T, N, H = dhs.shape
    shift = np.zeros(3 * H, dtype=dhs.dtype)  # (3H,) 0 on r, z and 1 on n: (1 - y)(y + shift) is σ' or tanh'
    shift[2 * H :] = 1.0
    dxa = np.empty_like(gates)  # (T,N,3H) dLoss/d(input part of r, z, n)
    dgh = np.empty_like(dxa)  # (T,N,3H) dLoss/d(hidden part W_hh h + b_hh)
    dh = np.zeros((N, H), dtype=dhs.dtype)  # (N,H) arriving at h_t from step t+1
    tmp, hW = np.empty((N, H), dtype=dhs.dtype), np.empty((N, H), dtype=dhs.dtype)
    local = np.empty((N, 3 * H), dtype=dhs.dtype)  # (N,3H)
    for t in reversed(range(T)):
        y = gates[t]  # (N,3H) r, z, n
        r, z, n = y[:, :H], y[:, H : 2 * H], y[:, 2 * H :]
        dar, daz, dan = dxa[t, :, :H], dxa[t, :, H : 2 * H], dxa[t, :, 2 * H :]
        np.subtract(1.0, y, out=local)  # local derivatives per step, while the step's gates are in cache (LSTM)
        np.add(y, shift, out=dxa[t])
        dxa[t] *= local
        dh += dhs[t]  # total gradient at h_t
        np.subtract(1.0, z, out=tmp)  # dn = dh ∗ (1 - z)
        tmp *= dh
        dan *= tmp
        np.subtract(hs[t], n, out=tmp)  # dz = dh ∗ (h - n)
        tmp *= dh
        daz *= tmp
        np.multiply(dan, ghn[t], out=tmp)  # dr = dan ∗ (W_hn h + b_hn)
        dar *= tmp
        dgh[t, :, : 2 * H] = dxa[t, :, : 2 * H]
        np.multiply(dan, r, out=dgh[t, :, 2 * H :])
        dh *= z  # to h_{t-1}: directly through z ∗ h, and through the hidden projection
        np.matmul(dgh[t], W_hh, out=hW)
        dh += hW
    return _input_grad(dxa, W_ih), (dh,), _weight_grads(dxa, x, hs[:-1], dgh)


# ----------------------------------------------------------------------------------------------------------------


class Cell(NamedTuple):
    gates: int  # G: gate blocks in weight_ih / weight_hh
    states: int  # arrays in a state tuple: 1 (h) or 2 (h, c)
    forward: Callable
    backward: Callable


CELLS = {
    "rnn": Cell(1, 1, rnn_forward, rnn_backward),
    "lstm": Cell(4, 2, lstm_forward, lstm_backward),
    "gru": Cell(3, 1, gru_forward, gru_backward),
}
