"""Optimisation: global-norm clipping, SGD / Adagrad / RMSprop / Adam(W), learning-rate schedules.

Parameters are one flat dict name -> ndarray; gradients and optimizer state use the same keys. Every update is
in place (the parameter arrays keep their identity) and reuses state and scratch buffers allocated once in
`__init__`, so a step allocates nothing of parameter size. The update rules follow `torch.optim` exactly
(same order of operations up to rounding), so a run can be checked against PyTorch. Shapes: every buffer has
its parameter's shape and dtype (float32 or float64); scalars are Python floats, so float32 stays float32.
"""

from __future__ import annotations

import math

import numpy as np

Params = dict[str, np.ndarray]


def clip_grad_norm(grads: Params, max_norm: float) -> float:
    """Scale every gradient in place so the global L2 norm is at most `max_norm` (<= 0: never clip).

    The norm is accumulated in float64 and returned as it was BEFORE clipping, so it can be logged. A non-finite
    norm is returned without scaling anything (scaling by max_norm/inf would turn the gradients into NaN).
    """
    norm = math.sqrt(sum(_sum_of_squares(g) for g in grads.values()))
    if max_norm > 0 and math.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            np.multiply(g, scale, out=g)  # same shape and dtype, in place
    return norm


_CHUNK = 1 << 16  # elements converted to float64 at a time: 512 KB, so the copy stays in cache


def _sum_of_squares(g: np.ndarray) -> float:
    """Σ g² accumulated in float64. A float32 array is converted one chunk at a time: converting a whole
    gradient made a fresh float64 copy per parameter, several times slower (see BENCHMARKS.md, "What each change
    bought", the clip_grad_norm row)."""
    flat = g.reshape(-1)  # (size,)
    if flat.dtype == np.float64:
        return float(np.dot(flat, flat))
    total = 0.0
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start : start + _CHUNK].astype(np.float64)  # (≤ _CHUNK,)
        total += float(np.dot(chunk, chunk))
    return total


class Optimizer:
    """Common machinery: hyperparameters, state buffers, scratch buffers, state_dict round-trip.

    Subclasses set `defaults` (their extra hyperparameters), list their state buffers in `_buffers()` (prefixes
    of the state keys, e.g. "m" gives "m/<param name>") and implement `_update(name, p, g, lr)` in place.
    """

    defaults: dict[str, float] = {}
    uses_momentum = False  # whether `momentum` means anything for this optimizer

    def __init__(self, params: Params, *, momentum: float = 0.0, weight_decay: float = 0.0, **hyper: float):
        unknown = sorted(set(hyper) - set(self.defaults))
        if unknown:
            name = type(self).__name__
            raise TypeError(f"{name} has no hyperparameter {unknown[0]!r}; known: {sorted(self.defaults)}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if momentum and not self.uses_momentum:
            raise ValueError(f"momentum applies to sgd and rmsprop only, not {type(self).__name__.lower()}")
        if weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.hyper = {**self.defaults, **{k: float(v) for k, v in hyper.items()}}
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.t = 0  # optimizer steps taken
        self.state = {f"{b}/{k}": np.zeros_like(p) for b in self._buffers() for k, p in params.items()}
        self._s1 = {k: np.empty_like(p) for k, p in params.items()}  # scratch, same shape/dtype as p
        self._s2 = {k: np.empty_like(p) for k, p in params.items()}  # second scratch

    def _buffers(self) -> tuple[str, ...]:
        return ()

    def step(self, params: Params, grads: Params, lr: float) -> None:
        """One update of every parameter in place from `grads` (same keys) with learning rate `lr`."""
        if params.keys() != self._s1.keys() or grads.keys() != self._s1.keys():
            raise KeyError("params and grads must have exactly the keys the optimizer was built with")
        self.t += 1
        for k, p in params.items():
            self._update(k, p, grads[k], float(lr))

    def _update(self, k: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    def _l2(self, k: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        """g + weight_decay * p (coupled L2, PyTorch's `weight_decay`) in scratch; g itself when no decay."""
        if not self.weight_decay:
            return g
        s = self._s1[k]
        np.multiply(p, self.weight_decay, out=s)  # (like p) decay term
        np.add(g, s, out=s)  # (like p) decayed gradient
        return s

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state: "<buffer>/<param name>" arrays and "t", the step count as a 0-d int64 array."""
        out = {k: v.copy() for k, v in self.state.items()}
        out["t"] = np.array(self.t, dtype=np.int64)
        return out

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        """Copy a `state_dict()` into the existing buffers; ValueError when keys, shapes or dtypes differ."""
        expected = set(self.state) | {"t"}
        missing, extra = sorted(expected - set(d)), sorted(set(d) - expected)
        if missing or extra:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
            raise ValueError(f"optimizer state does not fit {type(self).__name__}: {what}")
        t = np.asarray(d["t"])
        if t.shape != () or t.dtype.kind not in "iu" or int(t) < 0:
            raise ValueError(f"optimizer state 't' must be a 0-d non-negative integer, got {t.dtype} {t.shape}")
        for k, buf in self.state.items():
            src = np.asarray(d[k])
            if src.shape != buf.shape or src.dtype != buf.dtype:
                raise ValueError(
                    f"optimizer state {k!r} is {src.dtype} {src.shape}, expected {buf.dtype} {buf.shape}"
                )
        for k, buf in self.state.items():
            buf[...] = d[k]
        self.t = int(t)


class SGD(Optimizer):
    """Heavy-ball SGD as torch.optim.SGD (dampening 0, no Nesterov): g += wd*p; v = mu*v + g; p -= lr*v.

    With momentum 0 it is plain SGD (p -= lr*g) and keeps no state but "t"; otherwise the buffer is "m/<name>".
    """

    uses_momentum = True

    def _buffers(self) -> tuple[str, ...]:
        return ("m",) if self.momentum else ()

    def _update(self, k: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        d = self._l2(k, p, g)  # (like p) gradient with L2 term
        if self.momentum:
            v = self.state[f"m/{k}"]
            np.multiply(v, self.momentum, out=v)  # (like p) decayed velocity
            np.add(v, d, out=v)  # (like p) v = mu*v + g
            d = v
        s = self._s2[k]
        np.multiply(d, lr, out=s)  # (like p) step
        np.subtract(p, s, out=p)


class Adagrad(Optimizer):
    """Adagrad as torch.optim.Adagrad (lr_decay 0, initial accumulator 0).

    g += wd*p; v += g*g; p -= lr * g / (sqrt(v) + eps). State: "v/<name>", the sum of squared gradients.
    """

    defaults = {"eps": 1e-8}

    def _buffers(self) -> tuple[str, ...]:
        return ("v",)

    def _update(self, k: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        d = self._l2(k, p, g)  # (like p) gradient with L2 term
        v, s = self.state[f"v/{k}"], self._s2[k]
        np.multiply(d, d, out=s)  # (like p) g^2
        np.add(v, s, out=v)  # (like p) running sum of g^2
        np.sqrt(v, out=s)
        np.add(s, self.hyper["eps"], out=s)  # (like p) denominator
        np.divide(d, s, out=s)  # (like p) normalised gradient
        np.multiply(s, lr, out=s)
        np.subtract(p, s, out=p)


class RMSprop(Optimizer):
    """RMSprop as torch.optim.RMSprop (not centered).

    g += wd*p; v = alpha*v + (1-alpha)*g*g; a = sqrt(v) + eps; without momentum p -= lr*g/a, with momentum
    b = mu*b + g/a; p -= lr*b. State: "v/<name>" (mean square) and, when momentum > 0, "m/<name>" (b).
    """

    defaults = {"alpha": 0.99, "eps": 1e-8}
    uses_momentum = True

    def _buffers(self) -> tuple[str, ...]:
        return ("v", "m") if self.momentum else ("v",)

    def _update(self, k: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        alpha, eps = self.hyper["alpha"], self.hyper["eps"]
        d = self._l2(k, p, g)  # (like p) gradient with L2 term
        v, s = self.state[f"v/{k}"], self._s2[k]
        np.multiply(v, alpha, out=v)
        np.multiply(d, d, out=s)  # (like p) g^2
        np.multiply(s, 1.0 - alpha, out=s)
        np.add(v, s, out=v)  # (like p) v = alpha*v + (1-alpha)*g^2
        np.sqrt(v, out=s)
        np.add(s, eps, out=s)  # (like p) a = sqrt(v) + eps
        np.divide(d, s, out=s)  # (like p) g / a
        if self.momentum:
            b = self.state[f"m/{k}"]
            np.multiply(b, self.momentum, out=b)
            np.add(b, s, out=b)  # (like p) b = mu*b + g/a
            np.multiply(b, lr, out=s)
        else:
            np.multiply(s, lr, out=s)
        np.subtract(p, s, out=p)


class Adam(Optimizer):
    """Adam with bias correction as torch.optim.Adam; with weight_decay > 0 it is AdamW (decoupled decay).

    p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
    p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). State: "m/<name>", "v/<name>".
    """

    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

    def _buffers(self) -> tuple[str, ...]:
        return ("m", "v")

    def _update(self, k: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        b1, b2, eps = self.hyper["beta1"], self.hyper["beta2"], self.hyper["eps"]
        m, v, s = self.state[f"m/{k}"], self.state[f"v/{k}"], self._s1[k]
        if self.weight_decay:
            np.multiply(p, 1.0 - lr * self.weight_decay, out=p)  # decoupled decay
        np.subtract(g, m, out=s)
        np.multiply(s, 1.0 - b1, out=s)
        np.add(m, s, out=m)  # (like p) m = m + (1-b1)*(g-m), PyTorch's lerp
        np.multiply(v, b2, out=v)
        np.multiply(g, g, out=s)  # (like p) g^2
        np.multiply(s, 1.0 - b2, out=s)
        np.add(v, s, out=v)  # (like p) v = b2*v + (1-b2)*g^2
        np.sqrt(v, out=s)
        np.divide(s, math.sqrt(1.0 - b2**self.t), out=s)
        np.add(s, eps, out=s)  # (like p) bias-corrected denominator
        np.divide(m, s, out=s)
        np.multiply(s, lr / (1.0 - b1**self.t), out=s)  # (like p) step
        np.subtract(p, s, out=p)


OPTIMIZERS: dict[str, type[Optimizer]] = {"adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad, "sgd": SGD}


def make_optimizer(name: str, params: Params, momentum: float = 0.0, weight_decay: float = 0.0) -> Optimizer:
    """The optimizer registered under `name` (see OPTIMIZERS) for `params`, with default hyperparameters."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, momentum=momentum, weight_decay=weight_decay)


# Learning-rate schedules: factor(progress) with progress in [0, 1], the fraction of the run done.

COSINE_FLOOR = 0.01  # the cosine schedule ends at 1% of the base rate, so the last steps still learn


def _constant(progress: float) -> float:
    """1, always."""
    return 1.0


def _cosine(progress: float) -> float:
    """floor + (1 - floor) * 0.5 * (1 + cos(pi * progress)): 1 at the start, 0.505 halfway, 0.01 at the end."""
    return COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _step(progress: float) -> float:
    """1 before half of the run, 0.5 from half on, 0.25 from three quarters on."""
    return 1.0 if progress < 0.5 else 0.5 if progress < 0.75 else 0.25


SCHEDULES = {"constant": _constant, "cosine": _cosine, "step": _step}


def learning_rate(base_lr: float, schedule: str, progress: float, step: int, warmup: int) -> float:
    """base_lr * SCHEDULES[schedule](progress) * warm-up factor.

    `progress` (clamped to [0, 1]) is the fraction of the run done; `step` is the 0-based optimizer step; the
    warm-up factor is (step + 1) / warmup while step < warmup, else 1 (warmup <= 0: no warm-up).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    factor = SCHEDULES[schedule](min(max(float(progress), 0.0), 1.0))
    if warmup > 0 and step < warmup:
        factor *= (step + 1) / warmup
    return base_lr * factor
