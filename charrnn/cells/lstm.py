"""The LSTM cell (PyTorch gate order i, f, g, o), forward and backward. Shapes: T time, N batch, D input,
H hidden.

The loops here reorganise `reference.lstm_forward` and `reference.lstm_backward` (charrnn/cells/reference.py: the
equations, one step and one gate at a time; read those first, the tests hold this code to them) in three ways:
- Hoisted projections: the input part of every gate for all T steps is computed before the forward loop, and
  the weight gradients are one GEMM each after the backward loop; only the recurrence stays inside the loops.
- Gate-major layout: inside the loops a step's gates are one (4H,N) block, W_hh @ hᵀ, rather than h @ W_hhᵀ
  (N,4H). OpenBLAS runs the recurrent GEMMs faster in that orientation at the default sizes, and every gate, h
  and c is then a contiguous (H,N) block, which numpy's elementwise calls handle much faster than an (N,H) column
  slice of an (N,4H) row. The interface stays time-major (T,N,·): one transposing copy of hs per call converts.
- One shared tanh pass: i, f, o are sigmoids, σ(a) = (1 + tanh(a/2)) / 2, so all four gates go through one
  np.tanh call (`_gate_nonlinearity`), with the sigmoid gates' rows of the weights halved in per-call copies.
The T = 1 step for sampling comes last. Why and by how much: BENCHMARKS.md, "What each change bought" (the
gate-major and one-tanh rows) and "Where an LSTM step goes".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from charrnn.cells.common import (FUSED, _gate_nonlinearity, _gate_scale, _gate_scale_blocks, _gm_input_grad,
                                  _gm_weight_grads, _odd_pitch)

# ----------------------------------------------------------------------------------------------------------------
# LSTM, PyTorch's gate order i, f, g, o:
#   i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)   with a = W_ih x + b_ih + W_hh h + b_hh
#   c' = f ∗ c + i ∗ g,  h' = o ∗ tanh(c')


class LSTMCache(NamedTuple):
    x: np.ndarray  # (T,N,D) inputs
    hs: np.ndarray  # (T+1,N,H) h_0 .. h_T, time-major (the weight gradient's operand)
    cs: np.ndarray  # (T+1,H,N) c_0 .. c_T, gate-major
    gates: np.ndarray  # (T,4H,N) i, f, g, o after their nonlinearities
    tanh_c: np.ndarray  # (T,H,N) tanh(c_t)
    W_ih: np.ndarray  # (4H,D)
    W_hh: np.ndarray  # (4H,H)


def lstm_forward(x: np.ndarray, state: tuple, p: dict, need_cache: bool = True) -> tuple[np.ndarray, tuple, LSTMCache]:
    """x (T,N,D), state (h0, c0) -> hs (T,N,H), final state (h_T, c_T), cache (None if not need_cache)."""
    if x.shape[0] == 1 and not need_cache:
        return _lstm_step(x, state, p)
    hs, final, cache = _lstm_loop(x, state, p)
    return hs, final, cache if need_cache else None


def _lstm_loop(x: np.ndarray, state: tuple, p: dict) -> tuple[np.ndarray, tuple, LSTMCache]:
    """lstm_forward for any T: `reference.lstm_forward` reorganised (module docstring): the input projection of
    all steps hoisted before the loop, gate-major (4H,N) blocks inside it, one tanh pass for the four gates."""
    h0, c0 = state
    T, N, D = x.shape
    H = h0.shape[1]
    hsT = np.empty((T + 1, H, N), dtype=x.dtype)  # (T+1,H,N)
    cs = np.empty((T + 1, H, N), dtype=x.dtype)  # (T+1,H,N)
    hsT[0], cs[0] = h0.T, c0.T
    gates = np.empty((T, 4 * H, N), dtype=x.dtype)  # (T,4H,N) pre-activations, then activations, in place
    tanh_c = np.empty((T, H, N), dtype=x.dtype)  # (T,H,N)
    s, _ = _gate_scale("lstm", H, x.dtype)  # (4H,) 1/2 on i, f, o; 1 on g
    scale, offset = _gate_scale_blocks("lstm", H, N, x.dtype)  # (4H,N) each: s and 1 - s in every column
    # Per-call copies with the sigmoid gates' rows halved: the pre-activations come out as a/2 there (exact).
    W_ih, W_hh = p["weight_ih"] * s[:, None], p["weight_hh"] * s[:, None]  # (4H,D), (4H,H)
    # The input part of every gate for all steps, before the loop: T GEMMs in one numpy call, each writing its
    # step's contiguous (4H,N) block. One (4H,T·N) GEMM is no faster, and the loop would then read its column
    # blocks, 4H rows T·N elements apart, which is slow (see BENCHMARKS.md, "What each change bought").
    np.matmul(W_ih, x.transpose(0, 2, 1), out=gates)
    bias = np.repeat(((p["bias_ih"] + p["bias_hh"]) * s)[:, None], N, axis=1)  # (4H,N) the bias in every column
    hW, ig = np.empty((4 * H, N), dtype=x.dtype), np.empty((H, N), dtype=x.dtype)  # (4H,N), (H,N) scratch
    for t in range(T):
        a = gates[t]  # (4H,N)
        np.matmul(W_hh, hsT[t], out=hW)
        a += hW
        a += bias
        _gate_nonlinearity(a, scale, offset, prescaled=True)  # i, f, g, o; whole (4H,N) blocks, no broadcasting
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        np.multiply(f, cs[t], out=cs[t + 1])
        np.multiply(i, g, out=ig)
        cs[t + 1] += ig
        np.tanh(cs[t + 1], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=hsT[t + 1])
    hs = np.ascontiguousarray(hsT.transpose(0, 2, 1))  # (T+1,N,H) time-major again
    cache = LSTMCache(x, hs, cs, gates, tanh_c, p["weight_ih"], p["weight_hh"])
    return hs[1:], (hs[T], np.ascontiguousarray(cs[T].T)), cache


def lstm_activations(cache: LSTMCache) -> dict[str, np.ndarray]:
    """What a forward computed, from its cache: {"h", "c", "i", "f", "g", "o": (T,N,H) time-major views}, each at
    every step after its input (h_1 .. h_T, c_1 .. c_T, the gates after their nonlinearities). For
    `charrnn inspect`; the one place outside this module that needs to know the cache's layout asks here."""
    H = cache.cs.shape[1]
    gates = cache.gates.transpose(0, 2, 1)  # (T,N,4H)
    acts = {"h": cache.hs[1:], "c": cache.cs[1:].transpose(0, 2, 1)}
    acts.update({name: gates[:, :, k * H : (k + 1) * H] for k, name in enumerate("ifgo")})
    return acts


def lstm_backward(dhs: np.ndarray, cache: LSTMCache) -> tuple[np.ndarray, tuple, dict]:
    """dhs (T,N,H) -> dx (T,N,D), (dh0, dc0), grads under the parameter names.

    `reference.lstm_backward` reorganised as the forward is: gate-major per step, each step's pre-activation
    gradient written into one (4H,T·N) array, and the weight and input gradients one GEMM each after the loop.
    """
    x, hs, cs, gates, tanh_c, W_ih, W_hh = cache
    T, N, H = dhs.shape
    dhsT = np.ascontiguousarray(dhs.transpose(0, 2, 1))  # (T,H,N)
    _, offset = _gate_scale_blocks("lstm", H, N, dhs.dtype)
    shift = 1.0 - 2.0 * offset  # (4H,N) 0 on i, f, o and 1 on g: (1 - y)(y + shift) is σ' = y(1-y) or tanh' = 1 - y²
    # dLoss/d(pre-activation) for all steps, (4H,T·N): step t's (4H,N) block is columns t·N .. t·N+N, so the
    # weight gradients after the loop are one plain GEMM each; BLAS reads a block through its leading dimension.
    da = _odd_pitch(4 * H, T * N, dhs.dtype)
    dh = np.zeros((H, N), dtype=dhs.dtype)  # (H,N) arriving at h_t from step t+1
    dc = np.zeros((H, N), dtype=dhs.dtype)  # (H,N) arriving at c_t from step t+1
    dgate, local, one_minus_y = (np.empty((4 * H, N), dtype=dhs.dtype) for _ in range(3))  # (4H,N) each
    tmp, dtanh = np.empty((H, N), dtype=dhs.dtype), np.empty((H, N), dtype=dhs.dtype)  # (H,N) each
    di, df, dg, do = dgate[:H], dgate[H : 2 * H], dgate[2 * H : 3 * H], dgate[3 * H :]
    W_hhT = W_hh.T  # (H,4H) a view: BLAS reads it transposed as fast as a copy
    for t in reversed(range(T)):
        # The local derivatives are formed here, one step at a time, rather than for all T before the loop: the
        # step's gates are then still in cache (whole-sequence passes over the 8 MB `gates` ran from memory).
        y = gates[t]  # (4H,N) i, f, g, o
        i, f, g, o = y[:H], y[H : 2 * H], y[2 * H : 3 * H], y[3 * H :]
        np.subtract(1.0, y, out=one_minus_y)
        np.add(y, shift, out=local)
        local *= one_minus_y  # the local derivative of every gate: σ' on i, f, o, tanh' on g
        np.square(tanh_c[t], out=dtanh)
        np.subtract(1.0, dtanh, out=dtanh)  # 1 - tanh(c)²
        dh += dhsT[t]  # total gradient at h_t
        np.multiply(dh, o, out=tmp)
        tmp *= dtanh
        dc += tmp  # total gradient at c_t
        np.multiply(dh, tanh_c[t], out=do)
        np.multiply(dc, g, out=di)
        np.multiply(dc, cs[t], out=df)
        np.multiply(dc, i, out=dg)
        da_t = da[:, t * N : (t + 1) * N]  # (4H,N) view, row stride T·N
        np.multiply(local, dgate, out=da_t)  # through the nonlinearities
        dc *= f  # to c_{t-1} through f
        np.matmul(W_hhT, da_t, out=dh)  # to h_{t-1}
    dstate = (np.ascontiguousarray(dh.T), np.ascontiguousarray(dc.T))
    return _gm_input_grad(da, W_ih, T, N), dstate, _gm_weight_grads(da, x, hs[:-1])


# ----------------------------------------------------------------------------------------------------------------
# T = 1 without a cache: the sampling step (one call per character, via model.for_stepping's fused weight)


def lstm_fuse(W_ih: np.ndarray, W_hh: np.ndarray) -> np.ndarray:
    """[W_ih | W_hh] (4H,D+H): the weight `_lstm_step` multiplies [x; h] by, one product instead of two."""
    return np.concatenate((W_ih, W_hh), axis=1)


def _lstm_step(x: np.ndarray, state: tuple, p: dict) -> tuple[np.ndarray, tuple, None]:
    """`_lstm_loop` for T = 1 without a cache (sampling, one call per character), bit for bit.

    The same products in the same orientation, without the loop's per-call weight copies (a megabyte per
    character would cost more than the step): the pre-activations are scaled after the GEMMs instead of the
    weights before them, which is exact (the scale is 1/2 or 1), so the bits agree. With model.for_stepping's
    fused [W_ih | W_hh] in p, the two products are one, and the result agrees up to rounding.
    """
    h0, c0 = state
    if h0.dtype != x.dtype or c0.dtype != x.dtype:  # cast as the loop's hs, cs do
        h0, c0 = h0.astype(x.dtype), c0.astype(x.dtype)
    N, H = h0.shape
    scale, offset = _gate_scale_blocks("lstm", H, N, x.dtype)  # (4H,N) each
    fused = p.get(FUSED)  # (4H,D+H) from lstm_fuse via model.for_stepping, when the caller made it
    if fused is not None:  # one product over [x; h], big enough for OpenBLAS to thread at H 256: equal up to rounding
        a = fused @ np.concatenate((x[0].T, h0.T))  # (4H,N)
    else:
        a = p["weight_ih"] @ x[0].T  # (4H,N) input part of every gate
        a += p["weight_hh"] @ np.ascontiguousarray(h0.T)  # (4H,N) + hidden part (hᵀ contiguous, as in the loop)
    a += (p["bias_ih"] + p["bias_hh"])[:, None]
    _gate_nonlinearity(a, scale, offset, prescaled=False)  # i, f, g, o after their nonlinearities
    i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
    c = f * c0.T  # (H,N)
    c += i * g
    h = o * np.tanh(c)  # (H,N)
    return h.T[None], (h.T, c.T), None
