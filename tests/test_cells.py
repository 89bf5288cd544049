"""Cells: the fast forward and backward equal the reference cells (cells/reference.py: per step, per gate, as the
equations read); every gradient, fast and reference, matches centred differences."""

import numpy as np
import pytest

from charrnn import config
from charrnn.cells import CELLS, init_params
from charrnn.cells.reference import REFERENCE
from gradcheck import numeric_grad, rel_error

N, T, D, H = 2, 3, 4, 5  # all different, so a wrong transpose fails loudly


def make(cell, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    p = init_params(rng, D, H, CELLS[cell].gates, np.float64)
    for k in p:  # larger than the default init, and random non-zero biases, so every path matters
        p[k] = rng.normal(0, scale, p[k].shape)
    x = rng.normal(size=(T, N, D))
    state = tuple(rng.normal(size=(N, H)) for _ in range(CELLS[cell].states))
    return rng, p, x, state


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_forward_equals_the_reference(cell):
    _, p, x, state = make(cell)
    hs, final, _ = CELLS[cell].forward(x, state, p)
    ref_hs, ref_final, _ = REFERENCE[cell].forward(x, state, p)
    assert hs.shape == (T, N, H)
    np.testing.assert_allclose(hs, ref_hs, rtol=0, atol=1e-12)
    for a, b in zip(final, ref_final):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_forward_extreme_preactivations_saturate_as_the_reference_does(cell):
    """Pre-activations beyond float32's exp range (|a| > 89): the fast float32 cell must saturate to what the
    equations give (computed in float64 from the same float32 numbers), not to NaN, inf or a wrong constant."""
    _, p, x, state = make(cell, scale=50.0)
    assert np.abs(x @ p["weight_ih"].T).max() > 89  # the input parts alone reach the overflow range

    def rounded(a):  # float32's value, held in float64
        return a.astype(np.float32).astype(np.float64)

    x, p = rounded(x), {k: rounded(v) for k, v in p.items()}
    state = tuple(rounded(np.tanh(s)) for s in state)  # a reachable state: |h| <= 1
    hs, final, _ = CELLS[cell].forward(x.astype(np.float32), tuple(s.astype(np.float32) for s in state),
                                       {k: v.astype(np.float32) for k, v in p.items()})
    ref_hs, ref_final, _ = REFERENCE[cell].forward(x, state, p)
    assert hs.dtype == np.float32
    np.testing.assert_allclose(hs, ref_hs, rtol=0, atol=1e-5)
    for a, b in zip(final, ref_final, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def check_gradients(forward, backward, cell):
    """backward's dx, dstate and every parameter gradient against centred differences of sum(forward(...) * dout)."""
    rng, p, x, state = make(cell, scale=0.5)
    dout = rng.normal(size=(T, N, H))  # random upstream gradient

    def f():
        hs, _, _ = forward(x, state, p)
        return float(np.sum(hs * dout))

    hs, _, cache = forward(x, state, p)
    dx, dstate, grads = backward(dout, cache)
    assert set(grads) == set(p)
    checks = {"x": (dx, x)} | {f"state{i}": (dstate[i], state[i]) for i in range(len(state))}
    checks |= {name: (grads[name], p[name]) for name in p}
    errors = {name: rel_error(a, numeric_grad(f, arr)) for name, (a, arr) in checks.items()}
    for name, (a, arr) in checks.items():
        assert a.shape == arr.shape, name
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_gradients_match_centred_differences(cell):
    check_gradients(CELLS[cell].forward, CELLS[cell].backward, cell)


@pytest.mark.parametrize("cell", sorted(REFERENCE))
def test_reference_gradients_match_centred_differences(cell):
    check_gradients(REFERENCE[cell].forward, REFERENCE[cell].backward, cell)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_fast_gradients_equal_the_reference(cell):
    rng, p, x, state = make(cell, seed=3, scale=0.5)
    dout = rng.normal(size=(T, N, H))
    fast = CELLS[cell].backward(dout, CELLS[cell].forward(x, state, p)[2])
    ref = REFERENCE[cell].backward(dout, REFERENCE[cell].forward(x, state, p)[2])
    pairs = [(fast[0], ref[0]), *zip(fast[1], ref[1], strict=True)] + [(fast[2][k], ref[2][k]) for k in p]
    for a, b in pairs:
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_every_cell_has_a_reference():
    assert list(REFERENCE) == list(CELLS)


def test_config_names_every_cell_with_its_gate_count():
    """config (no numpy: the CLI's choices, checkpoint validation) and the cell registry describe the same cells."""
    assert config.CELL_NAMES == tuple(CELLS)
    assert config.GATES == {name: cell.gates for name, cell in CELLS.items()}
    for name, cell in CELLS.items():  # and a cell's weights really have G blocks: its forward accepts them
        p = init_params(np.random.default_rng(0), D, H, config.GATES[name])
        state = tuple(np.zeros((N, H), np.float32) for _ in range(cell.states))
        hs, _, _ = cell.forward(np.zeros((T, N, D), np.float32), state, p)
        assert hs.shape == (T, N, H)


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
    ref_hs, ref_final, _ = REFERENCE[cell].forward(x, state, p)
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


def _arrays(tree):
    """Every ndarray in a nest of tuples, lists, dicts and NamedTuples, copied, in a fixed order."""
    if isinstance(tree, np.ndarray):
        return [tree.copy()]
    if isinstance(tree, dict):
        return [a for k in sorted(tree) for a in _arrays(tree[k])]
    if isinstance(tree, (tuple, list)):
        return [a for item in tree for a in _arrays(item)]
    return []


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("n", [1, N])
def test_a_call_leaves_what_an_earlier_call_returned_alone(cell, n):
    """The cells reuse scratch buffers across calls (common._scratch): nothing a forward or backward returned (outputs,
    final state, cache, gradients) may change when the next call, with the same shapes, runs."""
    _, p, x, state = make(cell, seed=9)
    x, state = x[:, :n], tuple(s[:n] for s in state)
    fwd = CELLS[cell].forward(x, state, p)
    bwd = CELLS[cell].backward(np.ones((T, n, H)), fwd[2])
    before = _arrays((fwd, bwd))
    _, p2, x2, state2 = make(cell, seed=10)
    out = CELLS[cell].forward(x2[:, :n], tuple(s[:n] for s in state2), p2)
    CELLS[cell].backward(np.full((T, n, H), 2.0), out[2])
    for a, b in zip(before, _arrays((fwd, bwd)), strict=True):
        np.testing.assert_array_equal(a, b)
