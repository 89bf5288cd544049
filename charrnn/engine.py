"""Engines: who computes a training step. The seam between the shared training loop and the arithmetic.

Shapes: B streams (the whole batch), T steps, H hidden. An engine holds the latest weights, the optimizer state
and the carried hidden state, and does two things per step: `compute(x, y, rng)` (forward, backward, global-norm
clip; returns the loss and the norm before clipping, and changes nothing yet) and `apply(lr)` (the update, then the
new carried state). Everything else (data, schedules, validation, best weights, bounds, checkpoints, resume,
signals, the CLI) is engine-neutral and lives in charrnn/train.py. What crosses the seam is NumPy in charrnn's
layouts: weights under PyTorch's `state_dict` names, optimizer state as `optim.Optimizer.state_dict()` lays it out,
the carried state as `model.init_state` does, so a checkpoint written by one engine resumes in the other.

ENGINES maps a name to a factory `(mc, tc, params, device, dist) -> engine`. The NumPy engine is the reference and
the default; the torch engine (charrnn/torch_engine.py, the only module that imports torch) is built on demand.
"""

from __future__ import annotations

import os

import numpy as np

from charrnn import model
from charrnn.config import ModelConfig, TrainConfig
from charrnn.optim import clip_grad_norm, make_optimizer

INSTALL_TORCH = "pip install 'charrnn[torch]'"


class EngineUnavailable(Exception):
    """The engine or device asked for cannot run here (torch not installed, no such device): bad usage."""


class NumpyEngine:
    """charrnn's own arithmetic: model.loss_and_grads, optim.clip_grad_norm, optimizer.step, all in place.

    `params` is the live parameter dict (no copies cross the seam on this path: it is the hot one)."""

    name, where = "numpy", "cpu"
    world, rank = 1, 0  # one process

    def __init__(self, mc: ModelConfig, tc: TrainConfig, params: dict, device: str = "cpu", dist=None):
        if device != "cpu":
            raise EngineUnavailable(f"--device {device} needs --engine torch; the numpy engine runs on the cpu")
        if dist is not None:
            raise EngineUnavailable("distributed training needs --engine torch")
        self.mc, self.clip, self.dtype = mc, tc.clip, np.dtype(tc.dtype)
        self.params = params
        self.optimizer = make_optimizer(tc.optimizer, params, tc.momentum, tc.weight_decay)
        self.state = model.init_state(mc, tc.batch, self.dtype)  # per layer (h,) or (h, c), each (B,H)
        self._grads = self._next = None  # what compute() leaves for apply()

    def compute(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator | None) -> tuple[float, float]:
        """x, y (B,T) -> (mean loss in nats, gradient norm before clipping); dropout draws from rng when given."""
        loss, self._grads, self._next = model.loss_and_grads(self.params, self.mc, x, y, self.state, rng)
        return loss, clip_grad_norm(self._grads, self.clip)

    def apply(self, lr: float) -> None:
        """The optimizer update with the gradients of the last compute(); its final state becomes the carried one."""
        self.optimizer.step(self.params, self._grads, lr)
        self.state, self._grads, self._next = self._next, None, None

    def scorer(self):
        """How train.evaluate scores a chunk with this engine's weights: None, its own model.loss."""
        return None

    def weights(self) -> dict[str, np.ndarray]:
        """The latest weights (the live arrays: copy them to keep them)."""
        return self.params

    def load_weights(self, params: dict) -> None:
        for k, p in self.params.items():
            p[...] = params[k]

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, d: dict) -> None:
        self.optimizer.load_state_dict(d)

    def carried_state(self) -> list[tuple[np.ndarray, ...]]:
        return self.state

    def load_carried_state(self, state: list) -> None:
        self.state = [tuple(a.astype(self.dtype) for a in s) for s in state]

    def reset_state(self) -> None:
        """Zero carried state (an epoch wrapped around)."""
        self.state = model.init_state(self.mc, len(self.state[0][0]), self.dtype)

    def agree(self, main: list[float], flags: list[bool]) -> tuple[list[float], list[bool]]:
        """Distributed runs agree on rank 0's values and on any rank's flags; one process has nothing to agree."""
        return main, flags


def _torch_engine(mc, tc, params, device="cpu", dist=None):
    from charrnn.torch_engine import TorchEngine

    return TorchEngine(mc, tc, params, device, dist)


ENGINES = {"numpy": NumpyEngine, "torch": _torch_engine}


def distributed_env() -> bool:
    """Whether this process is one of several that torchrun (or another launcher) started."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def prepare(name: str, device: str = "cpu"):
    """Check that engine `name` can run on `device` here; under torchrun, join the process group. Returns the
    torch engine's Distributed context, or None for one process. Raises EngineUnavailable (bad usage)."""
    if name not in ENGINES:
        raise EngineUnavailable(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    if name == "numpy":
        if device != "cpu":
            raise EngineUnavailable(f"--device {device} needs --engine torch; the numpy engine runs on the cpu")
        if distributed_env():
            raise EngineUnavailable("a distributed run (torchrun, WORLD_SIZE > 1) needs --engine torch")
        return None
    from charrnn import torch_engine

    return torch_engine.prepare(device)


def make_engine(name: str, mc: ModelConfig, tc: TrainConfig, params: dict, device: str = "cpu", dist=None):
    """The engine registered under `name` for these configs and initial weights. Raises EngineUnavailable."""
    if name not in ENGINES:
        raise EngineUnavailable(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    return ENGINES[name](mc, tc, params, device, dist)
