"""Centred-difference gradient checking, shared by the cell and model tests."""

from __future__ import annotations

import numpy as np


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """dF/dx by centred differences, F = f() a scalar that reads x; x is perturbed in place and restored."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """‖a − n‖ / max(‖a‖ + ‖n‖, 1e-12), per array."""
    num = np.linalg.norm(analytic - numeric)
    return float(num / max(np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-12))
