"""The GRU cell (PyTorch's variant, r applied to W_hn h + b_hn), forward and backward. Shapes: T time,
N batch, D input, H hidden."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from charrnn.cells.common import _gate_scale, _recurrent_weights, _project, _weight_grads, _input_grad

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
