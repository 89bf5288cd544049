"""Units: the names `L:N` (layer L's hidden output h, unit N) and `L:N:c` (an LSTM's cell state), and their
columns in the (T,U) activation matrix the probe builds per chunk.

Layout of that matrix, U = layers × H × S (S = 1, or 2 for an LSTM): layer by layer; within a layer, h's H
units, then (LSTM) c's H units. Layers and units count from 0, as the checkpoint's `_l0` names do.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from charrnn.config import ModelConfig

_SPEC = re.compile(r"(\d{1,9}):(\d{1,9})(?::(c|h))?")


class Unit(NamedTuple):
    layer: int
    index: int
    state: str = "h"  # "h" or "c"

    def __str__(self) -> str:
        return f"{self.layer}:{self.index}" + (":c" if self.state == "c" else "")


def states(mc: ModelConfig) -> tuple[str, ...]:
    """The per-layer state arrays a unit can belong to: ("h", "c") for an LSTM, ("h",) otherwise."""
    return ("h", "c") if mc.cell == "lstm" else ("h",)


def count(mc: ModelConfig) -> int:
    """U: every unit of the model, h (and c) of every layer."""
    return mc.layers * mc.hidden * len(states(mc))


def column(unit: Unit, mc: ModelConfig) -> int:
    """The unit's column in the (T,U) activation matrix (module docstring)."""
    S = states(mc)
    return (unit.layer * len(S) + S.index(unit.state)) * mc.hidden + unit.index


def at(col: int, mc: ModelConfig) -> Unit:
    """The unit in column `col` (the inverse of `column`)."""
    S = states(mc)
    block, index = divmod(col, mc.hidden)
    layer, s = divmod(block, len(S))
    return Unit(layer, index, S[s])


def parse(spec: str, mc: ModelConfig) -> Unit:
    """`L:N` or `L:N:c` -> a Unit of this model; ValueError with a one-line reason otherwise."""
    m = _SPEC.fullmatch(spec.strip())
    if not m:
        raise ValueError(f"{spec!r} is not a unit; write L:N (layer L's hidden unit N, from 0) or L:N:c (an "
                         f"LSTM's cell state)")
    unit = Unit(int(m.group(1)), int(m.group(2)), m.group(3) or "h")
    if unit.state not in states(mc):
        raise ValueError(f"unit {spec}: a {mc.cell.upper()} has no cell state; write {unit.layer}:{unit.index}")
    if unit.layer >= mc.layers:
        raise ValueError(f"unit {spec}: the model has {mc.layers} layer(s), 0 to {mc.layers - 1}")
    if unit.index >= mc.hidden:
        raise ValueError(f"unit {spec}: a layer has {mc.hidden} units, 0 to {mc.hidden - 1}")
    return unit
