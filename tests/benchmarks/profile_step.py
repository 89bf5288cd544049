"""Where a training step's time goes: wall time per phase of charrnn's trainer step (not a test).

    python tests/benchmarks/profile_step.py --cell lstm --steps 20

Wraps the cell forward/backward, the decoder/loss and the optimizer with timers, runs full optimizer steps as
bench.py does, and prints milliseconds per step for each phase (median over steps).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", default="lstm", choices=("lstm", "gru", "rnn"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from charrnn import cells, data, model, optim
    from charrnn.config import ModelConfig

    times = defaultdict(list)

    def timed(label, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            times[label].append(time.perf_counter() - t0)
            return out
        return wrapper

    c = cells.CELLS[args.cell]
    cells.CELLS[args.cell] = c._replace(forward=timed("cell forward (both layers)", c.forward),
                                        backward=timed("cell backward (both layers)", c.backward))
    model.cross_entropy = timed("cross_entropy", model.cross_entropy)
    text = args.corpus.read_text(encoding="utf-8")
    vocab = data.Vocab.from_text(text)
    streams = data.streams(vocab.encode(text), 32)
    mc = ModelConfig(cell=args.cell, vocab_size=len(vocab), embed=64, hidden=256, layers=2)
    rng = np.random.default_rng(0)
    params = model.init_params(mc, rng)
    opt = optim.make_optimizer("adam", params)
    clip, step = timed("clip_grad_norm", optim.clip_grad_norm), timed("adam step", opt.step)
    fwd, bwd = timed("model.forward", model.forward), timed("model.backward", model.backward)
    model.forward, model.backward = fwd, bwd
    state = model.init_state(mc, 32)
    for k in range(args.steps + 3):
        if k == 3:
            times.clear()
        x, y = data.get_batch(streams, k, 64)
        t0 = time.perf_counter()
        _, grads, state = model.loss_and_grads(params, mc, x, y, state)
        clip(grads, 5.0)
        step(params, grads, 2e-3)
        times["TOTAL step"].append(time.perf_counter() - t0)
    per_step = {k: sum(v) / args.steps for k, v in times.items()}
    for k, v in sorted(per_step.items(), key=lambda kv: -kv[1]):
        print(f"{k:32s} {v * 1e3:8.2f} ms/step")
    total = statistics.median(times["TOTAL step"])
    print(f"median step {total * 1e3:.1f} ms = {2048 / total:,.0f} chars/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
