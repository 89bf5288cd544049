"""The page of `charrnn inspect --html`: one self-contained HTML file (inline CSS and JS, nothing fetched, works
from file:// and offline) filled with a JSON blob. Shapes: L characters, U units, K kept characters.

The template is a package data file (charrnn/templates/inspect.html); this module fills it. Everything the user
gave (the text, file names) goes in through the JSON blob, which is escaped so it cannot end its <script>
element (`<`, `>`, `&` and every non-ASCII character as \\u escapes); the page's script writes it with
textContent, never as HTML.

Size (a budget, BUDGET bytes, whatever the model): every character costs its text, its surprisal (2 bytes) and
the model's top GUESSES guesses (ids and probabilities, 2 bytes each). Activations are stored at 4 bits: one of 15
levels, -7..7 sevenths of the unit's largest |activation| (what a 15-colour diverging palette can show). The
units ranked best for some feature (PAGE_TOP per feature) are kept for the whole text, as many as fit; every
unit is kept for the first K characters, K as large as the rest of the budget allows (the whole text when it
fits: 20,000 characters of a 2 x 256 LSTM take about 5 MB whole, so such a page keeps any unit for the first
few thousand characters and the ranked ones for all 20,000). The page says which is which. It shows at most the
first PAGE_CHARS characters (the per-character part alone would outgrow the budget), while its tables count
every character inspected. Which units rank
best is known only after the whole text has been read: when every unit at every character is small enough to
keep in memory (KEEP_ALL), the run keeps it all; otherwise a second pass over the text records the ranked units.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from importlib import resources

import numpy as np

from charrnn.config import ModelConfig
from charrnn.probe import units as U

BUDGET = 4_800_000  # bytes of the whole page at most (its template and tables included)
RESERVE = 250_000  # bytes kept for the template, the tables, the gates, the loss curve
PAGE_CHARS = 50_000  # the page shows at most the first PAGE_CHARS characters (the tables count every one)
GUESSES = 5  # top guesses shown for every character
PAGE_TOP = 5  # ranked units per feature
LEVELS = 7  # a value is stored as round(7 · a / max |a|): 15 levels in 4 bits
NONE = 0xFFFF  # the surprisal of a character nothing predicted (the first)


KEEP_ALL = 128 << 20  # bytes: below this, every unit at every character is kept (float16) while the model runs,
# so the ranked units need no second pass over the text (20,000 characters of a 2 x 512 LSTM: 82 MB; a second pass
# would double its time)


@dataclass(frozen=True)
class Plan:
    """head: characters every unit is kept for on the page; whole: how many ranked units the page keeps for every
    character; keep: characters of every unit to keep while the model runs (head, or all when that is cheap)."""

    head: int
    whole: int
    keep: int = 0
    guesses: int = GUESSES


def _b64(nbytes: int) -> int:
    return 4 * ((nbytes + 2) // 3)


def _id_bytes(vocab_size: int) -> int:
    return 1 if vocab_size <= 256 else 2 if vocab_size <= 65536 else 4


def plan(mc: ModelConfig, text: str) -> Plan:
    """How much of each unit the page keeps within BUDGET (module docstring)."""
    L = min(len(text), PAGE_CHARS)
    fixed = RESERVE + len(_json(text[:L])) + _b64(2 * L) + 2 * _b64(L * GUESSES * 2)
    per_unit = _b64((L + 1) // 2)  # one unit, every character
    n_units = U.count(mc)
    if fixed + n_units * per_unit <= BUDGET:
        return Plan(L, 0, L)
    left = max(BUDGET - fixed, 0)
    whole = min(len(_feature_names()) * PAGE_TOP, left // per_unit)
    left -= whole * per_unit
    head = max(min(L, left * 3 // 4 // n_units * 2), 0)
    return Plan(head, whole, L if 2 * L * n_units <= KEEP_ALL else head)


def _feature_names():
    from charrnn.probe.features import NAMES

    return NAMES


def _json(value) -> str:
    """JSON safe inside <script>: ASCII only (so U+2028, U+2029 and lone surrogates are escapes too) and no <, >, &."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _encode(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def quantise(values: np.ndarray) -> tuple[float, np.ndarray]:
    """values (..., K) -> (scale, levels 1..15 as uint8 (..., K)): 8 + round(7 · v / scale), scale = max |v|."""
    v = np.asarray(values, dtype=np.float32)
    scale = float(np.abs(v).max()) if v.size else 0.0
    scale = scale if scale > 0 and math.isfinite(scale) else 1.0
    q = np.clip(np.rint(v / scale * LEVELS), -LEVELS, LEVELS).astype(np.int16) + LEVELS + 1  # (...,K) 1..15
    return scale, q.astype(np.uint8)


def pack(q: np.ndarray) -> np.ndarray:
    """Levels (..., K) in 0..15 -> (..., ceil(K/2)) bytes, two per byte, the first in the high nibble."""
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros(q.shape[:-1] + (1,), dtype=np.uint8)], axis=-1)
    return (q[..., 0::2] << 4) | q[..., 1::2]


def page_units(result, mc: ModelConfig) -> list[dict]:
    """The ranked units for the page's picker: each unit once, by its best |r| over the features, best first."""
    best: dict = {}
    for feature, ranked in result.ranked(mc, PAGE_TOP).items():
        for unit, r in ranked:
            if unit not in best or abs(r) > abs(best[unit][1]):
                best[unit] = (feature, r)
    order = sorted(best, key=lambda u: -abs(best[u][1]))
    return [{"unit": str(u), "feature": best[u][0], "r": round(best[u][1], 4)} for u in order]


def data(params, mc: ModelConfig, vocab, ids, text: str, result, p: Plan, meta: dict) -> dict:
    """The JSON blob the template reads: text, surprisal, guesses, activations, tables, curve (module docstring)."""
    from charrnn.probe import record

    L = min(len(text), PAGE_CHARS)
    text, ids, shown = text[:L], ids[:L], result.bits[:L]
    bits = np.where(np.isnan(shown), NONE, np.minimum(np.rint(shown * 100), NONE - 1))  # (L,) centibits
    idb = _id_bytes(len(vocab))
    top_ids, top_p = (a[:L] for a in result.guesses)
    ranked = page_units(result, mc)
    acts: dict = {"levels": LEVELS, "head": None, "whole": {}}
    kept_all = result.head is not None and len(result.head) >= L  # (≥L,U) float16: every unit, every character
    if p.head:
        pairs = [quantise(result.head[: p.head, c]) for c in range(result.head.shape[1])]  # per unit: (scale, (K,))
        acts["head"] = {"chars": p.head, "scales": [round(s, 6) for s, _ in pairs],
                        "data": _encode(pack(np.stack([q for _, q in pairs])))}  # (U, ceil(K/2)) bytes
    if p.head < L:
        wanted = [U.parse(e["unit"], mc) for e in ranked[: p.whole]]
        kept = ({u: result.head[:L, U.column(u, mc)] for u in wanted} if kept_all
                else {u: v[:L] for u, v in result.recorded.items()})
        missing = [u for u in wanted if u not in kept]
        if missing:  # a second pass over the text
            kept.update(record(params, mc, ids, missing))
        for u in wanted:
            scale, q = quantise(kept[u])
            acts["whole"][str(u)] = {"scale": round(scale, 6), "data": _encode(pack(q))}
    history = [{k: h[k] for k in ("step", "loss", "val_loss") if isinstance(h.get(k), (int, float))
                and math.isfinite(h[k])} for h in meta.get("history", [])]
    scored = result.bits[1:]
    return {
        "name": meta.get("text", ""), "checkpoint": meta.get("checkpoint", ""), "chars": L,
        "inspected": result.chars,
        "model": {"cell": mc.cell, "layers": mc.layers, "hidden": mc.hidden, "embed": mc.embed,
                  "vocab": mc.vocab_size, "states": list(U.states(mc))},
        "bits_per_char": round(float(scored.mean()), 4) if scored.size else None,
        "text": text, "vocab": [chr(int(c)) for c in vocab],
        "bits": _encode(bits.astype("<u2")),
        "guesses": {"k": int(top_ids.shape[1]), "bytes": idb,
                    "ids": _encode(top_ids.astype({1: "u1", 2: "<u2", 4: "<u4"}[idb])),
                    "probs": _encode(np.rint(top_p * 65535).astype("<u2"))},
        "ranked": ranked, "acts": acts,
        "features": {f: [{"unit": str(u), "r": round(r, 4)} for u, r in units]
                     for f, units in result.ranked(mc, PAGE_TOP).items()},
        "gates": [{"layer": k, "gate": g, "left": [round(float(v), 4) for v in left],
                   "right": [round(float(v), 4) for v in right]}
                  for (k, g), (left, right) in result.saturation.items()],
        "history": history,
    }


def render(params, mc: ModelConfig, vocab, ids, text: str, result, p: Plan, meta: dict) -> str:
    """The page: the template with its data blob in place."""
    template = resources.files("charrnn").joinpath("templates/inspect.html").read_text(encoding="utf-8")
    blob = _json(data(params, mc, vocab, ids, text, result, p, meta))
    head, marker, tail = template.partition("{{DATA}}")
    assert marker, "the template has no {{DATA}} marker"
    return head + blob + tail
