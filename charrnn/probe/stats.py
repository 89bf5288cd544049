"""Streaming statistics over chunks of activations: Pearson r of every unit with every feature, and how often
every gate unit is saturated. Shapes: T steps of a chunk, U units, F features, H units of a layer, L characters.

Nothing is kept per character: a chunk's activations are folded into sums and dropped, so the memory is
O(U·F) whatever the text's length. A chunk's sums are taken in the activations' dtype and added to float64
running sums. The features are known before the first chunk, so they are centred exactly; each unit is shifted
by its first value (the "shifted data" variance), so a unit with a large mean and a small spread loses no
precision.
"""

from __future__ import annotations

import numpy as np

CONSTANT_STD = 1e-6  # a unit whose standard deviation is below this counts as constant: r = 0
LEFT, RIGHT = 0.1, 0.9  # a gate below LEFT is left-saturated, above RIGHT right-saturated (the paper's thresholds)


class Correlation:
    """Pearson r of each of U units with each of F features, from chunks of activations in text order."""

    def __init__(self, features: np.ndarray, units: int):
        """features (L,F): every feature at every character of the text."""
        self.y = features - features.mean(axis=0)  # (L,F) centred
        self.y_ss = np.square(self.y).sum(axis=0)  # (F,) sum of squared deviations
        self.n, self.shift = 0, None
        self.s1, self.s2 = np.zeros(units), np.zeros(units)  # (U,) sums of x - shift, (x - shift)²
        self.xy = np.zeros((units, features.shape[1]))  # (U,F) sum of (x - shift) · centred y

    def add(self, x: np.ndarray) -> None:
        """x (T,U): the units at the next T characters."""
        T = x.shape[0]
        if self.shift is None:
            self.shift = x[0].copy()  # (U,)
        d = x - self.shift  # (T,U) in x's dtype: a chunk's sums are short; the running sums are float64
        y = self.y[self.n : self.n + T].astype(x.dtype)  # (T,F)
        self.xy += d.T @ y  # (U,F): Σ (x - s)(y - ȳ) = Σ (x - x̄)(y - ȳ), as Σ (y - ȳ) = 0 for any shift s
        self.s1 += d.sum(axis=0, dtype=np.float64)
        d *= d
        self.s2 += d.sum(axis=0, dtype=np.float64)
        self.n += T

    def r(self) -> np.ndarray:
        """(U,F) Pearson r; 0 where the unit or the feature is constant (never NaN)."""
        n = max(self.n, 1)
        x_ss = np.maximum(self.s2 - np.square(self.s1) / n, 0.0)  # (U,) sum of squared deviations
        x_const = np.sqrt(x_ss / n) < CONSTANT_STD  # (U,)
        y_const = self.y_ss <= 0  # (F,) an exactly constant feature
        denom = np.sqrt(np.outer(x_ss, self.y_ss))  # (U,F)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(denom > 0, self.xy / np.where(denom > 0, denom, 1.0), 0.0)
        r[x_const] = 0.0
        r[:, y_const] = 0.0
        return np.clip(r, -1.0, 1.0)

    def constant_features(self) -> np.ndarray:
        """(F,) bool: features that do not vary over the text (every unit's r is 0 for them)."""
        return self.y_ss <= 0


class Saturation:
    """Per gate unit, how many steps it spent below LEFT and above RIGHT."""

    def __init__(self):
        self.n = 0
        self.left: dict[tuple[int, str], np.ndarray] = {}  # (layer, gate) -> (H,) counts
        self.right: dict[tuple[int, str], np.ndarray] = {}

    def add(self, layer: int, gate: str, a: np.ndarray) -> None:
        """a (T,H): the gate's activations at the next T characters (call once per gate and layer per chunk)."""
        key = (layer, gate)
        if key not in self.left:
            self.left[key] = np.zeros(a.shape[1], dtype=np.int64)
            self.right[key] = np.zeros(a.shape[1], dtype=np.int64)
        self.left[key] += (a < LEFT).sum(axis=0)
        self.right[key] += (a > RIGHT).sum(axis=0)

    def fractions(self, steps: int) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
        """(layer, gate) -> (left, right) fractions of the time (H,) each, in the order gates were added."""
        n = max(steps, 1)
        return {key: (self.left[key] / n, self.right[key] / n) for key in self.left}
