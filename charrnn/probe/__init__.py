"""What the units of a model track in a text, for `charrnn inspect`. Shapes: L characters, T steps of a chunk,
U units (units.py), F features (features.py), H units of a layer, V vocabulary, K guesses.

The text is one stream from the zero state, run through the model's one forward path (`model.forward` with the
cells' caches, in chunks with the state carried, as `surprisal.surprisal_bits` does); every layer's h (and an
LSTM's c) and gates are read from the caches through each cell's `activations` accessor (charrnn/cells), never
recomputed. Activations are folded into streaming statistics chunk by chunk (stats.py): the correlation of every
unit with every feature and the saturation of every sigmoid gate; only what a view needs is kept per character
(the units asked for, float32; the first `head` characters of every unit, float16; the surprisal and the top
guesses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from charrnn import model
from charrnn.cells import CELLS
from charrnn.config import ModelConfig
from charrnn.probe import features as feats
from charrnn.probe import units as U
from charrnn.probe.stats import Correlation, Saturation

SIGMOID_GATES = {"rnn": (), "lstm": ("i", "f", "o"), "gru": ("r", "z")}  # the gates saturation is reported for
CHUNK = 256  # steps per forward call


@dataclass
class Inspection:
    """What `inspect` found. r (U,F) Pearson r (0 for constant units or features); constant (F,) the features that
    do not vary; saturation {(layer, gate): (left (H,), right (H,))} fractions of the time; bits (L,) the
    surprisal of every character in bits (nan for the first); recorded {Unit: (L,) float32}; head (K,U) float16
    every unit at the first K characters; guesses (ids (L,K), probs (L,K)) the model's top guesses for each
    character before it was read (row 0 empty), or None."""

    chars: int
    r: np.ndarray
    constant: np.ndarray
    saturation: dict
    bits: np.ndarray
    recorded: dict = field(default_factory=dict)
    head: np.ndarray | None = None
    guesses: tuple | None = None
    finite: bool = True  # every activation and every logit was finite (a broken checkpoint's weights give NaN)

    def ranked(self, mc: ModelConfig, top: int = 5) -> dict[str, list[tuple[U.Unit, float]]]:
        """{feature: [(unit, r), ...]} the `top` units by |r|, best first (all units for top = 0); [] for a
        feature that is constant in this text. Ties keep the units' order."""
        out = {}
        for f, name in enumerate(feats.NAMES):
            if self.constant[f]:
                out[name] = []
                continue
            order = np.argsort(-np.abs(self.r[:, f]), kind="stable")  # (U,)
            out[name] = [(U.at(int(c), mc), float(self.r[c, f])) for c in order[: top or None]]
        return out


def chunks(params: dict, mc: ModelConfig, ids: np.ndarray, seq: int | None = None):
    """One stream over ids (L,) from the zero state -> yields (start, layers, logits) per chunk of ≤ seq (CHUNK) steps:
    layers[k] is the cell's activations {name: (T,H)} (cells' `activations`), logits (T,V) predict ids[start+1:]."""
    cell, seq = CELLS[mc.cell], seq or CHUNK
    state = model.init_state(mc, 1, params["decoder.weight"].dtype)
    for start in range(0, len(ids), seq):
        x = np.asarray(ids[start : start + seq])[None]  # (1,T)
        logits, state, cache = model.forward(params, mc, x, state)
        layers = [{name: a[:, 0] for name, a in cell.activations(c).items()} for c in cache.layers]  # (T,H) each
        yield start, layers, logits[:, 0]


def unit_matrix(layers: list[dict], mc: ModelConfig) -> np.ndarray:
    """(T,U) every unit at a chunk's steps, in units.column order."""
    return np.concatenate([acts[s] for acts in layers for s in U.states(mc)], axis=1)


@np.errstate(over="ignore", invalid="ignore", divide="ignore")  # overflow shows as Inspection.finite = False
def inspect(params: dict, mc: ModelConfig, ids: np.ndarray, text: str, record=(), head: int = 0,
            guesses: int = 0) -> Inspection:
    """Run the model over ids (L,) (the ids of `text` in its vocabulary) and gather what module docstring says.

    record: Units to keep whole; head: how many leading characters of every unit to keep; guesses: how many of the
    model's top guesses (and their probabilities) to keep for every character (0: none)."""
    L, n_units = len(ids), U.count(mc)
    F = np.stack([v for v in feats.features(text).values()], axis=1)  # (L,F)
    corr, sat = Correlation(F, n_units), Saturation()
    bits = np.full(L, np.nan)  # (L,)
    kept = {u: np.empty(L, dtype=np.float32) for u in record}
    cols = {u: U.column(u, mc) for u in record}
    head_acts = np.empty((min(head, L), n_units), dtype=np.float16) if head else None  # (K,U)
    top = (np.zeros((L, guesses), dtype=np.int64), np.zeros((L, guesses), dtype=np.float32)) if guesses else None
    finite = True
    for start, layers, logits in chunks(params, mc, ids):
        T = logits.shape[0]
        x = unit_matrix(layers, mc)  # (T,U)
        finite = finite and bool(np.isfinite(x).all() and np.isfinite(logits).all())
        corr.add(x)
        for k, acts in enumerate(layers):
            for gate in SIGMOID_GATES[mc.cell]:
                sat.add(k, gate, acts[gate])
        for u, c in cols.items():
            kept[u][start : start + T] = x[:, c]
        if head_acts is not None and start < len(head_acts):
            head_acts[start : start + T] = x[: len(head_acts) - start]
        nxt = np.asarray(ids[start + 1 : start + 1 + T])  # (≤T,) the characters these logits predict
        bits[start + 1 : start + 1 + len(nxt)] = model.nll(logits[: len(nxt)], nxt) / math.log(2)
        if top is not None:
            _top_guesses(logits[: len(nxt)], guesses, top[0][start + 1 :], top[1][start + 1 :])
    r = corr.r()  # (U,F)
    r[~np.isfinite(r)] = 0.0
    return Inspection(L, r, corr.constant_features(), sat.fractions(L), bits, kept, head_acts, top, finite)


def record(params: dict, mc: ModelConfig, ids: np.ndarray, wanted) -> dict[U.Unit, np.ndarray]:
    """{unit: (L,) float32} the wanted units at every character: a second pass over the text, for units that
    became interesting only after the first (the page's ranked units)."""
    kept = {u: np.empty(len(ids), dtype=np.float32) for u in wanted}
    for start, layers, logits in chunks(params, mc, ids):
        T = logits.shape[0]
        for u in wanted:
            kept[u][start : start + T] = layers[u.layer][u.state][:, u.index]
    return kept


def _top_guesses(logits: np.ndarray, k: int, ids_out: np.ndarray, probs_out: np.ndarray) -> None:
    """Write the k most likely next characters (ids, probabilities) of each row of logits (T,V), best first."""
    if logits.shape[0] == 0:
        return
    z = logits.astype(np.float64)  # (T,V)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)  # (T,V) softmax
    k = min(k, p.shape[1])
    best = np.argpartition(-p, k - 1, axis=1)[:, :k] if k < p.shape[1] else np.tile(np.arange(k), (len(p), 1))
    bp = np.take_along_axis(p, best, axis=1)  # (T,k)
    order = np.argsort(-bp, axis=1, kind="stable")
    T = len(p)
    ids_out[:T, :k] = np.take_along_axis(best, order, axis=1)
    probs_out[:T, :k] = np.take_along_axis(bp, order, axis=1)
