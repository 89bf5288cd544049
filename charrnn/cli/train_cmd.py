"""`charrnn train CORPUS`: learn a model of a text; stdout gets the checkpoint path, stderr the progress."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
from enum import Enum
from pathlib import Path

import typer

from charrnn.cli.common import (app, fail, parse_duration, quiet_stdout, read_text, say, set_threads,
                                text_argument)
from charrnn.config import (CELL_NAMES, DEFAULT_CHECKPOINT, DEFAULT_STEPS, DTYPE_NAMES, OPTIMIZER_NAMES,
                            SCHEDULE_NAMES, ModelConfig, TrainConfig)

Cell = Enum("Cell", {n: n for n in CELL_NAMES}, type=str)
Optimizer = Enum("Optimizer", {n: n for n in OPTIMIZER_NAMES}, type=str)
Schedule = Enum("Schedule", {n: n for n in SCHEDULE_NAMES}, type=str)
Dtype = Enum("Dtype", {n: n for n in DTYPE_NAMES}, type=str)
M, TR = ModelConfig(), TrainConfig()
MODEL_OPTIONS = ("cell", "hidden", "layers", "embed", "dropout")
# Options that cannot change on --resume without breaking the run; the rest (lr, bounds, ...) may.
FIXED_ON_RESUME = ("batch", "seq", "val_frac", "dtype", "optimizer", "momentum", "weight_decay", "seed")
RUN_HINT = "checkpoint; say --resume to continue that run or --force to start a new one over it"


def _below_one(value):
    if value is not None and value >= 1.0:
        raise typer.BadParameter(f"{value} must be below 1")
    return value


def _positive(value):
    if value is not None and not 0 < value < math.inf:  # also rejects nan and inf
        raise typer.BadParameter(f"{value} must be a positive number")
    return value


def _opt(default, *names, help: str, **kw):
    """An option whose absence is visible (None), showing the real default from config in --help."""
    return typer.Option(None, *names, help=help, show_default=str(default), **kw)


def _merge(given: dict, out: Path, resume: bool, text: str):
    """(ModelConfig, TrainConfig, vocab codes, resumed Checkpoint or None) from the options given and --out."""
    import numpy as np

    from charrnn.checkpoint import CheckpointError, load
    from charrnn.corpus import text_sha256
    from charrnn.data import Vocab

    model_given = {k: v for k, v in given.items() if k in MODEL_OPTIONS}
    train_given = {k: v for k, v in given.items() if k not in MODEL_OPTIONS}
    if not resume:
        vocab = Vocab.from_text(text)
        seed = train_given.pop("seed", None)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**32)
            say(f"seed {seed} (pass --seed {seed} to repeat this run)")
        mc = ModelConfig(**model_given, vocab_size=len(vocab))
        return mc, TrainConfig(**train_given, seed=seed), vocab.codes, None
    if not out.exists():
        fail(f"nothing to resume: {out} does not exist (drop --resume to start a new run)")
    try:
        ckpt = load(out)
    except CheckpointError as e:
        fail(str(e))
    if ckpt.meta.get("corpus_sha256") != text_sha256(text):
        fail(f"this corpus is not the one the run in {out} was trained on (its SHA-256 differs); resume with the "
             f"same corpus, or start a new run with --force")
    stored = dataclasses.asdict(ckpt.model_config) | dataclasses.asdict(ckpt.train_config)
    for name, value in given.items():
        if (name in MODEL_OPTIONS or name in FIXED_ON_RESUME) and value != stored[name]:
            if name == "batch" and _fitted_batch(value, len(text), ckpt.train_config) == stored[name]:
                continue  # the same command line again: a short corpus shrank --batch the same way
            flag = "--" + name.replace("_", "-")
            fail(f"{flag} {value} conflicts with the run in {out} ({flag} {stored[name]}); drop it to resume, "
                 f"or start a new run with --force")
    train_given = {k: v for k, v in train_given.items() if k not in FIXED_ON_RESUME}
    return ckpt.model_config, dataclasses.replace(ckpt.train_config, **train_given), ckpt.vocab, ckpt


def _fitted_batch(batch: int, n_chars: int, tc: TrainConfig) -> int:
    """The batch a run of `tc` on a corpus of n_chars characters would use for --batch `batch`."""
    from charrnn.data import split
    from charrnn.train import fit_batch

    n_val = len(split(range(n_chars), tc.val_frac)[1])
    return fit_batch(n_chars - n_val, batch, tc.seq)


class _Interrupt:
    """First Ctrl-C: finish the step, save, exit 130. Second: exit at once, the checkpoint on disk untouched and
    the temp file of a save in progress removed."""

    def __init__(self):
        from charrnn.checkpoint import discard_temp_files

        self.discard_temp_files = discard_temp_files
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self)

    def __call__(self, signum, frame):
        if self.requested:
            self.discard_temp_files()
            os._exit(130)
        self.requested = True
        # os.write, not print: the signal may land inside a print to stderr, and print is not reentrant
        with contextlib.suppress(OSError):  # stderr's reader may be gone; the save must still happen
            os.write(2, b"\ninterrupted: finishing this step and saving (Ctrl-C again to quit without saving)\n")

    def restore(self):
        signal.signal(signal.SIGINT, self.previous)


def _save(run, out: Path) -> None:
    from charrnn.checkpoint import CheckpointError, save

    try:
        save(out, run.checkpoint())
    except (CheckpointError, OSError) as e:
        fail(f"could not write {out}: {e}")


def _train(mc, tc, vocab, text: str, ckpt, out: Path, corpus: str) -> None:
    """Run the training loop: show progress, save on validation, periodically, at the end and on Ctrl-C."""
    import shlex
    import time

    import numpy as np

    from charrnn.cli.progress import Progress, _bits, _duration, summary
    from charrnn.corpus import text_sha256
    from charrnn.data import Vocab
    from charrnn.train import Diverged, Run

    ids = Vocab(vocab).encode(text)
    try:
        run = Run(mc, tc, vocab, ids, text_sha256(text), resume=ckpt)
    except ValueError as e:
        fail(str(e))
    if run.tc.batch != tc.batch:
        say(f"the corpus is short: using --batch {run.tc.batch} instead of {tc.batch}")
    first, saved, saved_step, last = run.meta["step"], time.monotonic(), None, None
    progress, interrupt = Progress(run.total_steps, first, run.tc.max_time), _Interrupt()
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is reported as such
            for last in run.steps():
                progress.update(last)
                if interrupt.requested:
                    break
                due = time.monotonic() - saved >= run.tc.checkpoint_every
                if last.val_loss is not None or last.stop or due:
                    _save(run, out)
                    saved, saved_step = time.monotonic(), last.step
    except Diverged as e:
        progress.close()
        kept = f"; {out} is untouched" if out.exists() else ""
        if saved_step is not None:
            kept = f"; {out} holds this run's last save, at step {saved_step}"
        fail(f"{e}{kept}")
    finally:
        progress.close()
        interrupt.restore()
    if last is None and not interrupt.requested:
        say(f"nothing to train: the run in {out} is already at step {run.meta['step']}, its bound; pass a larger "
            f"--steps or --epochs to continue it")
    if interrupt.requested or last is None or not last.stop:
        _save(run, out)
    m = run.meta
    reason = {"steps": "step limit", "epochs": "epoch limit", "time": "time budget", "patience": "patience"}
    summary([("checkpoint", str(out)), ("steps", f"{m['step']} ({m['step'] - first} in this run)"),
             ("epochs", f"{m['epochs_done'] + m['cursor'] / run.per_epoch:.2f}"),
             ("time", _duration(last.elapsed if last else 0.0)),
             ("speed", f"{last.chars_per_sec:,.0f} chars/s" if last else "-"),
             ("train loss", _bits(last.loss if last else None)), ("best val loss", _bits(m["best_val_loss"])),
             ("seed", str(run.tc.seed)),
             ("stopped by", "Ctrl-C" if interrupt.requested else reason.get(last.stop if last else "", "-"))])
    if interrupt.requested:
        again = f"charrnn train {shlex.quote(corpus)} -o {shlex.quote(str(out))} --resume"
        say(f"saved a resumable checkpoint to {out}; continue with: {again}")
        raise typer.Exit(130)
    try:
        print(out, flush=True)
    except BrokenPipeError:  # the reader of stdout is gone: the checkpoint is saved, so this is still a success
        quiet_stdout()


@app.command()
def train(
    corpus: str = text_argument("UTF-8 text to learn from: a path, or - for stdin."),
    out: str = typer.Option(DEFAULT_CHECKPOINT, "-o", "--out", help="Checkpoint to write; parent directories "
                             "are created. An existing file is never overwritten without --resume or --force."),
    force: bool = typer.Option(False, "--force", help="Start a new run over an existing --out (replaced "
                               "atomically, only when the first save happens)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run stored in --out exactly where it "
                                "stopped. Options not given come from the checkpoint; conflicting ones exit 1."),
    cell: Cell = _opt(M.cell, "--cell", help="Recurrent cell."),
    hidden: int = _opt(M.hidden, "--hidden", min=1, help="Hidden size H of each layer."),
    layers: int = _opt(M.layers, "--layers", min=1, help="Number of stacked layers."),
    embed: int = _opt(M.embed, "--embed", min=1, help="Embedding size D."),
    dropout: float = _opt(M.dropout, "--dropout", min=0.0, callback=_below_one,
                          help="Dropout between stacked layers and before the decoder."),
    batch: int = _opt(TR.batch, "--batch", min=1, help="B contiguous streams through the corpus (fewer for a "
                      "short corpus)."),
    seq: int = _opt(TR.seq, "--seq", min=1, help="T steps of truncated backpropagation through time."),
    lr: float = _opt(TR.lr, "--lr", callback=_positive, help="Learning rate."),
    optimizer: Optimizer = _opt(TR.optimizer, "--optimizer", help="Optimizer."),
    momentum: float = _opt(TR.momentum, "--momentum", min=0.0, callback=_below_one,
                           help="Momentum (sgd and rmsprop)."),
    weight_decay: float = _opt(TR.weight_decay, "--weight-decay", min=0.0,
                               help="Weight decay (decoupled for adam, i.e. AdamW)."),
    clip: float = _opt(TR.clip, "--clip", min=0.0, help="Clip the global gradient norm to this (0 = off)."),
    schedule: Schedule = _opt(TR.schedule, "--schedule", help="Learning-rate schedule over the run: cosine "
                              "decays to 1% of --lr; step halves it at 1/2 and again at 3/4 of the run."),
    warmup: int = _opt(TR.warmup, "--warmup", min=0, help="Linear warm-up over the first N steps."),
    steps: int = _opt("none", "--steps", min=1, help="Stop after N optimizer steps in all (counting those "
                      f"before a --resume). With none of --steps/--epochs/--max-time: {DEFAULT_STEPS} steps."),
    epochs: float = _opt("none", "--epochs", callback=_positive, help="Stop after E passes over the corpus."),
    max_time: str = _opt("none", "--max-time", help="Stop after this wall-clock budget for this invocation "
                         "(90s, 20m, 1h). A schedule that decays over --max-time (no --steps/--epochs) depends "
                         "on the wall clock, so such a run is not bit-reproducible."),
    val_frac: float = _opt(TR.val_frac, "--val-frac", min=0.0, max=0.5,
                           help="The last fraction of the corpus is validation (0 = none)."),
    eval_every: int = _opt(TR.eval_every, "--eval-every", min=1, help="Validate (and save) every N steps."),
    patience: int = _opt("none", "--patience", min=1, help="Stop after K validations without improvement."),
    checkpoint_every: str = _opt("10m", "--checkpoint-every", help="Also save at least this often (a duration)."),
    seed: int = _opt("random", "--seed", min=0, help="Every random draw follows from S; when not given, a seed "
                     "is drawn, printed on stderr and stored."),
    dtype: Dtype = _opt(TR.dtype, "--dtype", help="Compute precision."),
    threads: int = typer.Option(None, "--threads", min=1, help="BLAS threads.", show_default="all cores"),
) -> None:
    """Learn a character-level model of CORPUS and write it to --out (its path is printed on stdout)."""
    given = {k: (v.value if isinstance(v, Enum) else v) for k, v in locals().items()
             if v is not None and k not in ("corpus", "out", "force", "resume", "threads")}
    out = Path(out)
    for name in ("max_time", "checkpoint_every"):
        if name in given:
            try:
                given[name] = parse_duration(given[name])
            except typer.BadParameter as e:
                raise typer.BadParameter(str(e), param_hint="--" + name.replace("_", "-"))
    if force and resume:
        fail("--force starts a new run and --resume continues one; give only one of them")
    if out.is_dir():
        fail(f"--out {out} is a directory; give a file path such as {out / 'model.npz'}")
    if out.exists() and not out.is_file():
        fail(f"--out {out} is not a regular file; give a file path such as checkpoints/model.npz")
    if out.exists() and not (force or resume):
        fail(f"{out} already exists; it holds a {RUN_HINT}")
    set_threads(threads)
    from charrnn.data import split

    text = read_text(corpus)
    if not text:
        fail(f"{'stdin' if corpus == '-' else corpus} is empty: there is nothing to learn")
    mc, tc, vocab, ckpt = _merge(given, out, resume, text)
    if tc.patience is not None and tc.val_frac == 0:
        fail("--patience counts validations, but --val-frac 0 turns validation off; give --val-frac > 0")
    n_val = len(split(range(len(text)), tc.val_frac)[1])
    if tc.val_frac > 0 and n_val < 2:
        too_few = (f"--val-frac {tc.val_frac} holds out {n_val} character(s) of this corpus, fewer than the 2 "
                   f"validation needs")
        if tc.patience is not None:
            fail(f"{too_few}, so --patience could never stop the run; give a larger --val-frac")
        say(f"{too_few}: training without validation (give a larger --val-frac, or --val-frac 0)")
    _train(mc, tc, vocab, text, ckpt, out, corpus)
