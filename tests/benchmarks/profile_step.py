"""Where a training step's time goes, charrnn's and PyTorch's (not a test).

    python tests/benchmarks/profile_step.py --cell lstm --batch 16 --steps 20 --torch --floor

charrnn: wraps the cell forward/backward, the decoder/loss and the optimizer with timers, runs full optimizer
steps as bench.py does (forward, backward, clip, Adam, state carried), and prints milliseconds per step for each
phase (mean over steps; the median step too).
--floor: the BLAS part alone. Every matrix product of one charrnn step, in the shapes and memory layouts the
cells use (per-step recurrent products, hoisted projections, the weight and input gradients, the decoder's), run
back to back on arrays of those shapes, timed as a step and per kind (with its GFLOP/s); what the cells take
beyond that is elementwise work and Python. Also the cost of one numpy call on a gate block of the step's size
and on a 1-element array (dispatch).
--torch: the same step of the PyTorch script bench.py times (Embedding -> nn.LSTM/GRU/RNN -> Linear, Adam,
clip_grad_norm_), its total per step, and torch.profiler's operators by self CPU time per step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench.py, next to this file: corpus, configs and the PyTorch runner)

ROOT = bench.ROOT
now = time.perf_counter  # main() sets time.process_time for --clock cpu


def charrnn_phases(args, mc, tc, text) -> None:
    import numpy as np

    from charrnn import cells, data, model, optim

    times = defaultdict(list)

    def timed(label, fn):
        def wrapper(*a, **k):
            t0 = now()
            out = fn(*a, **k)
            times[label].append(now() - t0)
            return out
        return wrapper

    c = cells.CELLS[mc.cell]
    cells.CELLS[mc.cell] = c._replace(forward=timed("cell forward (all layers)", c.forward),
                                      backward=timed("cell backward (all layers)", c.backward))
    model.cross_entropy = timed("cross_entropy", model.cross_entropy)
    vocab = data.Vocab.from_text(text)
    streams = data.streams(vocab.encode(text), tc.batch)
    params = model.init_params(mc, np.random.default_rng(0))
    opt = optim.make_optimizer(tc.optimizer, params)
    clip, step = timed("clip_grad_norm", optim.clip_grad_norm), timed(f"{tc.optimizer} step", opt.step)
    model.forward, model.backward = timed("model.forward", model.forward), timed("model.backward", model.backward)
    state = model.init_state(mc, tc.batch)
    for k in range(args.steps + 3):
        if k == 3:
            times.clear()
        x, y = data.get_batch(streams, k, tc.seq)
        t0 = now()
        _, grads, state = model.loss_and_grads(params, mc, x, y, state)
        clip(grads, tc.clip)
        step(params, grads, tc.lr)
        times["TOTAL step"].append(now() - t0)
    print(f"charrnn, {bench.describe('x', mc, tc)}, {args.threads} thread(s), mean of {args.steps} steps:")
    for k, v in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {k:32s} {sum(v) / args.steps * 1e3:8.2f} ms/step")
    total = statistics.median(times["TOTAL step"])
    print(f"  median step {total * 1e3:.1f} ms = {tc.batch * tc.seq / total:,.0f} chars/s")


REC, GRADS = "recurrent products (2 per step and layer)", "weight and input gradients (one GEMM each)"
PROJ, DEC = "input projections (forward)", "decoder (forward, its gradients)"


def blas_floor(args, mc, tc) -> None:
    """Every GEMM of one charrnn training step, in the cells' shapes and layouts, back to back."""
    import numpy as np

    from charrnn.cells.common import _odd_pitch
    from charrnn.config import GATES

    rng = np.random.default_rng(0)
    f32 = np.float32
    T, N, D, H, V, L = tc.seq, tc.batch, mc.embed, mc.hidden, mc.vocab_size, mc.layers
    G = GATES[mc.cell]

    def r(*shape):
        return rng.standard_normal(shape).astype(f32)

    layers = []
    for k in range(L):
        Dk = D if k == 0 else H
        layers.append(dict(W_ih=r(G * H, Dk), W_hh=r(G * H, H), x=r(T, N, Dk), hs=r(T + 1, N, H),
                           hsT=r(T + 1, H, N), out=np.empty((T, G * H, N), f32)))
    top, Wd = r(T * N, H), r(V, H)
    dlog = r(T * N, V)
    gm = mc.cell in ("lstm", "gru")
    hW = np.empty((G * H, N), f32) if gm else np.empty((N, H), f32)
    dh = np.empty((H, N), f32) if gm else np.empty((N, H), f32)
    da = _odd_pitch(G * H, T * N, f32) if gm else np.empty((T, N, G * H), f32)
    da[...] = 0.01

    parts = defaultdict(float)  # seconds per kind of product, summed over the timed steps

    def one_step():
        t0 = now()
        logits = top @ Wd.T  # decoder forward
        parts[DEC] += now() - t0
        for lay in layers:
            t0 = now()
            if gm:
                np.matmul(lay["W_ih"], lay["x"].transpose(0, 2, 1), out=lay["out"])  # T projections, one call
            else:
                lay["x"].reshape(T * N, -1) @ lay["W_ih"].T
            t1 = now()
            if gm:
                for t in range(T):
                    np.matmul(lay["W_hh"], lay["hsT"][t], out=hW)
            else:
                W_hhT = np.ascontiguousarray(lay["W_hh"].T)
                for t in range(T):
                    np.matmul(lay["hs"][t], W_hhT, out=hW)
            parts[PROJ] += t1 - t0
            parts[REC] += now() - t1
        t0 = now()
        dlog.T @ top  # decoder weight gradient
        dlog @ Wd  # into the top layer
        parts[DEC] += now() - t0
        for lay in reversed(layers):
            t0 = now()
            if gm:
                W_hhT = lay["W_hh"].T
                for t in reversed(range(T)):
                    np.matmul(W_hhT, da[:, t * N : (t + 1) * N], out=dh)
            else:
                for t in reversed(range(T)):
                    np.matmul(da[t], lay["W_hh"], out=dh)
            t1 = now()
            if gm:
                da @ lay["x"].reshape(T * N, -1)  # dW_ih
                da @ lay["hs"][:-1].reshape(T * N, -1)  # dW_hh
                da.T @ lay["W_ih"]  # dx
            else:
                da2 = da.reshape(T * N, -1)
                da2.T @ lay["x"].reshape(T * N, -1)
                da2.T @ lay["hs"][:-1].reshape(T * N, -1)
                da2 @ lay["W_ih"]
            parts[REC] += t1 - t0
            parts[GRADS] += now() - t1
        return logits

    for _ in range(3):
        one_step()
    parts.clear()
    ts = []
    for _ in range(args.steps):
        t0 = now()
        one_step()
        ts.append(now() - t0)
    flops = 2 * T * N * (3 * V * H + sum(G * H * ((D if k == 0 else H) * 3 + H * 3) for k in range(L)))
    med = statistics.median(ts)
    print(f"BLAS floor: every GEMM of one step in the cells' layouts, back to back: median {med * 1e3:.2f} ms, "
          f"min {min(ts) * 1e3:.2f} ms ({flops / 1e9:.2f} GFLOP, {flops / med / 1e9:.0f} GFLOP/s at the median)")
    dims = [D if k == 0 else H for k in range(L)]  # each layer's input width
    flops_of = {  # per step, of each kind of product
        REC: 2 * 2 * T * N * G * H * H * L,
        GRADS: sum(2 * T * N * G * H * (2 * Dk + H) for Dk in dims),
        PROJ: sum(2 * T * N * G * H * Dk for Dk in dims),
        DEC: 3 * 2 * T * N * H * V,
    }
    for label, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        per_step = seconds / args.steps
        print(f"  {label:52s} {per_step * 1e3:8.2f} ms/step, {flops_of[label] / per_step / 1e9:4.0f} GFLOP/s")
    gate = np.ones((G * H, N), f32)
    tiny = np.ones(1, f32)
    for label, arr in ((f"({G * H},{N}) gate block", gate), ("1-element array", tiny)):
        out = np.empty_like(arr)
        reps = 20000
        best = []
        for _ in range(5):
            t0 = now()
            for _ in range(reps):
                np.multiply(arr, arr, out=out)
            best.append((now() - t0) / reps)
        print(f"one np.multiply(out=) call on a {label}: {min(best) * 1e6:.2f} µs (best of 5 loops of {reps})")


def torch_profile(args, mc, tc, text) -> None:
    import torch

    from charrnn import data

    torch.set_num_threads(args.threads)
    vocab = data.Vocab.from_text(text)
    train_ids, _ = data.split(vocab.encode(text), tc.val_frac)
    runner = bench.TorchTrain(torch, mc, tc, train_ids, 0)
    runner.run(3)
    ts = []
    for _ in range(args.steps):
        t0 = now()
        runner.run(1)
        ts.append(now() - t0)
    med = statistics.median(ts)
    print(f"torch, the same step, {args.threads} thread(s): median {med * 1e3:.1f} ms = "
          f"{tc.batch * tc.seq / med:,.0f} chars/s")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        runner.run(args.steps)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    print(f"  torch.profiler, self CPU time per step (top {args.top}; the profiler itself adds overhead):")
    for e in rows[: args.top]:
        print(f"  {e.key:40s} {e.self_cpu_time_total / args.steps / 1e3:8.2f} ms/step  "
              f"{e.count / args.steps:6.1f} calls/step")
    rest = sum(e.self_cpu_time_total for e in rows[args.top :]) / args.steps / 1e3
    print(f"  {'(all other operators)':40s} {rest:8.2f} ms/step")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", default="lstm", choices=("lstm", "gru", "rnn"))
    ap.add_argument("--batch", type=int, default=16, help="batch (default 16, the CLI's default)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--corpus", type=Path, default=bench.DEFAULT_CORPUS)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall-clock time, or the process's CPU time (with --threads 1: leaves out the time spent "
                         "waiting for a core on a loaded host; torch.profiler's own figures stay wall-clock)")
    ap.add_argument("--floor", action="store_true", help="also time the step's GEMMs alone and one numpy call")
    ap.add_argument("--torch", action="store_true", help="also profile the PyTorch step")
    ap.add_argument("--top", type=int, default=12, help="torch operators listed (default 12)")
    args = ap.parse_args(argv)
    if args.clock == "cpu":
        if args.threads != 1:
            ap.error("--clock cpu needs --threads 1")
        global now
        now = time.process_time
    for var in bench.THREAD_VARS:
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(ROOT))
    import dataclasses

    from charrnn import data

    text = args.corpus.read_text(encoding="utf-8")
    mc, tc = bench.model_and_train_config(args.cell, len(data.Vocab.from_text(text)))
    tc = dataclasses.replace(tc, batch=args.batch)
    charrnn_phases(args, mc, tc, text)
    if args.floor:
        blas_floor(args, mc, tc)
    if args.torch:
        torch_profile(args, mc, tc, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
