"""A/B: full training steps (and batch-1 sampling) of the working tree's charrnn against a git revision's (not a test).

    python tests/benchmarks/ab_step.py HEAD~1 --cells lstm gru rnn sample sample-gru

Both versions of the package are imported into one process (the old one from `git archive REV`), then timed
interleaved, A/B then B/A, with the same data and weights; prints the median and range of ms per step
("sample", "sample-gru": batch-1 sample.generate with an LSTM / a GRU, ms per 100 characters).
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_charrnn(path: Path) -> dict:
    """Import the `charrnn` package found under `path`; return its modules and forget them from sys.modules."""
    sys.path.insert(0, str(path))
    try:
        import charrnn.model  # noqa: F401
        import charrnn.optim  # noqa: F401
        from charrnn import data, model, optim

        mods = {"data": data, "model": model, "optim": optim}
        try:
            from charrnn import sample

            mods["sample"] = sample
        except ImportError:
            pass
        return mods
    finally:
        sys.path.remove(str(path))
        for name in [m for m in sys.modules if m == "charrnn" or m.startswith("charrnn.")]:
            del sys.modules[name]


class Trainer:
    def __init__(self, mods, cell, text):
        import numpy as np

        self.m = from_ = mods
        data, model, optim = from_["data"], from_["model"], from_["optim"]
        vocab = data.Vocab.from_text(text)
        self.streams = data.streams(vocab.encode(text), 32)
        from dataclasses import replace

        kind = {"sample": "lstm", "sample-gru": "gru"}.get(cell, cell)
        self.mc = replace(model.ModelConfig(), cell=kind, vocab_size=len(vocab), embed=64, hidden=256, layers=2)
        self.params = model.init_params(self.mc, np.random.default_rng(0))
        self.opt = optim.make_optimizer("adam", self.params)
        self.state, self.k = model.init_state(self.mc, 32), 0
        self.chars = None
        if cell.startswith("sample"):  # batch-1 generate: n "steps" are 100 characters
            cfg = replace(from_["sample"].SampleConfig(), length=10**12, temperature=1.0)
            self.chars = from_["sample"].generate(self.params, self.mc, vocab, "\n", cfg, np.random.default_rng(0))

    def run(self, n):
        if self.chars is not None:
            return sum(1 for _ in itertools.islice(self.chars, n * 100))
        data, model, optim = self.m["data"], self.m["model"], self.m["optim"]
        for _ in range(n):
            x, y = data.get_batch(self.streams, self.k % 500, 64)
            _, grads, self.state = model.loss_and_grads(self.params, self.mc, x, y, self.state)
            optim.clip_grad_norm(grads, 5.0)
            self.opt.step(self.params, grads, 2e-3)
            self.k += 1
        return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="git revision to compare against (B)")
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    tmp = Path(tempfile.mkdtemp())
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", args.rev, "charrnn"], capture_output=True, check=True)
    tarfile.open(fileobj=io.BytesIO(blob.stdout)).extractall(tmp)
    old, new = load_charrnn(tmp), load_charrnn(ROOT)
    text = (ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    for cell in args.cells:
        runners = {"work tree": Trainer(new, cell, text), args.rev: Trainer(old, cell, text)}
        for r in runners.values():
            r.run(2)
        ms = {k: [] for k in runners}
        for rep in range(args.repeats):
            order = list(runners) if rep % 2 == 0 else list(runners)[::-1]
            for k in order:
                t0 = time.perf_counter()
                runners[k].run(args.steps)
                ms[k].append((time.perf_counter() - t0) / args.steps * 1e3)
        line = ", ".join(f"{k}: {statistics.median(v):.1f} ms ({min(v):.1f}-{max(v):.1f})" for k, v in ms.items())
        a, b = (statistics.median(v) for v in ms.values())
        print(f"{cell}: {line}; B/A = {b / a:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
