"""The torch engine against the raw PyTorch loop and against the NumPy engine: training speed, same run.

    python tests/benchmarks/bench_engine.py                  # lstm, gru, rnn; 2 threads; the table on stdout
    python tests/benchmarks/bench_engine.py --only lstm --repeats 9

Three sides per workload, each in a worker process of its own (bench.py's method: warm-up rounds, then timed
rounds interleaved in alternating order, a pause before each, medians of chars/s and of the per-round ratios):
- torch engine: `charrnn train --engine torch`'s loop, train.Run.steps() on charrnn/torch_engine.py (data
  streams, schedule, dropout masks from NumPy when on, charrnn's clip, carried state, Step records);
- raw PyTorch loop: bench.py's TorchTrain, the script a user would write (multi-layer nn.LSTM, clip_grad_norm_);
- NumPy engine: train.Run.steps() on charrnn's own engine (the default `charrnn train`).
"engine / raw" is the torch engine's overhead over plain PyTorch (the issue's target: at most 10 % slower, i.e. a
ratio of at least 0.91); "torch / numpy" compares the two engines on this CPU. Needs torch (the `bench` extra).
The workloads are bench.py's: H 256, 2 layers, embed 64, B 32, T 64, Adam, clip 5, float32.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench.py, next to this file)

SIDES = ("engine-torch", "torch", "engine-numpy")
TRAIN_WORKLOADS = ("lstm", "gru", "rnn")


def main(argv=None) -> int:
    args = bench.parse_args(argv)
    bench.set_threads(args.threads)
    if importlib.util.find_spec("torch") is None:
        print("torch is not installed (pip install -e '.[bench]'): nothing to compare", file=sys.stderr)
        return 1
    sys.path.insert(0, str(bench.ROOT))
    import numpy as np

    from charrnn import data

    text = args.corpus.read_text(encoding="utf-8")
    vocab = data.Vocab.from_text(text)
    print("\n".join(bench.machine(np, importlib.metadata.version("torch"), args.threads)))
    print(f"corpus: {args.corpus} ({len(text):,} chars, V {len(vocab)}); {args.repeats} rounds of {args.steps} "
          f"steps per side, one worker process per side; median (min–max) chars/s; ratios: median of the "
          f"per-round ratios\n")
    print("| workload | torch engine chars/s | raw PyTorch loop chars/s | engine / raw | NumPy engine chars/s "
          "| torch engine / NumPy engine |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in [w for w in args.only if w in TRAIN_WORKLOADS]:
        mc, tc = bench.model_and_train_config(name, len(vocab))
        runners = [bench.Remote(side, name, args) for side in SIDES]
        try:
            rates = bench.measure(runners, args.steps, args.repeats, args.warmup, args.pause)
        finally:
            for r in runners:
                r.close()
        engine, raw, numpy_ = rates
        over_raw = statistics.median(a / b for a, b in zip(engine, raw))
        over_numpy = statistics.median(a / b for a, b in zip(engine, numpy_))
        print(f"| {bench.describe(name, mc, tc)} | {bench.fmt(engine)} | {bench.fmt(raw)} | {over_raw:.2f} | "
              f"{bench.fmt(numpy_)} | {over_numpy:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
