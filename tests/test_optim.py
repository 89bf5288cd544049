"""Tests for charrnn.optim: clipping, the optimizers (against PyTorch where installed), schedules."""

import math

import numpy as np
import pytest

from charrnn import config
from charrnn.optim import (
    OPTIMIZERS,
    SCHEDULES,
    SGD,
    Adam,
    clip_grad_norm,
    learning_rate,
    make_optimizer,
)

# (name, momentum, weight_decay, lr) cases that make steady progress on the quadratic below
CASES = [
    ("sgd", 0.0, 0.0, 0.2),
    ("sgd", 0.9, 0.0, 0.05),
    ("adagrad", 0.0, 0.0, 0.5),
    ("rmsprop", 0.0, 0.0, 0.02),
    ("rmsprop", 0.5, 0.0, 0.01),
    ("adam", 0.0, 0.0, 0.1),
    ("adam", 0.0, 0.01, 0.1),
]
IDS = [f"{n}-mu{m}-wd{w}" for n, m, w, _ in CASES]


def make_params(dtype=np.float64, seed=0):
    """Two small parameters of different shapes."""
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((3, 4)).astype(dtype), "b": rng.standard_normal(5).astype(dtype)}


def random_grads(params, rng):
    return {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}


def quadratic(params):
    """f = 0.5 * sum(a * p^2) with curvatures a in [1, 3]; returns (f, grads)."""
    f, grads = 0.0, {}
    for k, p in params.items():
        a = np.linspace(1.0, 3.0, p.size).reshape(p.shape)
        f += 0.5 * float(np.sum(a * p.astype(np.float64) ** 2))
        grads[k] = (a * p).astype(p.dtype)
    return f, grads


def run(opt, params, lrs, seed=1):
    """Step `opt` with random gradients at the given learning rates."""
    rng = np.random.default_rng(seed)
    for lr in lrs:
        opt.step(params, random_grads(params, rng), lr)


def test_registry_matches_config():
    assert tuple(OPTIMIZERS) == config.OPTIMIZER_NAMES
    assert tuple(SCHEDULES) == config.SCHEDULE_NAMES


@pytest.mark.parametrize("name,momentum,wd,lr", CASES, ids=IDS)
def test_minimises_quadratic(name, momentum, wd, lr):
    params = make_params()
    opt = make_optimizer(name, params, momentum=momentum, weight_decay=wd)
    f0, _ = quadratic(params)
    losses = []
    for _ in range(60):
        f, g = quadratic(params)
        losses.append(f)
        opt.step(params, g, lr)
    assert losses[1] < f0
    assert quadratic(params)[0] < 0.1 * f0


@pytest.mark.parametrize("name,momentum,wd,lr", CASES, ids=IDS)
def test_updates_in_place_and_keep_dtype(name, momentum, wd, lr):
    params = make_params(np.float32)
    ids = {k: id(p) for k, p in params.items()}
    before = {k: p.copy() for k, p in params.items()}
    opt = make_optimizer(name, params, momentum=momentum, weight_decay=wd)
    grads = random_grads(params, np.random.default_rng(2))
    grads_before = {k: g.copy() for k, g in grads.items()}
    for _ in range(3):
        opt.step(params, grads, lr)
    for k, p in params.items():
        assert id(p) == ids[k] and p.dtype == np.float32
        assert not np.array_equal(p, before[k])
        np.testing.assert_array_equal(grads[k], grads_before[k])  # gradients are not modified
    for k, v in opt.state_dict().items():
        assert v.dtype == (np.int64 if k == "t" else np.float32)


@pytest.mark.parametrize("name,momentum,wd,lr", CASES, ids=IDS)
def test_state_dict_round_trip_is_bitwise(name, momentum, wd, lr):
    lrs = [lr * (1 + i / 10) for i in range(8)]
    straight = make_params()
    run(make_optimizer(name, straight, momentum=momentum, weight_decay=wd), straight, lrs)

    params, rng = make_params(), np.random.default_rng(1)
    first = make_optimizer(name, params, momentum=momentum, weight_decay=wd)
    for step_lr in lrs[:3]:
        first.step(params, random_grads(params, rng), step_lr)
    state, saved = first.state_dict(), {k: p.copy() for k, p in params.items()}
    assert state["t"].shape == () and state["t"].dtype == np.int64 and int(state["t"]) == 3
    first.step(params, random_grads(params, np.random.default_rng(9)), 1.0)  # must not alter `state`

    second = make_optimizer(name, saved, momentum=momentum, weight_decay=wd)
    second.load_state_dict(state)
    for step_lr in lrs[3:]:
        second.step(saved, random_grads(saved, rng), step_lr)
    for k in straight:
        np.testing.assert_array_equal(saved[k], straight[k])


def test_state_dict_keys():
    params = make_params()
    assert set(make_optimizer("adam", params).state_dict()) == {"t", "m/w", "m/b", "v/w", "v/b"}
    assert set(make_optimizer("sgd", params).state_dict()) == {"t"}
    assert set(make_optimizer("sgd", params, momentum=0.9).state_dict()) == {"t", "m/w", "m/b"}
    assert set(make_optimizer("adagrad", params).state_dict()) == {"t", "v/w", "v/b"}
    assert set(make_optimizer("rmsprop", params, momentum=0.5).state_dict()) == {"t", "v/w", "v/b", "m/w", "m/b"}


def test_load_state_dict_rejects_mismatch():
    params = make_params()
    state = Adam(params).state_dict()
    with pytest.raises(ValueError, match="missing 'm/b'"):
        Adam(params).load_state_dict({k: v for k, v in state.items() if k != "m/b"})
    with pytest.raises(ValueError, match="unexpected 'm/x'"):
        Adam(params).load_state_dict({**state, "m/x": np.zeros(1)})
    with pytest.raises(ValueError, match="'v/w'.*expected float64 \\(3, 4\\)"):
        Adam(params).load_state_dict({**state, "v/w": np.zeros((4, 3))})
    with pytest.raises(ValueError, match="'v/w'"):
        Adam(params).load_state_dict({**state, "v/w": np.zeros((3, 4), np.float32)})
    with pytest.raises(ValueError, match="'t'"):
        Adam(params).load_state_dict({**state, "t": np.array([1])})
    with pytest.raises(ValueError, match="missing 'm/b'"):
        SGD(params, momentum=0.9).load_state_dict(SGD(params).state_dict())


def test_bad_hyperparameters():
    params = make_params()
    with pytest.raises(ValueError, match="momentum applies to sgd and rmsprop"):
        make_optimizer("adam", params, momentum=0.9)
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        make_optimizer("lion", params)
    with pytest.raises(ValueError, match="weight_decay"):
        make_optimizer("sgd", params, weight_decay=-1.0)
    with pytest.raises(TypeError, match="beta3"):
        Adam(params, beta3=0.5)
    opt = Adam(params, beta1=0.5)
    assert opt.hyper["beta1"] == 0.5 and opt.hyper["beta2"] == 0.999


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_scales_to_max_norm(dtype):
    grads = {k: 10 * g for k, g in make_params(dtype).items()}
    original = {k: g.copy() for k, g in grads.items()}
    ids = {k: id(g) for k, g in grads.items()}
    expected = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    norm = clip_grad_norm(grads, 1.5)
    assert norm == pytest.approx(expected, rel=1e-12)
    after = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    assert after == pytest.approx(1.5, rel=1e-6)
    for k, g in grads.items():
        assert id(g) == ids[k] and g.dtype == dtype
        np.testing.assert_allclose(g, original[k] * (1.5 / expected), rtol=1e-6)


def test_clip_leaves_small_or_disabled_alone():
    grads = make_params()
    original = {k: g.copy() for k, g in grads.items()}
    norm = clip_grad_norm(grads, 1e6)
    assert norm > 1.0
    assert clip_grad_norm(grads, 0.0) == norm
    assert clip_grad_norm(grads, -1.0) == norm
    for k in grads:
        np.testing.assert_array_equal(grads[k], original[k])


def test_clip_non_finite_norm_is_reported_not_applied():
    grads = {"a": np.array([np.inf, 1.0]), "b": np.array([2.0])}
    assert clip_grad_norm(grads, 1.0) == math.inf
    assert grads["a"][1] == 1.0 and grads["b"][0] == 2.0


def test_schedules():
    assert learning_rate(0.1, "constant", 0.0, 0, 0) == 0.1
    assert learning_rate(0.1, "constant", 1.0, 99, 0) == 0.1
    assert learning_rate(0.1, "cosine", 0.0, 10, 0) == pytest.approx(0.1)
    assert learning_rate(0.1, "cosine", 0.5, 10, 0) == pytest.approx(0.1 * 0.505)
    assert learning_rate(0.1, "cosine", 1.0, 10, 0) == pytest.approx(0.1 * 0.01)
    assert learning_rate(0.1, "cosine", 2.0, 10, 0) == pytest.approx(0.1 * 0.01)  # progress is clamped
    assert learning_rate(0.1, "step", 0.0, 0, 0) == 0.1
    assert learning_rate(0.1, "step", 0.49, 0, 0) == 0.1
    assert learning_rate(0.1, "step", 0.5, 0, 0) == 0.05
    assert learning_rate(0.1, "step", 0.75, 0, 0) == 0.025
    assert learning_rate(0.1, "step", 1.0, 0, 0) == 0.025
    cosine = [learning_rate(1.0, "cosine", p / 20, 0, 0) for p in range(21)]
    assert all(a > b for a, b in zip(cosine, cosine[1:]))


def test_warmup():
    lrs = [learning_rate(0.1, "constant", 0.0, s, 4) for s in range(6)]
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert learning_rate(0.1, "cosine", 0.5, 1, 4) == pytest.approx(0.1 * 0.505 * 0.5)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        learning_rate(0.1, "linear", 0.0, 0, 0)


TORCH_CASES = [
    ("sgd", 0.0, 0.0, "SGD", {}),
    ("sgd", 0.9, 0.0, "SGD", {"momentum": 0.9}),
    ("sgd", 0.9, 0.01, "SGD", {"momentum": 0.9, "weight_decay": 0.01}),
    ("adagrad", 0.0, 0.0, "Adagrad", {"eps": 1e-8}),
    ("adagrad", 0.0, 0.01, "Adagrad", {"eps": 1e-8, "weight_decay": 0.01}),
    ("rmsprop", 0.0, 0.0, "RMSprop", {"alpha": 0.99, "eps": 1e-8}),
    ("rmsprop", 0.5, 0.01, "RMSprop", {"alpha": 0.99, "eps": 1e-8, "momentum": 0.5, "weight_decay": 0.01}),
    ("adam", 0.0, 0.0, "Adam", {"betas": (0.9, 0.999), "eps": 1e-8}),
    ("adam", 0.0, 0.01, "AdamW", {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}),
]


TORCH_IDS = [f"{c[3]}-mu{c[1]}-wd{c[2]}" for c in TORCH_CASES]


@pytest.mark.parametrize("name,momentum,wd,torch_name,kwargs", TORCH_CASES, ids=TORCH_IDS)
def test_matches_torch(name, momentum, wd, torch_name, kwargs):
    torch = pytest.importorskip("torch", reason="torch not installed: skipping the PyTorch equivalence check")
    torch.set_num_threads(1)
    params = make_params(np.float64)
    tparams = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params.values()]
    topt = getattr(torch.optim, torch_name)(tparams, lr=0.1, **kwargs)
    opt = make_optimizer(name, params, momentum=momentum, weight_decay=wd)
    rng = np.random.default_rng(3)
    for lr in (0.01, 0.03, 0.02, 0.05, 0.01):
        grads = random_grads(params, rng)
        for t, g in zip(tparams, grads.values()):
            t.grad = torch.from_numpy(g.copy())
        topt.param_groups[0]["lr"] = lr
        topt.step()
        opt.step(params, grads, lr)
    for t, p in zip(tparams, params.values()):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-10, atol=1e-13)
