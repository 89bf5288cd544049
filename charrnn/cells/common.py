"""What the cells share: initialisation, the gate scaling of the one tanh pass (`_gate_nonlinearity`), the
hoisted input projection and the after-the-loop weight and input gradients (batch-major for the RNN, `_gm_*`
gate-major for the LSTM and GRU), and the odd-pitch gradient buffers. Shapes: T time, N batch, D input, H hidden,
G gate blocks.
"""

from __future__ import annotations

import functools

import numpy as np

from charrnn.config import GATES, layer_shapes

FUSED = "weight_ih_hh"  # [weight_ih | weight_hh] in one array, for T = 1 steps: see model.for_stepping


def init_params(rng: np.random.Generator, D: int, H: int, G: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """PyTorch's initialisation: every weight and bias uniform in ±1/sqrt(H)."""
    k = 1.0 / np.sqrt(H)
    return {name: rng.uniform(-k, k, size=shape).astype(dtype) for name, shape in layer_shapes(G, D, H).items()}


@functools.lru_cache(maxsize=None)
def _gate_scale(cell: str, H: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset), each (G·H,) and read-only, built once per shape (sampling calls forward per character).

    scale is 1/2 on the rows of the sigmoid gates (lstm i, f, o; gru r, z) and 1 on tanh rows (lstm g, gru n);
    offset = 1 - scale, so `tanh(scale * a) * scale + offset` is σ(a) on sigmoid rows and tanh(a) on tanh rows.
    """
    half = {"lstm": [(0, 2 * H), (3 * H, 4 * H)], "gru": [(0, 2 * H)]}[cell]
    scale = np.ones(GATES[cell] * H, dtype=dtype)
    for lo, hi in half:
        scale[lo:hi] = 0.5
    offset = 1.0 - scale
    scale.flags.writeable = offset.flags.writeable = False
    return scale, offset


@functools.lru_cache(maxsize=64)
def _gate_scale_blocks(cell: str, H: int, N: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """`_gate_scale` as whole (G·H,N) arrays for the gate-major step, read-only, built once per shape.

    Every column is the scale (offset) vector: elementwise against an equal-shape array is one contiguous pass,
    where a (G·H,1) column broadcast walks N-element rows several times slower (see BENCHMARKS.md, "What each
    change bought", the in-place GRU forward).
    """
    scale, offset = (np.repeat(v[:, None], N, axis=1) for v in _gate_scale(cell, H, dtype))
    scale.flags.writeable = offset.flags.writeable = False
    return scale, offset


def _gate_nonlinearity(a: np.ndarray, scale, offset, prescaled: bool) -> None:
    """In place: gate pre-activations a -> σ(a) on the sigmoid rows and tanh(a) on the tanh rows, in ONE tanh pass.

    σ(a) = (1 + tanh(a/2)) / 2, so the sigmoid rows are halved (unless `prescaled`: the weights and bias were
    halved there already, which is exact), go through the same np.tanh call as the tanh rows, and are fixed up
    with one multiply-add. scale, offset: `_gate_scale`'s (½ and ½ on sigmoid rows, 1 and 0 on tanh rows), as
    arrays of a's shape, or the scalars 0.5, 0.5 when every row of `a` is a sigmoid's.
    """
    if not prescaled:
        a *= scale
    np.tanh(a, out=a)  # tanh(a/2) on the sigmoid rows, tanh(a) on the others
    a *= scale
    a += offset


def _project(x: np.ndarray, W_ih: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """out (T,N,G·H) <- x (T,N,D) @ W_ih.T + bias: the input part of every gate for all T steps, one GEMM."""
    T, N, D = x.shape
    np.matmul(x.reshape(T * N, D), W_ih.T, out=out.reshape(T * N, -1))
    out += bias


def _weight_grads(da: np.ndarray, x: np.ndarray, h_prev: np.ndarray) -> dict:
    """Weight and bias gradients from the pre-activation gradients, one GEMM per weight.

    da (T,N,G·H) is dLoss/d(pre-activation), which is the gradient of the input part and of the hidden part
    alike, x (T,N,D) the inputs, h_prev (T,N,H) the hidden state each step started from.
    """
    da2 = da.reshape(-1, da.shape[-1])  # (T·N,G·H)
    db = da2.sum(axis=0)  # (G·H,)
    return {
        "weight_ih": da2.T @ x.reshape(da2.shape[0], -1),  # (G·H,D)
        "weight_hh": da2.T @ h_prev.reshape(da2.shape[0], -1),  # (G·H,H)
        "bias_ih": db,
        "bias_hh": db.copy(),  # the same sum: b_ih and b_hh enter every pre-activation alike
    }


def _input_grad(da: np.ndarray, W_ih: np.ndarray) -> np.ndarray:
    """dx (T,N,D) = da (T,N,G·H) @ W_ih, one GEMM for all steps."""
    T, N, GH = da.shape
    return (da.reshape(T * N, GH) @ W_ih).reshape(T, N, -1)


def _gm_weight_grads(da: np.ndarray, x: np.ndarray, h_prev: np.ndarray) -> dict:
    """`_weight_grads` for gate-major gradients: da (G·H,T·N) (column t·N + n is step t, sequence n), x (T,N,D),
    h_prev (T,N,H) time-major. One GEMM per weight; both biases get the same column sum."""
    M = da.shape[1]
    db = da.sum(axis=1)  # (G·H,)
    return {
        "weight_ih": da @ x.reshape(M, -1),  # (G·H,D)
        "weight_hh": da @ h_prev.reshape(M, -1),  # (G·H,H)
        "bias_ih": db,
        "bias_hh": db.copy(),
    }


def _gm_input_grad(da: np.ndarray, W_ih: np.ndarray, T: int, N: int) -> np.ndarray:
    """dx (T,N,D) = daᵀ @ W_ih for gate-major da (G·H,T·N), one GEMM for all steps."""
    return (da.T @ W_ih).reshape(T, N, -1)


def _odd_pitch(rows: int, cols: int, dtype) -> np.ndarray:
    """An uninitialised (rows, cols) array whose rows are an odd number of 64-byte cache lines apart.

    For the gate-major gradients (G·H, T·N), written and read one (G·H, N) column block per step: with T·N·4 bytes
    a power of two (64·32·4 = 8 kB) every row of a block falls into the same few cache sets, and the step's write
    and the GEMM that reads it back slow down (see BENCHMARKS.md, "What each change bought", the odd-pitch row).
    An odd pitch spreads the rows over all sets. BLAS takes the view through its leading dimension, so nothing
    else changes.
    """
    itemsize = np.dtype(dtype).itemsize
    lines = -(-cols * itemsize // 64) | 1  # ceil to whole lines, then odd
    return np.empty((rows, lines * 64 // itemsize), dtype=dtype)[:, :cols]
