"""What a cold start costs evaluation: the bundled model's loss by position in a stream that starts from the zero
state, and the whole held-out split scored in more and shorter streams (why `evaluate` cuts no stream shorter than
train.MIN_STREAM characters).

    python tests/benchmarks/cold_start.py [--corpus ../shared/corpora/tinyshakespeare.txt]

The held-out split is the last 5 % of tinyshakespeare (the bundled model's validation split), cut into streams of
2,000 characters for the positions. Losses, not timings: any machine gives the same figures. A script, not a test.
"""

from __future__ import annotations

import argparse

import numpy as np

from charrnn import data
from charrnn.checkpoint import load
from charrnn.cli.common import BUNDLED
from charrnn.surprisal import surprisal_bits
from charrnn.train import evaluate

ROMEO = "ROMEO: What light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"  # 87 characters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="../shared/corpora/tinyshakespeare.txt")
    args = parser.parse_args()
    c = load(BUNDLED)
    vocab = data.Vocab(c.vocab)
    with open(args.corpus, encoding="utf-8") as f:
        val = data.split(vocab.encode(f.read()), 0.05)[1]  # (L,) the held-out split
    n, L = len(val) // 2000, 2000
    nats = np.stack([surprisal_bits(c.params, c.model_config, val[i * L:(i + 1) * L]) for i in range(n)]) * np.log(2)
    for lo, hi in [(1, 10), (10, 30), (30, 100), (100, 300), (300, 1000), (1000, 2000)]:
        print(f"positions {lo:>4}-{hi:<4} {nats[:, lo:hi].mean():.4f} nats/char (mean over {n} streams)")
    for streams in (1, 4, 32, 128, 512):
        r = evaluate(c.params, c.model_config, val, batch=streams, min_stream=2)
        print(f"the split ({len(val):,} chars) in {streams:>3} streams of {len(val) // streams:>6,}: "
              f"{r.nats_per_char:.4f} nats/char")
    ids = vocab.encode(ROMEO)
    cold = evaluate(c.params, c.model_config, ids, 32, min_stream=2)
    one = evaluate(c.params, c.model_config, ids, 32)
    print(f"{len(ROMEO)} characters of Romeo: {cold.nats_per_char:.4f} nats/char in {cold.streams} streams (the old "
          f"rule), {one.nats_per_char:.4f} in {one.streams} (the new)")


if __name__ == "__main__":
    main()
