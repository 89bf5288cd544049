"""Print the gradient-check and PyTorch-equivalence errors that tests/test_cells.py and tests/test_model.py assert.

Not a test (pytest does not collect it). Run from the project root:

    python tests/benchmarks/gradcheck_report.py

The PyTorch lines need torch (the `bench` extra); without it they are skipped.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers

import test_cells as tc  # noqa: E402
import test_model as tm  # noqa: E402
from gradcheck import numeric_grad, rel_error  # noqa: E402

from charrnn import model  # noqa: E402
from charrnn.cells import CELLS  # noqa: E402
from charrnn.cells.reference import REFERENCE  # noqa: E402
from charrnn.config import ModelConfig  # noqa: E402


def cell_errors(cell: str) -> tuple[dict, float]:
    """Per-array gradient-check errors of one cell, and the fast-vs-reference forward difference."""
    rng, p, x, state = tc.make(cell, scale=0.5)
    fwd, bwd = CELLS[cell].forward, CELLS[cell].backward
    dout = rng.normal(size=(tc.T, tc.N, tc.H))  # random upstream gradient

    def f():
        return float(np.sum(fwd(x, state, p)[0] * dout))

    hs, _, cache = fwd(x, state, p)
    dx, dstate, grads = bwd(dout, cache)
    errors = {"x": rel_error(dx, numeric_grad(f, x))}
    errors |= {f"state{i}": rel_error(dstate[i], numeric_grad(f, state[i])) for i in range(len(state))}
    errors |= {k: rel_error(grads[k], numeric_grad(f, p[k])) for k in p}
    ref, _, _ = REFERENCE[cell].forward(x, state, p)
    return errors, float(np.abs(hs - ref).max())


def model_error(cell: str) -> float:
    """The largest gradient-check error over every parameter of a 2-layer model."""
    mc = tm.small(cell)
    params = tm.random_params(mc)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, mc.vocab_size, (2, 3)), rng.integers(0, mc.vocab_size, (2, 3))
    state = [tuple(rng.normal(size=(2, mc.hidden)) for _ in s) for s in model.init_state(mc, 2, np.float64)]
    _, grads, _ = model.loss_and_grads(params, mc, x, y, state)
    return max(rel_error(grads[k], numeric_grad(lambda: model.loss_and_grads(params, mc, x, y, state)[0],
                                                params[k])) for k in params)


def torch_errors(cell: str) -> tuple[float, float, float]:
    """Relative errors of logits, loss and the worst parameter gradient against PyTorch (float64)."""
    import torch

    mc = ModelConfig(cell=cell, vocab_size=11, embed=6, hidden=9, layers=2)
    params = tm.random_params(mc, seed=3)
    _, net = tm.torch_model(mc, params)
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 11, (3, 8)), rng.integers(0, 11, (3, 8))
    state = [tuple(rng.normal(size=(3, 9)) for _ in s) for s in model.init_state(mc, 3, np.float64)]
    logits, _, _ = model.forward(params, mc, x, state)
    loss, grads, _ = model.loss_and_grads(params, mc, x, y, state)
    h0 = torch.from_numpy(np.stack([s[0] for s in state]))
    tstate = (h0, torch.from_numpy(np.stack([s[1] for s in state]))) if cell == "lstm" else h0
    tlogits, _ = net(torch.from_numpy(x), tstate)
    tloss = torch.nn.functional.cross_entropy(tlogits.reshape(-1, 11), torch.from_numpy(y).reshape(-1))
    tloss.backward()

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    worst = max(rel(grads[k], p.grad.numpy()) for k, p in net.named_parameters())
    return rel(logits.transpose(1, 0, 2), tlogits.detach().numpy()), abs(loss - tloss.item()) / tloss.item(), worst


def main() -> None:
    for cell in sorted(CELLS):
        errors, ref = cell_errors(cell)
        detail = ", ".join(f"{k} {v:.1e}" for k, v in errors.items())
        print(f"cell {cell}: max gradcheck rel err {max(errors.values()):.2e} ({detail}); "
              f"fast vs reference forward max abs diff {ref:.1e}")
        print(f"  model (2 layers): max gradcheck rel err {model_error(cell):.2e}")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: PyTorch equivalence not measured")
        return
    for cell in sorted(CELLS):
        logits, loss, grad = torch_errors(cell)
        print(f"torch {cell}: logits rel err {logits:.1e}, loss rel err {loss:.1e}, max grad rel err {grad:.1e}")


if __name__ == "__main__":
    main()
