"""Recurrent cells: vanilla RNN, LSTM and GRU, forward and backward side by side (one module each).

Shapes: T time, N batch, D input, H hidden, G gate blocks (config.GATES: 1 rnn, 4 lstm, 3 gru). The cells import
only numpy and charrnn.config (which imports nothing of ours), where the cell names, gate counts and parameter
shapes are defined once.
The cells' interface is time-major, x (T,N,D) in and hs (T,N,H) out, so every step of a layer is one contiguous
slice.

Parameters follow PyTorch's names and layouts (`weight_ih` (G·H,D), `weight_hh` (G·H,H), `bias_ih`, `bias_hh`
(G·H,)), gate order LSTM i, f, g, o and GRU r, z, n with r applied to (W_hn h + b_hn), so checkpoints interoperate
with `nn.RNN/LSTM/GRU`. A state is a tuple: (h,) for rnn and gru, (h, c) for lstm, each (N,H).

Each module starts from its reference: charrnn/cells/reference.py writes the three cells exactly as the
equations read, one step and one gate at a time, forward and backward; the tests hold the fast cells to it.

Speed is designed in (the figures are in BENCHMARKS.md, "What each change bought"): only the recurrence runs
inside the time loop. The input projection of all T steps is computed before it; the weight gradients are one
GEMM each after it; elementwise work writes into preallocated whole-sequence arrays with `out=`, so the loop
allocates nothing. Inside the loop the LSTM and GRU work gate-major: a step's gates are one (G·H,N) block,
W_hh @ hᵀ, which OpenBLAS computes faster than h @ W_hhᵀ at the default sizes, and which makes every gate a
contiguous (H,N) block (see lstm.py). The RNN (one gate, H×H weights, where the two orientations cost about the
same) stays batch-major (N,H) with a C-contiguous copy of W_hh.T. All gates share ONE tanh pass:
σ(a) = (1 + tanh(a/2)) / 2 (`common._gate_nonlinearity`), so the sigmoid gates' rows of the weights and biases are
halved in per-call copies (at T = 1, sampling, the pre-activations are scaled instead) and the sigmoid gates are
fixed up with one multiply-add. numpy's float32 tanh is cheaper here than the exp, add and reciprocal of
1 / (1 + exp(-a)), and it saturates to exactly ±1 without overflow. Backward recomputes nothing: the cache holds
each gate after its nonlinearity, and the local derivatives are formed from it one step at a time inside the
loop, while that step's gates are in cache.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from charrnn.cells.common import FUSED, init_params
from charrnn.config import GATES
from charrnn.cells.gru import gru_activations, gru_backward, gru_forward, gru_fuse
from charrnn.cells.lstm import lstm_activations, lstm_backward, lstm_forward, lstm_fuse
from charrnn.cells.rnn import rnn_activations, rnn_backward, rnn_forward

__all__ = ["CELLS", "Cell", "FUSED", "init_params", "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
           "gru_forward", "gru_backward"]


class Cell(NamedTuple):
    gates: int  # G: gate blocks in weight_ih / weight_hh, config.GATES[name]
    states: int  # arrays in a state tuple: 1 (h) or 2 (h, c)
    forward: Callable
    backward: Callable
    fuse: Callable | None = None  # (W_ih, W_hh) -> the FUSED weight its T = 1 step takes, if it has one
    activations: Callable | None = None  # forward cache -> {"h", ("c",) gates...: (T,N,H)}, for charrnn inspect


CELLS = {  # in config.CELL_NAMES order; a test checks that the two agree
    "rnn": Cell(GATES["rnn"], 1, rnn_forward, rnn_backward, activations=rnn_activations),
    "lstm": Cell(GATES["lstm"], 2, lstm_forward, lstm_backward, lstm_fuse, lstm_activations),
    "gru": Cell(GATES["gru"], 1, gru_forward, gru_backward, gru_fuse, gru_activations),
}
