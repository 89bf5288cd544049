"""The whole model: gradients, initial loss, carried state, overfitting, and PyTorch's logits where torch exists."""

import numpy as np
import pytest

from charrnn import config, model
from charrnn.cells import CELLS, FUSED
from charrnn.config import ModelConfig
from gradcheck import numeric_grad, rel_error

CELL_NAMES = sorted(CELLS)


def small(cell, dropout=0.0, V=7):
    return ModelConfig(cell=cell, vocab_size=V, embed=4, hidden=5, layers=2, dropout=dropout)


def random_params(mc, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = model.init_params(mc, rng, dtype)
    for k in params:  # random non-zero biases and weights of a size where every path matters
        params[k] = rng.normal(0, 0.5, params[k].shape).astype(dtype)
    return params


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_model_gradients_match_centred_differences(cell, dropout):
    mc = small(cell, dropout)
    params = random_params(mc)
    rng = np.random.default_rng(1)
    N, T = 2, 3
    x, y = rng.integers(0, mc.vocab_size, (N, T)), rng.integers(0, mc.vocab_size, (N, T))
    state = [tuple(rng.normal(size=(N, mc.hidden)) for _ in s) for s in model.init_state(mc, N, np.float64)]

    def f():  # the same dropout masks every call
        return model.loss_and_grads(params, mc, x, y, state, np.random.default_rng(7) if dropout else None)[0]

    _, grads, _ = model.loss_and_grads(params, mc, x, y, state, np.random.default_rng(7) if dropout else None)
    assert set(grads) == set(params)
    errors = {k: rel_error(grads[k], numeric_grad(f, params[k])) for k in params}
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_init_params_follow_param_shapes_and_the_seed(cell):
    mc = ModelConfig(cell=cell, vocab_size=7, embed=3, hidden=5, layers=3)
    params = model.init_params(mc, np.random.default_rng(0), np.float64)
    assert {k: v.shape for k, v in params.items()} == config.param_shapes(mc)
    assert list(params) == list(config.param_shapes(mc))
    again = model.init_params(mc, np.random.default_rng(0), np.float64)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    bound = 1 / np.sqrt(mc.hidden)
    assert all(np.abs(v).max() <= bound for k, v in params.items() if k != "embedding.weight")


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_initial_loss_is_about_ln_vocab(cell):
    mc = ModelConfig(cell=cell, vocab_size=65, embed=16, hidden=64, layers=2)
    rng = np.random.default_rng(0)
    params = model.init_params(mc, rng)
    x, y = rng.integers(0, 65, (8, 20)), rng.integers(0, 65, (8, 20))
    loss, _, _ = model.loss_and_grads(params, mc, x, y, model.init_state(mc, 8))
    assert abs(loss - np.log(65)) < 0.15


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_two_chunks_with_carried_state_equal_one_long_chunk(cell):
    mc = small(cell)
    params = random_params(mc)
    ids = np.random.default_rng(2).integers(0, mc.vocab_size, (3, 10))
    whole, whole_state, _ = model.forward(params, mc, ids, model.init_state(mc, 3, np.float64))
    first, state, _ = model.forward(params, mc, ids[:, :4], model.init_state(mc, 3, np.float64))
    second, final, _ = model.forward(params, mc, ids[:, 4:], state)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=0, atol=1e-12)
    for a, b in zip(sum(map(tuple, final), ()), sum(map(tuple, whole_state), ())):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, t", [(1, 1), (3, 1), (2, 5)])
def test_forward_without_cache_gives_the_same_bits_and_no_cache(cell, dtype, n, t):
    mc = small(cell)
    params = random_params(mc, dtype=dtype)
    ids = np.random.default_rng(3).integers(0, mc.vocab_size, (n, t))
    state = [tuple(np.random.default_rng(4).normal(size=s.shape).astype(dtype) for s in layer)
             for layer in model.init_state(mc, n, dtype)]
    logits, final, cache = model.forward(params, mc, ids, state)
    lean, lean_final, none = model.forward(params, mc, ids, state, need_cache=False)
    assert none is None and cache is not None
    np.testing.assert_array_equal(lean, logits)
    for a, b in zip(sum(map(tuple, lean_final), ()), sum(map(tuple, final), ())):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_tiny_model_overfits_a_repeated_string(cell):
    from charrnn.data import Vocab

    text = "hello charrnn! " * 8
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    mc = ModelConfig(cell=cell, vocab_size=len(vocab), embed=8, hidden=32, layers=1)
    rng = np.random.default_rng(0)
    params = model.init_params(mc, rng)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v2 = {k: np.zeros_like(v) for k, v in params.items()}
    x, y = ids[None, :-1], ids[None, 1:]
    for t in range(1, 301):  # plain Adam written out, so this test needs only the model
        loss, grads, _ = model.loss_and_grads(params, mc, x, y, model.init_state(mc, 1))
        for k in params:
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v2[k] = 0.999 * v2[k] + 0.001 * grads[k] ** 2
            params[k] -= 0.01 * (m[k] / (1 - 0.9**t)) / (np.sqrt(v2[k] / (1 - 0.999**t)) + 1e-8)
    assert loss < 0.1, loss


def test_cross_entropy_is_stable_and_exact():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    loss, d = model.cross_entropy(logits.copy(), np.array([2, 1]))
    assert np.isfinite(loss)
    assert loss == pytest.approx((2000.0 + np.log(3)) / 2)
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# The same weights give PyTorch's logits, loss and gradients.


def torch_model(mc, params):
    torch = pytest.importorskip("torch", reason="torch is not installed: PyTorch equivalence not checked")
    rnn_cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[mc.cell]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(mc.vocab_size, mc.embed)
            self.rnn = rnn_cls(mc.embed, mc.hidden, num_layers=mc.layers, batch_first=True)
            self.decoder = torch.nn.Linear(mc.hidden, mc.vocab_size)

        def forward(self, ids, state):
            out, state = self.rnn(self.embedding(ids), state)
            return self.decoder(out), state

    net = Net().double()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    return torch, net


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_same_weights_give_pytorch_logits_loss_and_gradients(cell):
    mc = ModelConfig(cell=cell, vocab_size=11, embed=6, hidden=9, layers=2)
    params = random_params(mc, seed=3)
    torch, net = torch_model(mc, params)
    rng = np.random.default_rng(4)
    N, T = 3, 8
    x, y = rng.integers(0, mc.vocab_size, (N, T)), rng.integers(0, mc.vocab_size, (N, T))
    state = [tuple(rng.normal(size=(N, mc.hidden)) for _ in s) for s in model.init_state(mc, N, np.float64)]

    logits, final, _ = model.forward(params, mc, x, state)
    loss, grads, _ = model.loss_and_grads(params, mc, x, y, state)

    hs = torch.from_numpy(np.stack([s[0] for s in state]))
    tstate = (hs, torch.from_numpy(np.stack([s[1] for s in state]))) if cell == "lstm" else hs
    tlogits, tfinal = net(torch.from_numpy(x), tstate)
    tloss = torch.nn.functional.cross_entropy(tlogits.reshape(-1, mc.vocab_size), torch.from_numpy(y).reshape(-1))
    tloss.backward()

    def close(a, b):
        return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)

    assert close(logits.transpose(1, 0, 2), tlogits.detach().numpy()) < 1e-9
    assert abs(loss - tloss.item()) / tloss.item() < 1e-9
    assert close(final[-1][0], (tfinal[0] if cell == "lstm" else tfinal)[-1].detach().numpy()) < 1e-9
    errors = {k: close(grads[k], p.grad.numpy()) for k, p in net.named_parameters()}
    assert max(errors.values()) < 1e-9, errors


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_stepping_weights_give_the_same_steps_to_rounding(cell, dtype, tol, n):
    """model.for_stepping (sampling, beam search): [W_ih | W_hh] per layer; T = 1 steps agree with the plain ones
    to rounding, over a chain of steps, and the original params are left as they were."""
    mc = small(cell)
    params = random_params(mc, seed=3, dtype=dtype)
    before = {k: v.copy() for k, v in params.items()}
    stepping = model.for_stepping(params, mc)
    for k in range(mc.layers):
        fused = stepping[f"rnn.{FUSED}_l{k}"]
        D = mc.embed if k == 0 else mc.hidden
        assert fused.shape == (4 * mc.hidden, D + mc.hidden) and fused.dtype == dtype
        G = CELLS[cell].gates
        np.testing.assert_array_equal(fused[: G * mc.hidden, :D], params[f"rnn.weight_ih_l{k}"])
    assert set(params) == set(before) and all(np.array_equal(params[k], before[k]) for k in params)
    rng = np.random.default_rng(4)
    plain_state = fused_state = [tuple(rng.normal(size=(n, mc.hidden)).astype(dtype) for _ in s)
                                 for s in model.init_state(mc, n)]
    for _ in range(5):
        ids = rng.integers(0, mc.vocab_size, (n, 1))
        plain, plain_state, _ = model.forward(params, mc, ids, plain_state, need_cache=False)
        fused, fused_state, _ = model.forward(stepping, mc, ids, fused_state, need_cache=False)
        assert fused.dtype == dtype
        np.testing.assert_allclose(fused, plain, rtol=tol, atol=tol)
        for a, b in zip(sum(map(list, fused_state), []), sum(map(list, plain_state), [])):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_for_stepping_leaves_the_rnn_alone():
    mc = small("rnn")
    params = random_params(mc)
    assert model.for_stepping(params, mc) is params
