"""charrnn against PyTorch, side by side: training and sampling speed on the same model, data and settings.

    python tests/benchmarks/bench.py                 # everything, 2 threads, the table on stdout
    python tests/benchmarks/bench.py --only lstm --repeats 9
    python tests/benchmarks/bench.py --steps 4 --chars 300 --one-process    # the method of the first tables
    python tests/benchmarks/bench.py --against main --repeats 21     # the working tree against a commit

Each workload builds a charrnn runner and a PyTorch runner, each in its own worker process (so neither side's
memory allocator, page faults or threads disturb the other's: in one shared process every charrnn round began
with ~3,000 page faults, ~25 ms, from the heap torch's round had just reshaped), warms both up, then times them
interleaved (A/B, B/A, A/B, ... so a slow phase of the machine hits both), and reports the median and the range
of chars/s and the ratio charrnn/torch: the median over rounds of the ratio within each round, so that a burst of
load from elsewhere that hits a few rounds moves neither number much. Training speed counts full optimizer
steps: forward, backward, global-norm clip, Adam update, hidden state carried across contiguous batches. Sampling
speed is batch 1, one character at a time from the softmax at temperature 1, with the carried state.

With `--against REV` the second side is not PyTorch but charrnn as it was at the git revision REV (`git archive
REV charrnn` unpacked into a temporary directory, imported from there by its worker): the same workloads, configs
and data on both sides, so the ratio "tree / REV" (chars/s, > 1: the working tree is faster) shows a regression
or a gain. Run it before landing anything on the hot path; every ratio comes with a 95 % bootstrap interval of
its median, so that a 5 % difference can be told from the host's noise (if the interval contains 1.00, the run
did not tell the two apart).

torch comes from the `bench` extra (`pip install -e '.[bench]'`); without it only charrnn is measured.
This file is a script, not a test: pytest does not collect it (its name does not match test_*.py).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The shared corpora sit next to the project (or next to the directory of its git worktrees).
_CORPORA = [up / "shared" / "corpora" / "tinyshakespeare.txt" for up in (ROOT.parent, ROOT.parent.parent)]
DEFAULT_CORPUS = next((p for p in _CORPORA if p.exists()), _CORPORA[0])
WORKLOADS = ("lstm", "lstm16", "gru", "rnn", "default", "sample", "sample-gru")
SAMPLING = ("sample", "sample-gru")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Workloads: lstm, gru, rnn = train H 256, 2 layers, embed 64, B 32, T 64 "
                                        "(lstm16: B 16), "
                                        "Adam, clip 5; default = the CLI's default config (config.ModelConfig() "
                                        "and TrainConfig(), the working tree's also for --against); sample, "
                                        "sample-gru = batch-1 sampling, LSTM / GRU H 256, 2 layers, embed 64.")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="UTF-8 text to train on (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="BLAS / torch threads for both sides (default: 2)")
    ap.add_argument("--repeats", type=int, default=9, help="timed rounds per side and workload (default: 9)")
    # Rounds long enough (~1 s of training, 3,000 characters) that the slow start after each pause (cold caches,
    # sleeping BLAS threads, clock ramp-up: ~15-25 ms) weighs a few per cent, as in a real run, which never pauses.
    ap.add_argument("--steps", type=int, default=16, help="optimizer steps per timed round (default: 16)")
    ap.add_argument("--chars", type=int, default=3000, help="characters sampled per timed round (default: 3000)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds per side before timing (default: 2)")
    ap.add_argument("--pause", type=float, default=0.3,
                    help="seconds of sleep before every timed round, so that the other side's BLAS / OpenMP worker "
                         "threads, which spin for a while after their last call, are idle again (default: 0.3)")
    ap.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS), metavar="WORKLOAD",
                    help=f"run only these workloads, from {', '.join(WORKLOADS)}")
    ap.add_argument("--no-torch", action="store_true", help="measure charrnn alone even when torch is installed")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights and draws (default: 0)")
    ap.add_argument("--restarts", type=int, default=0,
                    help="spread the rounds over this many fresh pairs of worker processes (default: 3 with --against, "
                         "else 1). Each process's arrays land in memory differently, which can shift its speed by a "
                         "few per cent for its whole life; restarts put that into the interval instead of the ratio")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="what a round's time is: wall-clock time (default), or the worker process's CPU time "
                         "(time.process_time, all its threads). On a loaded host, with --threads 1, CPU time leaves "
                         "out the time the worker waited for a core; with more threads it would count BLAS's and "
                         "OpenMP's spinning workers, so use it with --threads 1 only")
    ap.add_argument("--against", metavar="REV",
                    help="time the working tree against charrnn at git revision REV instead of against PyTorch")
    ap.add_argument("--one-process", action="store_true",
                    help="run both sides in this process instead of one worker process each (the method before "
                         "2026-11-24: torch's allocations then cost charrnn page faults at the start of each round)")
    return ap.parse_args(argv)


def set_threads(n: int) -> None:
    """BLAS reads its thread count when it is loaded, so this must run before numpy is imported."""
    if "numpy" in sys.modules:
        raise RuntimeError("set_threads must run before numpy is imported")
    for var in THREAD_VARS:
        os.environ[var] = str(n)


# ----------------------------------------------------------------------------------------------------------------
# Workloads. A runner has `name`, `unit` ("train" or "sample") and `run(n) -> chars processed`.


def model_and_train_config(name: str, vocab_size: int):
    from charrnn.config import ModelConfig, TrainConfig

    if name == "default":
        return ModelConfig(vocab_size=vocab_size), TrainConfig()
    cell = {"sample": "lstm", "lstm16": "lstm", "sample-gru": "gru"}.get(name, name)
    batch = 16 if name == "lstm16" else 32  # lstm16: the small batch a fixed time budget is best spent on
    mc = ModelConfig(cell=cell, vocab_size=vocab_size, embed=64, hidden=256, layers=2, dropout=0.0)
    return mc, TrainConfig(batch=batch, seq=64, lr=2e-3, optimizer="adam", clip=5.0)


class CharrnnTrain:
    """Exactly the trainer's step: model.loss_and_grads, optim.clip_grad_norm, optimizer.step, state carried."""

    def __init__(self, mc, tc, train_ids, seed: int):
        import numpy as np

        from charrnn import data, model, optim

        self.np, self.data, self.model, self.optim = np, data, model, optim
        self.mc, self.tc, self.dtype = mc, tc, np.dtype(tc.dtype)
        self.streams = data.streams(train_ids, tc.batch)  # (B,S)
        self.per_epoch = data.batches_per_epoch(self.streams, tc.seq)
        self.rng = np.random.default_rng(seed)
        self.params = model.init_params(mc, self.rng, self.dtype)
        self.opt = optim.make_optimizer(tc.optimizer, self.params, tc.momentum, tc.weight_decay)
        self.state = model.init_state(mc, tc.batch, self.dtype)
        self.cursor = 0

    def run(self, n: int) -> int:
        tc, chars = self.tc, 0
        dropout_rng = self.rng if self.mc.dropout > 0 else None
        for _ in range(n):
            x, y = self.data.get_batch(self.streams, self.cursor, tc.seq)
            loss, grads, self.state = self.model.loss_and_grads(self.params, self.mc, x, y, self.state, dropout_rng)
            self.optim.clip_grad_norm(grads, tc.clip)
            self.opt.step(self.params, grads, tc.lr)
            chars += x.size
            self.cursor += 1
            if self.cursor == self.per_epoch:
                self.cursor, self.state = 0, self.model.init_state(self.mc, tc.batch, self.dtype)
        return chars


class EngineTrain:
    """charrnn's whole training loop, train.Run.steps() (data, schedule, bookkeeping, Step records) on one of its
    engines: "numpy" or "torch". No validation and no checkpoints, as in the raw loops."""

    def __init__(self, engine: str, mc, tc, text: str, seed: int):
        import dataclasses

        from charrnn.corpus import Corpus
        from charrnn.train import Run

        tc = dataclasses.replace(tc, steps=10**12, eval_every=10**12, seed=seed)
        self.run_ = Run(mc, tc, Corpus.from_text(text), engine=engine)
        self.steps, self.chars = self.run_.steps(), tc.batch * tc.seq

    def run(self, n: int) -> int:
        for _ in range(n):
            next(self.steps)
        return n * self.chars


class CharrnnSample:
    """Batch-1 sampling as `charrnn sample` does it: one long charrnn.sample.generate stream, temperature 1."""

    how = "charrnn.sample.generate"

    def __init__(self, mc, vocab, seed: int):
        import itertools

        import numpy as np

        from charrnn import model, sample
        from charrnn.config import SampleConfig

        self.islice = itertools.islice
        rng = np.random.default_rng(seed)
        params = model.init_params(mc, rng, np.float32)
        cfg = SampleConfig(length=10**12, temperature=1.0)  # never ends: every round continues the same stream
        self.chars = sample.generate(params, mc, vocab, "\n", cfg, rng)

    def run(self, n: int) -> int:
        return sum(1 for _ in self.islice(self.chars, n))


def torch_net(torch, mc):
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[mc.cell]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(mc.vocab_size, mc.embed)
            self.rnn = cls(mc.embed, mc.hidden, num_layers=mc.layers, batch_first=True, dropout=mc.dropout)
            self.drop = torch.nn.Dropout(mc.dropout)
            self.decoder = torch.nn.Linear(mc.hidden, mc.vocab_size)

        def forward(self, ids, state):
            out, state = self.rnn(self.embedding(ids), state)
            return self.decoder(self.drop(out)), state

    return Net()


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class TorchTrain:
    """The PyTorch script users would write: Embedding -> RNN -> Linear, Adam, clip_grad_norm_, detached state."""

    def __init__(self, torch, mc, tc, train_ids, seed: int):
        import numpy as np

        from charrnn import data

        torch.manual_seed(seed)
        self.torch, self.mc, self.tc = torch, mc, tc
        self.net = torch_net(torch, mc).train()
        opt = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad,
               "sgd": torch.optim.SGD}[tc.optimizer]
        extra = {"momentum": tc.momentum} if tc.optimizer in ("sgd", "rmsprop") else {}
        self.opt = opt(self.net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, **extra)
        streams = data.streams(train_ids, tc.batch)  # (B,S)
        self.streams = torch.from_numpy(streams.astype(np.int64))
        self.per_epoch = data.batches_per_epoch(streams, tc.seq)
        self.cursor, self.state = 0, self._zero_state()

    def _zero_state(self):
        h = self.torch.zeros(self.mc.layers, self.tc.batch, self.mc.hidden)
        return (h, h.clone()) if self.mc.cell == "lstm" else h

    def run(self, n: int) -> int:
        torch, tc, V, chars = self.torch, self.tc, self.mc.vocab_size, 0
        for _ in range(n):
            start = self.cursor * tc.seq
            x = self.streams[:, start : start + tc.seq]
            y = self.streams[:, start + 1 : start + tc.seq + 1]
            logits, state = self.net(x, self.state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip > 0:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), tc.clip)
            self.opt.step()
            self.state = detach(state)
            chars += x.numel()
            self.cursor += 1
            if self.cursor == self.per_epoch:
                self.cursor, self.state = 0, self._zero_state()
        return chars


class TorchSample:
    """Batch 1, one character at a time: embedding -> rnn step -> decoder -> softmax -> multinomial."""

    def __init__(self, torch, mc, seed: int):
        torch.manual_seed(seed)
        self.torch, self.net = torch, torch_net(torch, mc).eval()
        self.gen = torch.Generator().manual_seed(seed)
        h = torch.zeros(mc.layers, 1, mc.hidden)
        self.state = (h, h.clone()) if mc.cell == "lstm" else h
        self.ids = torch.zeros((1, 1), dtype=torch.long)

    def run(self, n: int) -> int:
        torch, net = self.torch, self.net
        with torch.inference_mode():
            for _ in range(n):
                logits, self.state = net(self.ids, self.state)  # (1,1,V)
                p = torch.softmax(logits[0, -1] / 1.0, dim=-1)  # temperature 1
                self.ids = torch.multinomial(p, 1, generator=self.gen).view(1, 1)
        return n


# ----------------------------------------------------------------------------------------------------------------


def measure(runners: list, n: int, repeats: int, warmup: int, pause: float) -> list[list[float]]:
    """chars/s per runner: `warmup` untimed rounds each, then `repeats` timed rounds, interleaved, order alternating.

    Before each timed round the process sleeps `pause` seconds: OpenBLAS's and torch's worker threads keep spinning
    for a while after a call and would otherwise take a core from whichever side runs next.
    """
    for _ in range(warmup):
        for r in runners:
            r.timed(n)
    rates = [[] for _ in runners]
    for k in range(repeats):
        order = range(len(runners)) if k % 2 == 0 else reversed(range(len(runners)))
        for i in order:
            time.sleep(pause)
            chars, seconds = runners[i].timed(n)
            rates[i].append(chars / seconds)
    return rates


def timed(runner, n: int, clock: str = "wall") -> tuple[int, float]:
    """(chars, seconds) of one round of `runner.run(n)`, timed around the call by the wall clock or, with clock
    "cpu", by this process's CPU time."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    t0 = now()
    chars = runner.run(n)
    return chars, now() - t0


class Local:
    """A runner in this process (`--one-process`)."""

    def __init__(self, runner, clock: str = "wall"):
        self.runner, self.clock = runner, clock

    def timed(self, n: int) -> tuple[int, float]:
        return timed(self.runner, n, self.clock)

    def close(self) -> None:
        pass


def make_runner(side: str, name: str, args: argparse.Namespace, src: Path = ROOT, configs=None):
    """The runner for one side ("charrnn", "torch", "engine-numpy", "engine-torch") of one workload, with the
    `charrnn` package imported from `src` (the working tree, or a revision unpacked by --against); imports numpy
    (and torch) on first use. `configs`: the (ModelConfig, TrainConfig) fields to use, as dicts (--against gives
    both sides the working tree's); None: the workload's own."""
    sys.path.insert(0, str(src))
    from charrnn import data

    if not Path(data.__file__).resolve().is_relative_to(Path(src).resolve()):
        raise RuntimeError(f"charrnn was imported from {data.__file__}, not from {src}")
    text = args.corpus.read_text(encoding="utf-8")
    vocab = data.Vocab.from_text(text)
    mc, tc = model_and_train_config(name, len(vocab)) if configs is None else rebuild_configs(*configs)
    train_ids, _ = data.split(vocab.encode(text), tc.val_frac)
    if side.startswith("engine-"):  # bench_engine.py: charrnn's training loop on the numpy or the torch engine
        if side == "engine-torch":
            import torch

            torch.set_num_threads(args.threads)
        return EngineTrain(side[len("engine-"):], mc, tc, text, args.seed)
    if side == "torch":
        import torch

        torch.set_num_threads(args.threads)
        if name in SAMPLING:
            return TorchSample(torch, mc, args.seed)
        return TorchTrain(torch, mc, tc, train_ids, args.seed)
    if name in SAMPLING:
        return CharrnnSample(mc, vocab, args.seed)
    return CharrnnTrain(mc, tc, train_ids, args.seed)


def rebuild_configs(model_fields: dict, train_fields: dict, changed: frozenset = frozenset()):
    """ModelConfig and TrainConfig of the imported charrnn from another version's fields. A field this version does
    not know is dropped; if it is in `changed` (not at its default where it came from), stderr says so, since this
    version then cannot do what was asked."""
    import dataclasses

    from charrnn.config import ModelConfig, TrainConfig

    out = []
    for cls, fields in ((ModelConfig, model_fields), (TrainConfig, train_fields)):
        known = {f.name for f in dataclasses.fields(cls)}
        dropped = sorted(k for k in fields if k not in known and k in changed)
        if dropped:
            print(f"bench: {cls.__name__} here has no {', '.join(dropped)}; dropped", file=sys.stderr)
        out.append(cls(**{k: v for k, v in fields.items() if k in known}))
    return tuple(out)


def config_fields(mc, tc) -> tuple[dict, dict, frozenset]:
    """(mc, tc) as the field dicts rebuild_configs takes, with the names of the fields not at their defaults."""
    import dataclasses

    changed = {f.name for c in (mc, tc) for f in dataclasses.fields(c)
               if f.default is not dataclasses.MISSING and getattr(c, f.name) != f.default}
    return dataclasses.asdict(mc), dataclasses.asdict(tc), frozenset(changed)


def unpack_revision(rev: str, into: Path) -> str:
    """`git archive REV charrnn` unpacked under `into` (so `into/charrnn` is that version's package); the full
    commit hash."""
    import io
    import subprocess
    import tarfile

    git = ["git", "-C", str(ROOT)]
    sha = subprocess.run(git + ["rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True, text=True,
                         check=True).stdout.strip()
    blob = subprocess.run(git + ["archive", sha, "charrnn"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return sha


def _serve(conn, side: str, name: str, args: argparse.Namespace, src: Path, configs) -> None:
    """A worker process: build the runner, then answer ("run", n) with (chars, seconds) until ("stop",)."""
    runner = make_runner(side, name, args, src, configs)
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        conn.send(timed(runner, msg[1], getattr(args, "clock", "wall")))


class Remote:
    """A runner in a worker process of its own: its own heap, BLAS / OpenMP threads and page tables. The thread
    variables set by set_threads are inherited; the child is spawned, so it imports numpy (and torch) afresh."""

    def __init__(self, side: str, name: str, args: argparse.Namespace, src: Path = ROOT, configs=None):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, side, name, args, src, configs), daemon=True)
        self.proc.start()
        if self.conn.recv() != "ready":
            raise RuntimeError(f"the {side} worker for {name} did not start")

    def timed(self, n: int) -> tuple[int, float]:
        self.conn.send(("run", n))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(("stop",))
        self.proc.join(timeout=30)


def fmt(rates: list[float]) -> str:
    return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f})"


def ratio_interval(blocks: list[list[float]], resamples: int = 4000) -> tuple[float, float]:
    """A 95 % bootstrap interval of the median per-round ratio (percentile method, fixed seed). `blocks`: the
    per-round ratios of each pair of worker processes. Blocks are resampled, then rounds within each, so that
    what differs from one pair of processes to the next (where their arrays landed in memory) widens the interval
    as it should; with one block this is the plain bootstrap over rounds."""
    import random

    rng = random.Random(0)
    medians = []
    for _ in range(resamples):
        picked = [rng.choices(blk, k=len(blk)) for blk in rng.choices(blocks, k=len(blocks))]
        medians.append(statistics.median(x for blk in picked for x in blk))
    medians.sort()
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def fmt_ratio(pairs: list[list[tuple[float, float]]]) -> str:
    """The median of the per-round ratios a/b, over (a, b) rate pairs grouped by pair of worker processes, and its
    95 % bootstrap interval, e.g. "0.97 (0.94–1.01)"."""
    blocks = [[a / b for a, b in blk] for blk in pairs]
    lo, hi = ratio_interval(blocks)
    return f"{statistics.median(x for blk in blocks for x in blk):.3f} ({lo:.3f}–{hi:.3f})"


def describe(name: str, mc, tc) -> str:
    what = f"{mc.cell.upper()} H{mc.hidden} L{mc.layers} D{mc.embed}"
    if name in SAMPLING:
        return f"sample, batch 1: {what}"
    label = "train, default config" if name == "default" else "train"
    return f"{label}: {what} B{tc.batch} T{tc.seq} {tc.optimizer} clip {tc.clip:g}"


def machine(np, torch_version: str | None, threads: int) -> list[str]:
    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = "?"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{cfg['name']} {cfg.get('version', '')}".strip()
    except Exception:  # the layout of show_config differs across numpy versions
        pass
    lines = [f"CPU: {cpu}, {os.cpu_count()} cores; threads: {threads}",
             f"Python {platform.python_version()}, numpy {np.__version__} ({blas})"]
    lines.append(f"torch {torch_version}" if torch_version else "torch: not measured (--no-torch, or not installed)")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.against and args.one_process:
        print("bench: --against needs a worker process per side (two versions of charrnn)", file=sys.stderr)
        return 2
    if args.clock == "cpu" and args.threads != 1:
        print("bench: --clock cpu needs --threads 1 (it would count the spinning of idle BLAS threads)",
              file=sys.stderr)
        return 2
    set_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    import tempfile

    import numpy as np

    from charrnn import data

    torch_version = None
    if not args.no_torch and not args.against:
        if importlib.util.find_spec("torch") is None:
            print("torch is not installed (pip install -e '.[bench]'): measuring charrnn alone", file=sys.stderr)
        else:
            torch_version = importlib.metadata.version("torch")
    restarts = max(1, min(args.restarts or (3 if args.against else 1), args.repeats))
    with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as tmp:
        if args.against:
            sha = unpack_revision(args.against, Path(tmp))
            sides = [("charrnn", ROOT), ("charrnn", Path(tmp))]
            other = f"{args.against} ({sha[:10]})"
        else:
            sides = [("charrnn", ROOT)] + ([("torch", ROOT)] if torch_version else [])
            other = "torch"
        text = args.corpus.read_text(encoding="utf-8")
        vocab = data.Vocab.from_text(text)
        print("\n".join(machine(np, torch_version, args.threads)))
        print(f"working tree: {tree_description()}")
        where = "both in this process" if args.one_process else f"one worker process per side ({restarts} pair(s))"
        print(f"corpus: {args.corpus} ({len(text):,} chars, V {len(vocab)}); {args.repeats} rounds of "
              f"{args.steps} steps / {args.chars} chars per side, {where}; median (min–max) chars/s "
              f"({args.clock} clock); ratio: median of the per-round ratios (95 % bootstrap interval)\n")
        mine = "working tree" if args.against else "charrnn"
        print(f"| workload | {mine} chars/s | {other} chars/s | {mine} / {other.split()[0]} |")
        print("|---|---:|---:|---:|")
        for name in args.only:
            mc, tc = model_and_train_config(name, len(vocab))
            configs = config_fields(mc, tc) if args.against else None
            n = args.chars if name in SAMPLING else args.steps
            blocks = []  # per pair of worker processes: rates per side
            for b in range(restarts):  # the rounds spread over fresh workers: see --restarts
                repeats = args.repeats // restarts + (b < args.repeats % restarts)
                if args.one_process:
                    runners = [Local(make_runner(side, name, args), args.clock) for side, _ in sides]
                else:
                    runners = [Remote(side, name, args, src, configs) for side, src in sides]
                try:
                    blocks.append(measure(runners, n, repeats, args.warmup, args.pause))
                finally:
                    for r in runners:
                        r.close()
            rates = [sum((blk[i] for blk in blocks), []) for i in range(len(sides))]
            theirs = fmt(rates[1]) if len(rates) > 1 else "–"
            ratio = fmt_ratio([list(zip(*blk)) for blk in blocks]) if len(rates) > 1 else "–"
            print(f"| {describe(name, mc, tc)} | {fmt(rates[0])} | {theirs} | {ratio} |", flush=True)
    if any(name in SAMPLING for name in args.only):
        print(f"\ncharrnn sampling runs {CharrnnSample.how}")
    return 0


def tree_description() -> str:
    """The working tree's commit, and whether charrnn/ has changes not committed."""
    import subprocess

    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(git + ["rev-parse", "--short=10", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--", "charrnn"], capture_output=True, text=True).stdout
    return f"{head or '?'}{' + uncommitted changes in charrnn/' if dirty.strip() else ''}"


if __name__ == "__main__":
    sys.exit(main())
