"""The GRU cell (PyTorch's variant, r applied to W_hn h + b_hn), forward and backward. Shapes: T time,
N batch, D input, H hidden.

The loops here reorganise `reference.gru_forward` and `reference.gru_backward` (charrnn/cells/reference.py) the
way lstm.py reorganises the LSTM's: the input projections hoisted out of the loops, gate-major (3H,N) blocks
inside them (W_hh @ hᵀ, the faster GEMM orientation, with r, z, n and h contiguous (H,N) blocks), and r and z
through the shared tanh pass. Unlike the LSTM's, n's hidden part (W_hn h + b_hn) must stay apart from its input
part, because r multiplies it: the forward keeps it (`ghn`), the backward gives it a gradient of its own. The
T = 1 step for sampling comes last. Why and by how much: BENCHMARKS.md, "What each change bought" (the GRU rows).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from charrnn.cells.common import FUSED, _gate_nonlinearity, _gate_scale, _gate_scale_blocks, _gm_input_grad, _odd_pitch

# ----------------------------------------------------------------------------------------------------------------
# GRU, exactly PyTorch's variant (r applied to the hidden projection, bias included):
#   r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
#   n = tanh(W_in x + b_in + r ∗ (W_hn h + b_hn)),  h' = (1 − z) ∗ n + z ∗ h


class GRUCache(NamedTuple):
    x: np.ndarray  # (T,N,D) inputs
    hs: np.ndarray  # (T+1,N,H) h_0 .. h_T, time-major (the weight gradient's operand)
    hsT: np.ndarray  # (T+1,H,N) the same, gate-major (the backward loop's operand)
    gates: np.ndarray  # (T,3H,N) r, z, n after their nonlinearities
    ghn: np.ndarray  # (T,H,N) W_hn h + b_hn
    W_ih: np.ndarray  # (3H,D)
    W_hh: np.ndarray  # (3H,H)


def gru_forward(x: np.ndarray, state: tuple, p: dict, need_cache: bool = True) -> tuple[np.ndarray, tuple, GRUCache]:
    """x (T,N,D), state (h0,) -> hs (T,N,H), final state (h_T,), cache (None if not need_cache)."""
    if x.shape[0] == 1 and not need_cache and FUSED in p:
        return _gru_step(x, state, p)
    hs, final, cache = _gru_loop(x, state, p)
    return hs, final, cache if need_cache else None


def _gru_loop(x: np.ndarray, state: tuple, p: dict) -> tuple[np.ndarray, tuple, GRUCache]:
    """gru_forward for any T: `reference.gru_forward` reorganised (module docstring): the input projection of all
    steps hoisted before the loop, gate-major (3H,N) blocks inside it, r and z through one tanh pass."""
    (h0,) = state
    T, N, D = x.shape
    H = h0.shape[1]
    hsT = np.empty((T + 1, H, N), dtype=x.dtype)  # (T+1,H,N)
    hsT[0] = h0.T
    s, _ = _gate_scale("gru", H, x.dtype)  # (3H,) 1/2 on r, z; 1 on n
    # Per-call copies with r's and z's rows halved, so that their pre-activations come out as a/2 (exact), except
    # at T = 1, where copying the weights would cost more than the step: there r, z are halved after.
    prescaled = T > 1
    W_ih, W_hh = p["weight_ih"], p["weight_hh"]  # (3H,D), (3H,H)
    if prescaled:
        W_ih, W_hh = W_ih * s[:, None], W_hh * s[:, None]
    bias = p["bias_ih"].copy()  # (3H,) b_hr and b_hz join the input side; b_hn must stay inside r ∗ (...)
    bias[: 2 * H] += p["bias_hh"][: 2 * H]
    if prescaled:
        bias *= s
    # The input part of r, z (halved) and n, one block per step; the loop turns each block into r, z, n in place.
    gates = np.matmul(W_ih, x.transpose(0, 2, 1))  # (T,3H,N)
    gates += np.repeat(bias[:, None], N, axis=1)  # (3H,N) block, not a (3H,1) column broadcast (see _gate_scale_blocks)
    ghn = np.empty((T, H, N), dtype=x.dtype)  # (T,H,N)
    b_hn = np.repeat(p["bias_hh"][2 * H :, None], N, axis=1)  # (H,N) in every column: an equal-shape add
    gh, tmp = np.empty((3 * H, N), dtype=x.dtype), np.empty((H, N), dtype=x.dtype)  # (3H,N), (H,N) scratch
    for t in range(T):
        y = gates[t]  # (3H,N) the input part, then r, z, n
        rz = y[: 2 * H]  # (2H,N) r and z, contiguous
        np.matmul(W_hh, hsT[t], out=gh)
        rz += gh[: 2 * H]
        _gate_nonlinearity(rz, 0.5, 0.5, prescaled)  # r, z: every row a sigmoid's
        r, z, n = y[:H], y[H : 2 * H], y[2 * H :]
        np.add(gh[2 * H :], b_hn, out=ghn[t])
        np.multiply(r, ghn[t], out=tmp)
        tmp += n  # n's input part, still in the block
        np.tanh(tmp, out=n)
        np.subtract(hsT[t], n, out=tmp)  # h' = n + z ∗ (h - n)
        tmp *= z
        np.add(n, tmp, out=hsT[t + 1])
    hs = np.ascontiguousarray(hsT.transpose(0, 2, 1))  # (T+1,N,H) time-major again
    return hs[1:], (hs[T],), GRUCache(x, hs, hsT, gates, ghn, p["weight_ih"], p["weight_hh"])


def gru_activations(cache: GRUCache) -> dict[str, np.ndarray]:
    """What a forward computed, from its cache: {"h", "r", "z", "n": (T,N,H) time-major views}, each at every step
    after its input (h_1 .. h_T, the gates after their nonlinearities). For `charrnn inspect` (see
    lstm_activations)."""
    H = cache.hs.shape[2]
    gates = cache.gates.transpose(0, 2, 1)  # (T,N,3H)
    acts = {"h": cache.hs[1:]}
    acts.update({name: gates[:, :, k * H : (k + 1) * H] for k, name in enumerate("rzn")})
    return acts


def gru_backward(dhs: np.ndarray, cache: GRUCache) -> tuple[np.ndarray, tuple, dict]:
    """dhs (T,N,H) -> dx (T,N,D), (dh0,), grads under the parameter names.

    `reference.gru_backward` reorganised as the forward is: gate-major steps whose gradients go into (·,T·N)
    arrays, then the weight and input gradients one GEMM each after the loop."""
    x, hs, hsT, gates, ghn, W_ih, W_hh = cache
    T, N, H = dhs.shape
    dhsT = np.ascontiguousarray(dhs.transpose(0, 2, 1))  # (T,H,N)
    _, offset = _gate_scale_blocks("gru", H, N, dhs.dtype)
    shift = 1.0 - 2.0 * offset  # (3H,N) 0 on r, z and 1 on n: (1 - y)(y + shift) is σ' = y(1-y) or tanh' = 1 - y²
    # For all steps, (·,T·N), step t's (·,N) block in columns t·N .. t·N+N (see lstm_backward):
    dxa = _odd_pitch(3 * H, T * N, dhs.dtype)  # dLoss/d(input part of r, z, n)
    dghn = _odd_pitch(H, T * N, dhs.dtype)  # dLoss/d(W_hn h + b_hn); for r, z the hidden part's is dxa's
    dh = np.zeros((H, N), dtype=dhs.dtype)  # (H,N) arriving at h_t from step t+1
    tmp, hW = np.empty((H, N), dtype=dhs.dtype), np.empty((H, N), dtype=dhs.dtype)  # (H,N) each
    local, one_minus_y, da = (np.empty((3 * H, N), dtype=dhs.dtype) for _ in range(3))  # (3H,N) each
    local_r, local_z, local_n = local[:H], local[H : 2 * H], local[2 * H :]
    dar, daz, dan = da[:H], da[H : 2 * H], da[2 * H :]
    W_hhT = W_hh.T  # (H,3H) a view
    for t in reversed(range(T)):
        y = gates[t]  # (3H,N) r, z, n
        r, z, n = y[:H], y[H : 2 * H], y[2 * H :]
        np.subtract(1.0, y, out=one_minus_y)  # local derivatives per step, while the step's gates are in cache
        np.add(y, shift, out=local)
        local *= one_minus_y  # σ' on r, z, tanh' on n
        dh += dhsT[t]  # total gradient at h_t
        np.subtract(1.0, z, out=tmp)  # dn = dh ∗ (1 - z)
        tmp *= dh
        np.multiply(local_n, tmp, out=dan)
        np.subtract(hsT[t], n, out=tmp)  # dz = dh ∗ (h - n)
        tmp *= dh
        np.multiply(local_z, tmp, out=daz)
        np.multiply(dan, ghn[t], out=tmp)  # dr = dan ∗ (W_hn h + b_hn)
        np.multiply(local_r, tmp, out=dar)
        cols = slice(t * N, (t + 1) * N)
        dxa[:, cols] = da  # dLoss/d(input parts)
        dgh, dghn_t = da, dan  # in place from here: dLoss/d(hidden parts); r's and z's equal their input parts'
        dghn_t *= r  # n's hidden part enters as r ∗ (W_hn h + b_hn)
        dghn[:, cols] = dghn_t
        dh *= z  # to h_{t-1}: directly through z ∗ h, and through the hidden projection
        np.matmul(W_hhT, dgh, out=hW)
        dh += hW
    db_ih = dxa.sum(axis=1)  # (3H,)
    h_prev = hs[:-1].reshape(T * N, H)  # (T·N,H)
    grads = {
        "weight_ih": dxa @ x.reshape(T * N, -1),  # (3H,D)
        "weight_hh": np.concatenate((dxa[: 2 * H] @ h_prev, dghn @ h_prev)),  # (3H,H)
        "bias_ih": db_ih,
        "bias_hh": np.concatenate((db_ih[: 2 * H], dghn.sum(axis=1))),  # (3H,)
    }
    return _gm_input_grad(dxa, W_ih, T, N), (np.ascontiguousarray(dh.T),), grads


# ----------------------------------------------------------------------------------------------------------------
# T = 1 without a cache: the sampling step (one call per character, via model.for_stepping's fused weight)


def gru_fuse(W_ih: np.ndarray, W_hh: np.ndarray) -> np.ndarray:
    """The (4H,D+H) weight `_gru_step` multiplies [x; h] by:

        rows 0:2H [W_ir, W_iz | W_hr, W_hz],  rows 2H:3H [W_in | 0],  rows 3H:4H [0 | W_hn]

    r and z take the sum of both parts; n needs W_in x and W_hn h apart, so they get rows of their own.
    """
    H, D = W_hh.shape[1], W_ih.shape[1]
    fused = np.zeros((4 * H, D + H), dtype=W_ih.dtype)  # (4H,D+H)
    fused[: 2 * H, :D], fused[: 2 * H, D:] = W_ih[: 2 * H], W_hh[: 2 * H]
    fused[2 * H : 3 * H, :D] = W_ih[2 * H :]
    fused[3 * H :, D:] = W_hh[2 * H :]
    return fused


def _gru_step(x: np.ndarray, state: tuple, p: dict) -> tuple[np.ndarray, tuple, None]:
    """One step (T = 1) without a cache, with `gru_fuse`'s weight (sampling, beam search, via model.for_stepping):
    one matrix-vector product over [x; h] gives r's and z's pre-activations, W_in x and W_hn h (n needs
    the last two apart). The same equations as the loop; the sums in another order, so equal up to rounding.
    """
    (h0,) = state
    if h0.dtype != x.dtype:  # cast as the loop's hs does
        h0 = h0.astype(x.dtype)
    H = h0.shape[1]
    b_ih, b_hh = p["bias_ih"], p["bias_hh"]
    g = p[FUSED] @ np.concatenate((x[0].T, h0.T))  # (4H,N)
    rz, gx_n, ghn = g[: 2 * H], g[2 * H : 3 * H], g[3 * H :]  # (2H,N), (H,N), (H,N)
    rz += (b_ih[: 2 * H] + b_hh[: 2 * H])[:, None]
    _gate_nonlinearity(rz, 0.5, 0.5, prescaled=False)  # r, z
    r, z = rz[:H], rz[H:]
    ghn += b_hh[2 * H :, None]  # W_hn h + b_hn
    gx_n += b_ih[2 * H :, None]
    ghn *= r
    gx_n += ghn
    n = np.tanh(gx_n)  # (H,N)
    h = h0.T - n  # (H,N) h' = n + z ∗ (h - n)
    h *= z
    h += n
    return h.T[None], (h.T,), None
