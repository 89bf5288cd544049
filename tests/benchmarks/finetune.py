"""Fine-tuning against training from scratch on ~200 kB of English prose that is not Shakespeare.

    nice -n 10 python tests/benchmarks/finetune.py                      # the bundled model, 1500 steps
    python tests/benchmarks/finetune.py --source /tmp/big.npz --measure  # another source; steps from a rate ratio
    python tests/benchmarks/finetune.py --steps 400 --only finetuned    # a shorter look at one side

The text is built at run time from this machine's Python, never stored: the English prose of the documentation
topics in the standard library's `pydoc_data/topics.py` (what `help("if")` shows), every paragraph that is not
indented (code examples are) and is at least 85 % letters and spaces, in sorted topic order, up to --chars
characters, written to --workdir. The script prints its SHA-256 and the Python version it came from.

Then two runs with identical options, one-threaded BLAS (--threads 1), the last 10 % held out:
    charrnn train TEXT --init-from SOURCE ...      (fine-tuned)
    charrnn train TEXT --hidden H --layers L --embed D --dropout P ...   (from scratch: the source's architecture)
and it prints the two best validation losses (nats/char on the last 10 %), the difference, and every command.

The budget is "2 minutes on a quiet machine", as steps so that the machine's load changes only the wall time:
--base-steps (1500) is what two minutes buy the default LSTM 2x256 at batch 16, T 64 (~13,000 chars/s on the
quiet 2-core machine of BENCHMARKS.md: 120 s x 13,000 / 1,024 characters per step = 1,523). A source of another
architecture gets base-steps x (its speed / the 2x256's speed); --measure measures that ratio here, with the
NumPy engine, one thread, both models alternating (A B A B ...) so that a burst of load hits both, and prints it.
A script, not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "charrnn" / "pretrained" / "shakespeare.npz"
BASE = {"cell": "lstm", "layers": 2, "hidden": 256, "embed": 64}  # the model --base-steps is measured for


def prose(limit: int) -> str:
    """The English paragraphs of the stdlib's pydoc topics, in sorted topic order, at most `limit` characters."""
    from pydoc_data.topics import topics

    out, size = [], 0
    for key in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[key]):
            if not block.strip() or block.startswith((" ", "\t")):  # indented: code, grammar, tables
                continue
            text = " ".join(line.strip() for line in block.splitlines())
            if len(text) < 80 or sum(c.isalpha() or c == " " for c in text) < 0.85 * len(text):
                continue
            if size + len(text) + 2 > limit:
                return "\n\n".join(out) + "\n"
            out.append(text)
            size += len(text) + 2
    return "\n\n".join(out) + "\n"


def rate_ratio(source_mc, rounds: int, steps: int) -> tuple[float, list[float], list[float]]:
    """(median over rounds of speed(source's architecture) / speed(2x256), chars/s of each): the NumPy engine,
    one thread (the caller sets it), batch 16, T 64, random ids, rounds alternating which goes first."""
    import numpy as np

    from charrnn import model
    from charrnn.config import ModelConfig, TrainConfig
    from charrnn.engine import NumpyEngine

    rng = np.random.default_rng(0)
    tc = TrainConfig()
    engines = []
    for arch in (BASE, {k: getattr(source_mc, k) for k in BASE}):
        mc = ModelConfig(**arch, vocab_size=source_mc.vocab_size, dropout=source_mc.dropout)
        engines.append((mc, NumpyEngine(mc, tc, model.init_params(mc, rng))))
    x = rng.integers(0, source_mc.vocab_size, (tc.batch, tc.seq + 1))

    def speed(mc, engine) -> float:
        engine.compute(x[:, :-1], x[:, 1:], rng if mc.dropout > 0 else None)  # warm
        engine.apply(tc.lr)
        start = time.perf_counter()
        for _ in range(steps):
            engine.compute(x[:, :-1], x[:, 1:], rng if mc.dropout > 0 else None)
            engine.apply(tc.lr)
        return steps * tc.batch * tc.seq / (time.perf_counter() - start)

    base, other, ratios = [], [], []
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        got = {i: speed(*engines[i]) for i in order}
        base.append(got[0])
        other.append(got[1])
        ratios.append(got[1] / got[0])
    return statistics.median(ratios), base, other


def run(cmd: list[str], log: Path) -> float:
    """Run one training command (stderr to `log`); its checkpoint's best validation loss."""
    from charrnn.checkpoint import load

    print("$ " + shlex.join(cmd), flush=True)
    start = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"finetune.py: the command failed (exit {proc.returncode}); see {log}")
    ckpt = load(proc.stdout.strip())
    curve = [(h["step"], h["val_loss"]) for h in ckpt.meta["history"] if h.get("val_loss") is not None]
    print(f"  {time.monotonic() - start:.0f} s wall; val curve: " +
          ", ".join(f"{s}: {v:.4f}" for s, v in curve), flush=True)
    return ckpt.meta["best_val_loss"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(BUNDLED), help="the checkpoint to fine-tune from (default: the bundled "
                   "model; recorded as `bundled`)")
    p.add_argument("--steps", type=int, help="optimizer steps of both runs (default: --base-steps, scaled by "
                   "--measure's ratio for an architecture other than LSTM 2x256)")
    p.add_argument("--base-steps", type=int, default=1500, help="steps 2 minutes buy the LSTM 2x256 on a quiet "
                   "machine")
    p.add_argument("--measure", action="store_true", help="measure the speed ratio of the source's architecture "
                   "to the 2x256 here and scale --base-steps by it")
    p.add_argument("--rounds", type=int, default=6, help="--measure: alternating rounds")
    p.add_argument("--rate-steps", type=int, default=10, help="--measure: steps per model per round")
    p.add_argument("--chars", type=int, default=200_000, help="characters of prose")
    p.add_argument("--workdir", default="/tmp/charrnn-finetune-bench")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--dropout", type=float, help="of both runs (default: the source's)")
    p.add_argument("--only", choices=("finetuned", "scratch"), help="run one side only")
    args = p.parse_args(argv)
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    sys.path.insert(0, str(ROOT))
    from charrnn.checkpoint import load

    source = load(args.source)
    mc = source.model_config
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    text = prose(args.chars)
    corpus = work / "prose.txt"
    corpus.write_text(text, encoding="utf-8")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, at {commit.stdout.strip() or 'an unknown commit'}")
    print(f"machine: {cpu}, {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"text: {corpus}, {len(text):,} characters, {len(set(text))} distinct, sha256 "
          f"{hashlib.sha256(text.encode()).hexdigest()[:16]}, from pydoc_data/topics.py of Python "
          f"{platform.python_version()}")
    print(f"source: {args.source}: {mc.cell} {mc.layers}x{mc.hidden}, embed {mc.embed}, dropout {mc.dropout:g}, "
          f"{source.meta.get('step')} steps, vocabulary {len(source.vocab)}")
    steps = args.steps
    if args.measure:
        ratio, base, other = rate_ratio(mc, args.rounds, args.rate_steps)
        print(f"speed, NumPy engine, 1 thread, batch 16, T 64, {args.rounds} alternating rounds of "
              f"{args.rate_steps} steps: LSTM 2x256 median {statistics.median(base):,.0f} chars/s, the source's "
              f"{mc.layers}x{mc.hidden} {statistics.median(other):,.0f} chars/s; ratio (median of rounds) "
              f"{ratio:.3f}")
        steps = steps or round(args.base_steps * ratio)
    elif steps is None:
        same = all(getattr(mc, k) == v for k, v in BASE.items())
        if not same:
            sys.exit("finetune.py: the source is not an LSTM 2x256: give --steps, or --measure to scale "
                     "--base-steps by the measured speed ratio")
        steps = args.base_steps
    dropout = mc.dropout if args.dropout is None else args.dropout
    name = "bundled" if Path(args.source).resolve() == BUNDLED else str(Path(args.source).resolve())
    common = ["--val-frac", "0.1", "--seed", str(args.seed), "--steps", str(steps), "--schedule", args.schedule,
              "--lr", str(args.lr), "--eval-every", str(args.eval_every), "--dropout", f"{dropout:g}",
              "--threads", "1", "--force", "-q"]
    charrnn = [sys.executable, "-m", "charrnn", "train", str(corpus)]
    finetuned = charrnn + ["--init-from", name, "-o", str(work / "finetuned.npz")] + common
    scratch = charrnn + ["--cell", mc.cell, "--layers", str(mc.layers), "--hidden", str(mc.hidden), "--embed",
                         str(mc.embed), "-o", str(work / "scratch.npz")] + common
    print(f"both runs: {steps} steps of batch 16 x T 64, the last 10 % held out")
    results = {}
    if args.only != "scratch":
        results["finetuned"] = run(finetuned, work / "finetuned.log")
    if args.only != "finetuned":
        results["scratch"] = run(scratch, work / "scratch.log")
    for key, value in results.items():
        print(f"best val, {key}: {value:.4f} nats/char")
    if len(results) == 2:
        print(f"difference (scratch - fine-tuned): {results['scratch'] - results['finetuned']:+.4f} nats/char")
    return 0


if __name__ == "__main__":
    sys.exit(main())
