"""The model: embedding -> L stacked recurrent cells -> linear decoder -> softmax cross-entropy.

Shapes: N batch, T time, D embedding, H hidden, V vocabulary. Ids come in batch-first (N,T) as users and PyTorch's
`batch_first=True` expect; inside, everything is time-major (T,N,·) (see charrnn/cells).

Parameters are one flat dict under PyTorch's `state_dict` names (`embedding.weight`, `rnn.weight_ih_l0`, ...,
`decoder.weight`, `decoder.bias`), so the same weights give the same logits here and in
`nn.Embedding -> nn.RNN/LSTM/GRU(batch_first=True) -> nn.Linear`. Gradients use the same keys.

One forward path serves training, evaluation and sampling (sampling runs it with T = 1 and a carried state).
Dropout (inverted, drawn from an explicit rng) sits between stacked layers and before the decoder; it is on only
when an rng is passed.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from charrnn.cells import CELLS, FUSED
from charrnn.config import CELL_PARAMS, ModelConfig, param_shapes


def init_params(mc: ModelConfig, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """Fresh parameters with PyTorch's initialisation: embedding N(0, 1), everything else U(±1/sqrt(H)).

    One draw per parameter of config.param_shapes(mc), in its order, so a seed always gives the same weights."""
    bound = 1.0 / np.sqrt(mc.hidden)
    params = {}
    for name, shape in param_shapes(mc).items():
        value = rng.standard_normal(shape) if name == "embedding.weight" else rng.uniform(-bound, bound, shape)
        params[name] = value.astype(dtype)
    return params


def layer_params(params: dict, k: int) -> dict[str, np.ndarray]:
    """Layer k's cell parameters under the cell's short names (views, not copies), with FUSED if present."""
    keys, fused_key = _layer_keys(k)
    p = {name: params[key] for name, key in keys}
    if fused_key in params:
        p[FUSED] = params[fused_key]
    return p


@functools.lru_cache(maxsize=None)
def _layer_keys(k: int) -> tuple[tuple[tuple[str, str], ...], str]:
    """((short name, full key) of layer k's parameters, the FUSED key), built once: sampling calls forward once per
    character."""
    return tuple((name, f"rnn.{name}_l{k}") for name in CELL_PARAMS), f"rnn.{FUSED}_l{k}"


def for_stepping(params: dict, mc: ModelConfig) -> dict:
    """params plus, for each layer of a cell that has one (LSTM, GRU), its fused [weight_ih | weight_hh] weight
    (`Cell.fuse`, (4H, D+H)): for callers that make many T = 1 steps with fixed weights (sampling, beam search).
    The step then makes ONE matrix-vector product over [x; h] instead of two: OpenBLAS runs a product as small as
    (1024, 256) on one thread but a (1024, 512) one on both, so an LSTM's layer 1 spends about half as long in
    products per character (see BENCHMARKS.md, "What each change bought", the fused sampling weights). The same
    sums in another order: equal to the plain step up to rounding, not bit for bit. The fused arrays are copies,
    so the weights must not change while the returned dict is in use. The RNN has no fused step (its (H, D+H)
    product is single-threaded either way): params come back.
    """
    fuse = CELLS[mc.cell].fuse
    if fuse is None:
        return params
    stepping = dict(params)
    for k in range(mc.layers):
        stepping[f"rnn.{FUSED}_l{k}"] = fuse(params[f"rnn.weight_ih_l{k}"], params[f"rnn.weight_hh_l{k}"])
    return stepping


def init_state(mc: ModelConfig, batch: int, dtype=np.float32) -> list[tuple[np.ndarray, ...]]:
    """Zero state: one tuple per layer, (h,) or (h, c), each (N,H)."""
    n = CELLS[mc.cell].states
    return [tuple(np.zeros((batch, mc.hidden), dtype=dtype) for _ in range(n)) for _ in range(mc.layers)]


class ForwardCache(NamedTuple):
    ids: np.ndarray  # (T,N) time-major ids
    layers: list  # per layer, the cell's cache
    masks: list  # per layer k >= 1 its input dropout mask (T,N,H), then the decoder's; None when off
    top: np.ndarray  # (T,N,H) decoder input


def _dropout(x: np.ndarray, p: float, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverted dropout: x * mask with mask in {0, 1/(1-p)}; identity when off."""
    if rng is None or p <= 0:
        return x, None
    mask = (rng.random(x.shape, dtype=x.dtype) >= p).astype(x.dtype)  # (same as x)
    mask *= 1.0 / (1.0 - p)
    return x * mask, mask


def forward(params: dict, mc: ModelConfig, ids: np.ndarray, state: list, rng=None, need_cache: bool = True):
    """ids (N,T), state per layer -> logits (T,N,V), final state, cache. Dropout is on iff rng is given.

    need_cache=False (no backward will follow: sampling, evaluation) returns None for the cache, which spares the
    cells at T = 1 the arrays that only backward reads (see BENCHMARKS.md, "What each change bought").
    """
    cell = CELLS[mc.cell]
    x = params["embedding.weight"].take(ids.T, axis=0)  # (T,N,D) the same rows as [ids.T], with less overhead
    layers, masks, new_state = [], [], []
    for k in range(mc.layers):
        if k > 0:
            x, mask = _dropout(x, mc.dropout, rng)
            masks.append(mask)
        x, st, cache = cell.forward(x, state[k], layer_params(params, k), need_cache)  # (T,N,H)
        layers.append(cache)
        new_state.append(st)
    x, mask = _dropout(x, mc.dropout, rng)
    masks.append(mask)
    T, N, H = x.shape
    logits = x.reshape(T * N, H) @ params["decoder.weight"].T  # (T·N,V)
    logits += params["decoder.bias"]
    cache = ForwardCache(ids.T, layers, masks, x) if need_cache else None
    return logits.reshape(T, N, -1), new_state, cache


def backward(dlogits: np.ndarray, cache: ForwardCache, params: dict, mc: ModelConfig) -> dict[str, np.ndarray]:
    """dlogits (T,N,V) -> gradients of every parameter, under the parameter names."""
    cell = CELLS[mc.cell]
    T, N, V = dlogits.shape
    d2 = dlogits.reshape(T * N, V)
    grads = {
        "decoder.weight": d2.T @ cache.top.reshape(T * N, -1),  # (V,H)
        "decoder.bias": d2.sum(axis=0),  # (V,)
    }
    dx = (d2 @ params["decoder.weight"]).reshape(T, N, -1)  # (T,N,H)
    for k in reversed(range(mc.layers)):
        mask = cache.masks[k]  # the mask applied to layer k's output: the next layer's input, or the decoder's
        if mask is not None:
            dx *= mask
        dx, _, g = cell.backward(dx, cache.layers[k])
        grads.update({f"rnn.{name}_l{k}": g[name] for name in CELL_PARAMS})
    grads["embedding.weight"] = _embedding_grad(cache.ids.ravel(), dx.reshape(T * N, -1), params["embedding.weight"])
    return grads


def _embedding_grad(ids: np.ndarray, dx: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """dLoss/d(embedding) (V,D): the rows of dx (M,D) summed by their ids (M,).

    Sort the ids, then one np.add.reduceat per run of equal ids: several times faster than np.add.at, which
    handles repeated indices one element at a time (see BENCHMARKS.md, "What each change bought").
    """
    demb = np.zeros_like(emb)  # (V,D)
    if ids.size == 0:
        return demb
    order = np.argsort(ids, kind="stable")  # (M,) positions grouped by id
    sorted_ids = ids[order]  # (M,)
    starts = np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1  # (R-1,) where each later run begins
    starts = np.concatenate(([0], starts))  # (R,) start of every run of equal ids
    demb[sorted_ids[starts]] = np.add.reduceat(dx[order], starts, axis=0)  # (R,D) one sum per distinct id
    return demb


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Fused, stable softmax cross-entropy, mean over every position.

    logits (M,V), targets (M,) -> loss in nats (float), dlogits (M,V). The logits array is reused for dlogits.
    """
    M = logits.shape[0]
    rows = np.arange(M)
    logits -= logits.max(axis=1, keepdims=True)  # stable: the largest logit becomes 0
    picked = logits[rows, targets].astype(np.float64)  # (M,) shifted logit of each target
    np.exp(logits, out=logits)
    total = logits.sum(axis=1, keepdims=True)  # (M,1)
    loss = float(np.mean(np.log(total[:, 0], dtype=np.float64) - picked))
    logits /= total  # softmax
    logits[rows, targets] -= 1.0
    logits *= 1.0 / M
    return loss, logits


def nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood per position, in float64: logits (M,V), targets (M,) -> (M,)."""
    z = logits.astype(np.float64)  # (M,V)
    z -= z.max(axis=1, keepdims=True)
    logsum = np.log(np.exp(z).sum(axis=1))  # (M,)
    return logsum - z[np.arange(len(targets)), targets]


def loss_and_grads(params: dict, mc: ModelConfig, x: np.ndarray, y: np.ndarray, state: list, rng=None):
    """x, y (N,T) ids and targets, state per layer -> mean loss (nats), grads (same keys as params), final state."""
    logits, new_state, cache = forward(params, mc, x, state, rng)
    T, N, V = logits.shape
    loss, dlogits = cross_entropy(logits.reshape(T * N, V), y.T.ravel())
    grads = backward(dlogits.reshape(T, N, V), cache, params, mc)
    return loss, grads, new_state


def loss(params: dict, mc: ModelConfig, x: np.ndarray, y: np.ndarray, state: list):
    """Forward only: x, y (N,T) -> summed nll in nats (float64), final state. Used by evaluation."""
    logits, new_state, _ = forward(params, mc, x, state, need_cache=False)
    T, N, V = logits.shape
    return float(nll(logits.reshape(T * N, V), y.T.ravel()).sum()), new_state
