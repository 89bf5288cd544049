"""Cells: packed forward equals a naive per-step, per-gate loop; every gradient matches centred differences."""

import numpy as np
import pytest

from charrnn.cells import CELLS, init_params
from gradcheck import numeric_grad, rel_error

N, T, D, H = 2, 3, 4, 5  # all different, so a wrong transpose fails loudly


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def naive_forward(cell, x, state, p):
    """Per time step, per gate, batch-first, straight from the equations (PyTorch's definitions)."""
    W_ih, W_hh, b_ih, b_hh = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
    G = CELLS[cell].gates
    Wi = [W_ih[k * H : (k + 1) * H] for k in range(G)]
    Wh = [W_hh[k * H : (k + 1) * H] for k in range(G)]
    bi = [b_ih[k * H : (k + 1) * H] for k in range(G)]
    bh = [b_hh[k * H : (k + 1) * H] for k in range(G)]
    h = state[0].copy()
    c = state[1].copy() if cell == "lstm" else None
    out = []
    for t in range(x.shape[0]):
        xt = x[t]
        pre = [xt @ Wi[k].T + bi[k] + h @ Wh[k].T + bh[k] for k in range(G)]
        if cell == "rnn":
            h = np.tanh(pre[0])
        elif cell == "lstm":
            i, f, g, o = sigmoid(pre[0]), sigmoid(pre[1]), np.tanh(pre[2]), sigmoid(pre[3])
            c = f * c + i * g
            h = o * np.tanh(c)
        else:
            r = sigmoid(xt @ Wi[0].T + bi[0] + h @ Wh[0].T + bh[0])
            z = sigmoid(xt @ Wi[1].T + bi[1] + h @ Wh[1].T + bh[1])
            n = np.tanh(xt @ Wi[2].T + bi[2] + r * (h @ Wh[2].T + bh[2]))
            h = (1 - z) * n + z * h
        out.append(h)
    final = (h, c) if cell == "lstm" else (h,)
    return np.stack(out), final


def make(cell, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    p = init_params(rng, D, H, CELLS[cell].gates, np.float64)
    for k in p:  # larger than the default init, and random non-zero biases, so every path matters
        p[k] = rng.normal(0, scale, p[k].shape)
    x = rng.normal(size=(T, N, D))
    state = tuple(rng.normal(size=(N, H)) for _ in range(CELLS[cell].states))
    return rng, p, x, state


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_forward_equals_naive_loop(cell):
    _, p, x, state = make(cell)
    hs, final, _ = CELLS[cell].forward(x, state, p)
    ref_hs, ref_final = naive_forward(cell, x, state, p)
    assert hs.shape == (T, N, H)
    np.testing.assert_allclose(hs, ref_hs, rtol=0, atol=1e-12)
    for a, b in zip(final, ref_final):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_forward_extreme_preactivations_are_finite(cell):
    _, p, x, state = make(cell, scale=50.0)  # exp overflows inside the sigmoid: must still give exact 0/1
    state = tuple(np.tanh(s).astype(np.float32) for s in state)  # a reachable state: |h| <= 1
    hs, _, _ = CELLS[cell].forward(x.astype(np.float32), state,
                                   {k: v.astype(np.float32) for k, v in p.items()})
    assert np.all(np.isfinite(hs))
    assert np.all(np.abs(hs) <= 1.0)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_gradients_match_centred_differences(cell):
    rng, p, x, state = make(cell, scale=0.5)
    fwd, bwd = CELLS[cell].forward, CELLS[cell].backward
    dout = rng.normal(size=(T, N, H))  # random upstream gradient

    def f():
        hs, _, _ = fwd(x, state, p)
        return float(np.sum(hs * dout))

    hs, _, cache = fwd(x, state, p)
    dx, dstate, grads = bwd(dout, cache)
    assert set(grads) == set(p)
    checks = {"x": (dx, x)} | {f"state{i}": (dstate[i], state[i]) for i in range(len(state))}
    checks |= {name: (grads[name], p[name]) for name in p}
    errors = {name: rel_error(a, numeric_grad(f, arr)) for name, (a, arr) in checks.items()}
    for name, (a, arr) in checks.items():
        assert a.shape == arr.shape, name
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_float32_stays_float32(cell):
    _, p, x, state = make(cell)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    hs, final, cache = CELLS[cell].forward(x.astype(np.float32), tuple(s.astype(np.float32) for s in state), p32)
    dx, dstate, grads = CELLS[cell].backward(np.ones_like(hs), cache)
    assert hs.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(s.dtype == np.float32 for s in (*final, *dstate))


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("n, t", [(1, 1), (2, 1), (3, 2)])
def test_short_sequences_take_the_same_maths(cell, n, t):
    """T = 1 (sampling) has its own weight handling in the cells: check its forward and gradients too."""
    rng, p, _, _ = make(cell, seed=5, scale=0.5)
    x = rng.normal(size=(t, n, D))
    state = tuple(rng.normal(size=(n, H)) for _ in range(CELLS[cell].states))
    hs, final, cache = CELLS[cell].forward(x, state, p)
    ref_hs, ref_final = naive_forward(cell, x, state, p)
    np.testing.assert_allclose(hs, ref_hs, rtol=0, atol=1e-12)
    dout = rng.normal(size=hs.shape)
    dx, dstate, grads = CELLS[cell].backward(dout, cache)

    def f():
        return float(np.sum(CELLS[cell].forward(x, state, p)[0] * dout))

    errors = {"x": rel_error(dx, numeric_grad(f, x))}
    errors |= {name: rel_error(grads[name], numeric_grad(f, p[name])) for name in p}
    errors |= {f"state{i}": rel_error(dstate[i], numeric_grad(f, state[i])) for i in range(len(state))}
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_steps_of_one_chain_into_the_long_sequence(cell):
    _, p, x, state = make(cell, seed=6)
    whole, whole_final, _ = CELLS[cell].forward(x, state, p)
    outs, st = [], state
    for t in range(T):
        h, st, _ = CELLS[cell].forward(x[t : t + 1], st, p)
        outs.append(h)
    np.testing.assert_allclose(np.concatenate(outs), whole, rtol=0, atol=1e-12)
    for a, b in zip(st, whole_final):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, scale", [(1, 0.5), (3, 0.5), (1, 30.0)])
def test_lstm_step_equals_the_loop_at_t_1_to_the_last_bit(dtype, n, scale):
    """lstm_forward at T = 1 without a cache takes `_lstm_step` (sampling); it must give the loop's every bit."""
    from charrnn.cells.lstm import _lstm_loop, _lstm_step, lstm_forward

    rng = np.random.default_rng(7)
    p = {k: rng.normal(0, scale, v.shape).astype(dtype) for k, v in init_params(rng, D, H, 4, dtype).items()}
    x = rng.normal(size=(1, n, D)).astype(dtype)
    for state_dtype in (dtype, np.float64):  # a state of another dtype is cast to x's, as in the loop
        state = tuple(rng.normal(size=(n, H)).astype(state_dtype) for _ in range(2))
        step, loop = _lstm_step(x, state, p), _lstm_loop(x, state, p)
        assert step[2] is None and lstm_forward(x, state, p, need_cache=False)[2] is None
        for a, b in zip([step[0], *step[1]], [loop[0], *loop[1]]):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        chained = _lstm_step(x, step[1], p)  # a step's own state (gate-major views) feeds the next step
        again = _lstm_loop(x, loop[1], p)
        for a, b in zip([chained[0], *chained[1]], [again[0], *again[1]]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cols", [1, 7, 16, 2048, 2049])
def test_odd_pitch_buffers_are_plain_arrays_with_an_odd_line_pitch(dtype, cols):
    """The gate-major gradient buffers: the requested shape, rows an odd number of 64-byte lines apart, no overlap."""
    from charrnn.cells.common import _odd_pitch

    a = _odd_pitch(5, cols, dtype)
    assert a.shape == (5, cols) and a.dtype == dtype and a.strides[1] == a.itemsize
    assert a.strides[0] % 64 == 0 and (a.strides[0] // 64) % 2 == 1 and a.strides[0] >= cols * a.itemsize
    a[...] = np.arange(5)[:, None]  # rows must not share memory
    np.testing.assert_array_equal(a, np.broadcast_to(np.arange(5, dtype=dtype)[:, None], (5, cols)))
