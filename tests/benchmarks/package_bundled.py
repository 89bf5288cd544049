"""Package a trained checkpoint as a bundled one: no training state, no run-only meta, optionally float16 weights.

    python tests/benchmarks/package_bundled.py /tmp/shakespeare.npz charrnn/pretrained/shakespeare.npz --float16

What it keeps and drops: charrnn/checkpoint/bundle.py. It prints the written file's size, its weights' storage and
how far the float16 weights' logits are from the source's on a probe text the model writes itself. A script, not a
test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere in the repository

import numpy as np  # noqa: E402

from charrnn import checkpoint, model  # noqa: E402
from charrnn.config import SampleConfig  # noqa: E402
from charrnn.data import Vocab  # noqa: E402
from charrnn.sample import generate  # noqa: E402


def logit_gap(a: checkpoint.Checkpoint, b: checkpoint.Checkpoint, chars: int = 2000) -> float:
    """The largest |logit difference| between two checkpoints of one model on `chars` characters `a` writes."""
    text = "".join(generate(a.params, a.model_config, a.vocab, "", SampleConfig(length=chars),
                            np.random.default_rng(0)))
    ids = Vocab(a.vocab).encode(text)[None]  # (1,T)
    mc = a.model_config
    la, _, _ = model.forward(a.params, mc, ids, model.init_state(mc, 1), need_cache=False)  # (T,1,V)
    lb, _, _ = model.forward(b.params, mc, ids, model.init_state(mc, 1), need_cache=False)
    return float(np.abs(la - lb).max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="the trained checkpoint")
    parser.add_argument("dst", help="where to write the bundled checkpoint")
    parser.add_argument("--float16", action="store_true", help="store the weights as float16")
    args = parser.parse_args(argv)
    try:
        source = checkpoint.load(args.src)
        checkpoint.package(args.src, args.dst, args.float16)
        shipped = checkpoint.load(args.dst)
    except checkpoint.CheckpointError as e:
        print(f"package_bundled: {e}", file=sys.stderr)
        return 1
    print(f"{args.dst}: {os.path.getsize(args.dst):,} bytes (from {os.path.getsize(args.src):,}), format "
          f"{shipped.version}, weights stored as {shipped.storage}, step {shipped.meta.get('step')}, best val "
          f"{shipped.meta.get('best_val_loss')}")
    print(f"largest |logit difference| from {args.src} on 2,000 characters it writes: "
          f"{logit_gap(source, shipped):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
