"""Reference cells: the equations, one time step and one gate at a time, and nothing else.

These are the definitions that the fast loops in rnn.py, lstm.py and gru.py reorganise for speed; the tests hold
the fast cells to them (forward, and gradients). Read these first. Shapes: T time, N batch, D input, H hidden.

The interface is the fast cells': x (T,N,D), a state tuple ((h,) or (h, c), each (N,H)) and the parameters under
PyTorch's names -> hs (T,N,H), the final state, a cache; backward(dhs, cache) -> dx, dstate, grads. Each step is
batch-first, (N,·) @ Wᵀ, exactly as the equations in the cell modules read. Nothing is hoisted out of the loop,
packed, scaled or written in place, so this code is slow; training and sampling never call it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np


def sigmoid(a: np.ndarray) -> np.ndarray:
    """σ(a) = 1 / (1 + exp(-a)). For a << 0, exp(-a) overflows to inf and the result is exactly 0, as it should be."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-a))


def gate_params(p: dict, gates: str) -> dict[str, tuple[np.ndarray, ...]]:
    """{gate: (W_i (H,D), W_h (H,H), b_i (H,), b_h (H,))}: each gate's block of rows of the packed parameters,
    in the packing order `gates` ("ifgo" for the LSTM, "rzn" for the GRU)."""
    blocks = (np.split(p[name], len(gates)) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    return dict(zip(gates, zip(*blocks)))


def input_part(gate: tuple, x_t: np.ndarray) -> np.ndarray:
    """W_i x + b_i for a gate's parameters, x_t (N,D) -> (N,H)."""
    W_i, _, b_i, _ = gate
    return x_t @ W_i.T + b_i


def hidden_part(gate: tuple, h: np.ndarray) -> np.ndarray:
    """W_h h + b_h for a gate's parameters, h (N,H) -> (N,H)."""
    _, W_h, _, b_h = gate
    return h @ W_h.T + b_h


# ----------------------------------------------------------------------------------------------------------------
# Vanilla RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)


def rnn_forward(x: np.ndarray, state: tuple, p: dict) -> tuple[np.ndarray, tuple, tuple]:
    """x (T,N,D), (h0,) -> hs (T,N,H), (h_T,), cache (x, h_0 .. h_T, p)."""
    (h,) = state
    W_ih, W_hh, b_ih, b_hh = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
    hs = [h]
    for x_t in x:
        h = np.tanh(x_t @ W_ih.T + b_ih + h @ W_hh.T + b_hh)
        hs.append(h)
    return np.stack(hs[1:]), (h,), (x, np.stack(hs), p)


def rnn_backward(dhs: np.ndarray, cache: tuple) -> tuple[np.ndarray, tuple, dict]:
    """dhs (T,N,H) -> dx (T,N,D), (dh0,), grads under the parameter names. Backpropagation through time."""
    x, hs, p = cache
    dx, grads = np.zeros_like(x), {name: np.zeros_like(value) for name, value in p.items()}
    dh_next = np.zeros_like(hs[0])  # what arrives at h_t from step t+1
    for t in reversed(range(len(x))):
        dh = dhs[t] + dh_next  # total gradient at h_t
        da = dh * (1 - hs[t + 1] ** 2)  # through tanh: tanh' = 1 - h²
        _add_weight_grads(grads, da, da, x[t], hs[t])
        dx[t] = da @ p["weight_ih"]
        dh_next = da @ p["weight_hh"]
    return dx, (dh_next,), grads


# ----------------------------------------------------------------------------------------------------------------
# LSTM, gate order i, f, g, o:
#   i = σ(W_ii x + b_ii + W_hi h + b_hi),  f = σ(W_if x + b_if + W_hf h + b_hf)
#   g = tanh(W_ig x + b_ig + W_hg h + b_hg),  o = σ(W_io x + b_io + W_ho h + b_ho)
#   c' = f ∗ c + i ∗ g,  h' = o ∗ tanh(c')


def lstm_forward(x: np.ndarray, state: tuple, p: dict) -> tuple[np.ndarray, tuple, tuple]:
    """x (T,N,D), (h0, c0) -> hs (T,N,H), (h_T, c_T), cache (x, h_0 .. h_T, c_0 .. c_T, gates per step, p)."""
    h, c = state
    P = gate_params(p, "ifgo")
    hs, cs, gates = [h], [c], []
    for x_t in x:
        i = sigmoid(input_part(P["i"], x_t) + hidden_part(P["i"], h))
        f = sigmoid(input_part(P["f"], x_t) + hidden_part(P["f"], h))
        g = np.tanh(input_part(P["g"], x_t) + hidden_part(P["g"], h))
        o = sigmoid(input_part(P["o"], x_t) + hidden_part(P["o"], h))
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
        gates.append((i, f, g, o))
    return np.stack(hs[1:]), (h, c), (x, np.stack(hs), np.stack(cs), gates, p)


def lstm_backward(dhs: np.ndarray, cache: tuple) -> tuple[np.ndarray, tuple, dict]:
    """dhs (T,N,H) -> dx (T,N,D), (dh0, dc0), grads under the parameter names."""
    x, hs, cs, gates, p = cache
    dx, grads = np.zeros_like(x), {name: np.zeros_like(value) for name, value in p.items()}
    dh_next, dc_next = np.zeros_like(hs[0]), np.zeros_like(cs[0])  # arriving at h_t, c_t from step t+1
    for t in reversed(range(len(x))):
        i, f, g, o = gates[t]
        tanh_c = np.tanh(cs[t + 1])
        dh = dhs[t] + dh_next  # total gradient at h_t
        dc = dc_next + dh * o * (1 - tanh_c**2)  # total gradient at c_t: from step t+1 and through h_t
        di, df, dg, do = dc * g, dc * cs[t], dc * i, dh * tanh_c
        da = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=1)
        _add_weight_grads(grads, da, da, x[t], hs[t])  # da (N,4H): the gates' pre-activations, packed
        dx[t] = da @ p["weight_ih"]
        dh_next, dc_next = da @ p["weight_hh"], dc * f
    return dx, (dh_next, dc_next), grads


# ----------------------------------------------------------------------------------------------------------------
# GRU, PyTorch's variant (r applied to the hidden part of n, its bias included):
#   r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
#   n = tanh(W_in x + b_in + r ∗ (W_hn h + b_hn)),  h' = (1 − z) ∗ n + z ∗ h


def gru_forward(x: np.ndarray, state: tuple, p: dict) -> tuple[np.ndarray, tuple, tuple]:
    """x (T,N,D), (h0,) -> hs (T,N,H), (h_T,), cache (x, h_0 .. h_T, (r, z, n, W_hn h + b_hn) per step, p)."""
    (h,) = state
    P = gate_params(p, "rzn")
    hs, gates = [h], []
    for x_t in x:
        r = sigmoid(input_part(P["r"], x_t) + hidden_part(P["r"], h))
        z = sigmoid(input_part(P["z"], x_t) + hidden_part(P["z"], h))
        hn = hidden_part(P["n"], h)
        n = np.tanh(input_part(P["n"], x_t) + r * hn)
        h = (1 - z) * n + z * h
        hs.append(h)
        gates.append((r, z, n, hn))
    return np.stack(hs[1:]), (h,), (x, np.stack(hs), gates, p)


def gru_backward(dhs: np.ndarray, cache: tuple) -> tuple[np.ndarray, tuple, dict]:
    """dhs (T,N,H) -> dx (T,N,D), (dh0,), grads under the parameter names."""
    x, hs, gates, p = cache
    dx, grads = np.zeros_like(x), {name: np.zeros_like(value) for name, value in p.items()}
    dh_next = np.zeros_like(hs[0])  # what arrives at h_t from step t+1
    for t in reversed(range(len(x))):
        r, z, n, hn = gates[t]
        dh = dhs[t] + dh_next  # total gradient at h_t
        dan = dh * (1 - z) * (1 - n**2)  # n's pre-activation
        daz = dh * (hs[t] - n) * z * (1 - z)  # z's
        dar = dan * hn * r * (1 - r)  # r's
        da_x = np.concatenate([dar, daz, dan], axis=1)  # (N,3H) input parts of r, z, n
        da_h = np.concatenate([dar, daz, dan * r], axis=1)  # (N,3H) hidden parts: n's is scaled by r
        _add_weight_grads(grads, da_x, da_h, x[t], hs[t])
        dx[t] = da_x @ p["weight_ih"]
        dh_next = dh * z + da_h @ p["weight_hh"]  # directly through z ∗ h, and through the hidden parts
    return dx, (dh_next,), grads


def _add_weight_grads(grads: dict, da_x: np.ndarray, da_h: np.ndarray, x_t: np.ndarray, h: np.ndarray) -> None:
    """Add one step's weight and bias gradients: da_x, da_h (N,G·H) are dLoss/d(input part), d(hidden part)."""
    grads["weight_ih"] += da_x.T @ x_t
    grads["bias_ih"] += da_x.sum(axis=0)
    grads["weight_hh"] += da_h.T @ h
    grads["bias_hh"] += da_h.sum(axis=0)


class Reference(NamedTuple):
    forward: Callable
    backward: Callable


REFERENCE = {
    "rnn": Reference(rnn_forward, rnn_backward),
    "lstm": Reference(lstm_forward, lstm_backward),
    "gru": Reference(gru_forward, gru_backward),
}
