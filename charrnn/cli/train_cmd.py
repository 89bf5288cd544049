"""`charrnn train PATH...`: learn a model of a text; stdout gets the checkpoint path, stderr the progress."""

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

from charrnn.cli import common
from charrnn.cli.common import app, at_most, fail, parse_duration, quiet_stdout, say, set_threads
from charrnn.cli.corpus_io import (cache_dir_option, corpus_label, corpus_words, encoding_option, include_option,
                                    load_corpus, paths_argument)
from charrnn.config import (BUDGET_SCHEDULE, CELL_NAMES, DEFAULT_CHECKPOINT, DEFAULT_DEVICE, DEFAULT_ENGINE,
                            DEFAULT_STEPS, DTYPE_NAMES, ENGINE_NAMES, MAX_BATCH, MAX_EMBED, MAX_HIDDEN, MAX_LAYERS,
                            MAX_LENGTH, MAX_SEED, MAX_SEQ, MAX_THREADS, OPTIMIZER_NAMES, SCHEDULE_NAMES,
                            ModelConfig, TrainConfig)

Cell = Enum("Cell", {n: n for n in CELL_NAMES}, type=str)
Optimizer = Enum("Optimizer", {n: n for n in OPTIMIZER_NAMES}, type=str)
Schedule = Enum("Schedule", {n: n for n in SCHEDULE_NAMES}, type=str)
Dtype = Enum("Dtype", {n: n for n in DTYPE_NAMES}, type=str)
M, TR = ModelConfig(), TrainConfig()
Engine = Enum("Engine", {n: n for n in ENGINE_NAMES}, type=str)


def _finite(value):
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def _below_one(value):
    if value is not None and not value < 1.0:  # also rejects nan
        raise typer.BadParameter(f"{value} must be below 1")
    return value


def _positive(value):
    if value is not None and not 0 < value < math.inf:  # also rejects nan and inf
        raise typer.BadParameter(f"{value} must be a positive number")
    return value


def _init_source(value):
    """--init-from: `bundled` or a checkpoint path that exists (else a usage error, exit 2)."""
    if value is not None and value != "bundled" and not os.path.isfile(value):
        what = "is a directory" if os.path.isdir(value) else "does not exist"
        raise typer.BadParameter(f"{value!r} {what}; give a checkpoint file, or `bundled` for the bundled model")
    return value


def _opt(default, *names, help: str, **kw):
    """An option whose absence is visible (None), showing the real default from config in --help."""
    return typer.Option(None, *names, help=help, show_default=False if default is None else str(default), **kw)


class _Interrupt:
    """First Ctrl-C (or SIGTERM, as `kill`, systemd and batch schedulers send): finish the step, save, exit 130
    (143). Second: exit at once, the checkpoint on disk untouched and the temp file of a save in progress
    removed."""

    SIGNALS = {signal.SIGINT: (130, "Ctrl-C", "Ctrl-C again"), signal.SIGTERM: (143, "SIGTERM", "SIGTERM again")}

    def __init__(self):
        from charrnn.checkpoint import discard_temp_files

        self.discard_temp_files = discard_temp_files
        self.requested, self.code, self.name = False, 130, "Ctrl-C"
        self.previous = {signum: signal.signal(signum, self) for signum in self.SIGNALS}

    def __call__(self, signum, frame):
        if self.requested:
            self.discard_temp_files()
            os._exit(self.SIGNALS[signum][0])
        self.requested = True
        self.code, self.name, again = self.SIGNALS[signum]
        what = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
        if common.QUIET:  # --quiet, or a distributed run's other ranks: rank 0 alone says it
            return
        # os.write, not print: the signal may land inside a print to stderr, and print is not reentrant
        with contextlib.suppress(OSError):  # stderr's reader may be gone; the save must still happen
            os.write(2, f"\n{what}: finishing this step and saving ({again} to quit without saving)\n".encode())

    def restore(self):
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)


def _save(run, out: Path) -> None:
    from charrnn.checkpoint import CheckpointError, save

    try:
        save(out, run.checkpoint())
    except (CheckpointError, OSError) as e:
        fail(f"could not write {out}: {e}")


def _check_writable(out: Path) -> None:
    """Fail fast (exit 1) when --out could not be saved, before any training is spent."""
    from charrnn.checkpoint import CheckpointError, check_writable

    try:
        check_writable(out)
    except CheckpointError as e:
        fail(f"{e}; choose another --out")


def _lock(ctx: typer.Context, out: Path, force: bool, resume: bool, dist) -> None:
    """Hold the lock on --out until the command ends (rank 0 for a distributed job): another run holding it is one
    line naming its pid, exit 1, with nothing touched. --out is checked again under the lock, as a run that held
    it may have saved there since."""
    from charrnn.checkpoint.lock import Locked, OutLock
    from charrnn.launch import LaunchError, check_out

    lock, problem = OutLock(out), None
    if dist is None or dist.rank == 0:
        try:
            ctx.call_on_close(lock.acquire().release)
            check_out(out, force, resume)
        except Locked as e:
            problem = f"{e}; wait for it to end, or choose another --out"
        except LaunchError as e:
            problem = str(e)
        except OSError as e:
            problem = f"cannot lock {out}: {e.strerror or e} ({lock.path}); choose another --out"
    if dist is not None:
        problem = dist.broadcast(problem)  # every rank stops when rank 0 cannot have the lock
    if problem:
        if dist is not None and dist.rank != 0:
            raise typer.Exit(1)  # rank 0 says why
        fail(problem)
    if not lock.supported:
        say(f"charrnn: warning: the filesystem of {out} cannot lock files, so a second run into it would not be "
            f"refused")


def _start(plan, corpus, engine: str, device: str, dist):
    """The Run for a launch plan; a run that cannot start is one line, exit 1."""
    from charrnn.engine import EngineUnavailable
    from charrnn.train import Run

    try:
        return Run(plan.mc, plan.tc, corpus, resume=plan.resume, engine=engine, device=device, dist=dist,
                   init=plan.init)
    except EngineUnavailable as e:
        fail(str(e), 2)
    except ValueError as e:
        fail(str(e))


def _train(run, tc, out: Path, source: str) -> None:  # source: the corpus part of the command line
    """Run the training loop: show progress, save on validation, periodically, at the end and on Ctrl-C. In a
    distributed run only rank 0 shows and saves; every rank stops at the same step."""
    import shlex
    import time

    import numpy as np

    from charrnn.cli.progress import Progress
    from charrnn.train import Diverged

    main = run.is_main
    if run.tc.batch != tc.batch and main:
        say(f"the corpus is short: using --batch {run.tc.batch} instead of {tc.batch}")
    first, saved, saved_step, last = run.meta.step, time.monotonic(), None, None
    progress = Progress(run.total_steps, first, run.tc.max_time) if main else None
    interrupt = _Interrupt()
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is reported as such
            for last in run.steps(lambda: interrupt.requested):
                if not main:
                    continue
                progress.update(last)
                due = time.monotonic() - saved >= run.tc.checkpoint_every
                if last.stop != "interrupt" and (last.val_loss is not None or last.stop or due):
                    _save(run, out)
                    saved, saved_step = time.monotonic(), last.step
    except Diverged as e:
        kept = f"; {out} is untouched" if out.exists() else ""
        if saved_step is not None:
            kept = f"; {out} holds this run's last save, at step {saved_step}"
        fail(f"{e}{kept}")
    finally:
        if progress is not None:
            progress.close()
        interrupt.restore()
    stopped = interrupt.requested or (last is not None and last.stop == "interrupt")
    if not main:
        if stopped:
            raise typer.Exit(interrupt.code)
        return
    if last is None and not stopped:
        say(f"nothing to train: the run in {out} is already at step {run.meta.step}, its bound; pass a larger "
            f"--steps or --epochs to continue it")
    if stopped or last is None or not last.stop:
        _save(run, out)
    _summary(run, out, first, last, interrupt.name if stopped else None)
    if stopped:
        again = f"charrnn train {source} -o {shlex.quote(str(out))} --resume"
        say(f"saved a resumable checkpoint to {out}; continue with: {again}")
        raise typer.Exit(interrupt.code)
    try:
        print(out, flush=True)
    except BrokenPipeError:  # the reader of stdout is gone: the checkpoint is saved, so this is still a success
        quiet_stdout()


def _summary(run, out: Path, first: int, last, interrupted_by: str | None) -> None:
    """The table on stderr at the end of a run; `last` is the last Step (None when no step was made)."""
    from charrnn.cli.progress import duration, loss_text, summary

    m = run.meta
    reason = {"steps": "step limit", "epochs": "epoch limit", "time": "time budget", "patience": "patience"}
    summary([("checkpoint", str(out)), ("steps", f"{m.step} ({m.step - first} in this run)"),
             ("epochs", f"{m.epochs_done + m.cursor / run.per_epoch:.2f}"),
             ("time", duration(last.elapsed if last else 0.0)),
             ("speed", f"{last.chars_per_sec:,.0f} chars/s" if last else "-"),
             ("last step loss", loss_text(last.loss if last else None)),
             ("best val loss", loss_text(m.best_val_loss)),
             ("val chars", f"{m.val_chars:,} of {len(run.val_ids):,} held out scored per validation"
              if m.val_chars else "-"),
             ("seed", str(run.tc.seed)), ("engine", f"{run.engine.name} ({run.engine.where})"),
             ("stopped by", interrupted_by or reason.get(last.stop if last else "", "-"))])


@app.command()
def train(
    ctx: typer.Context,
    corpus: list[str] = paths_argument("Text to learn from."),
    out: str = typer.Option(DEFAULT_CHECKPOINT, "-o", "--out", help="Checkpoint to write; parent directories "
                             "are created. An existing file is never overwritten without --resume or --force."),
    force: bool = typer.Option(False, "--force", help="Start a new run over an existing --out (replaced "
                               "atomically, only when the first save happens)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run stored in --out exactly where it "
                                "stopped. Options not given come from the checkpoint; conflicting ones exit 1."),
    init_from: str = typer.Option(None, "--init-from", callback=_init_source, show_default=False, help="Start a new run from this checkpoint's weights (a "
                                  "path, or `bundled` for the bundled model): fine-tuning. Its cell and sizes are "
                                  "kept, the vocabulary grows to the corpus's; the training options are this run's."),
    cell: Cell = _opt(M.cell, "--cell", help="Recurrent cell."),
    hidden: int = _opt(M.hidden, "--hidden", min=1, max=MAX_HIDDEN, help="Hidden size H of each layer."),
    layers: int = _opt(M.layers, "--layers", min=1, max=MAX_LAYERS, help="Number of stacked layers."),
    embed: int = _opt(M.embed, "--embed", min=1, max=MAX_EMBED, help="Embedding size D."),
    dropout: float = _opt(M.dropout, "--dropout", min=0.0, callback=_below_one,
                          help="Dropout between stacked layers and before the decoder."),
    batch: int = _opt(TR.batch, "--batch", min=1, max=MAX_BATCH, help="B contiguous streams through the corpus "
                      "(fewer for a short corpus)."),
    seq: int = _opt(TR.seq, "--seq", min=1, max=MAX_SEQ, help="T steps of truncated backpropagation through time."),
    lr: float = _opt(TR.lr, "--lr", callback=_positive, help="Learning rate."),
    optimizer: Optimizer = _opt(TR.optimizer, "--optimizer", help="Optimizer."),
    momentum: float = _opt(TR.momentum, "--momentum", min=0.0, callback=_below_one,
                           help="Momentum (sgd and rmsprop)."),
    weight_decay: float = _opt(TR.weight_decay, "--weight-decay", min=0.0, callback=_finite,
                               help="Weight decay (decoupled for adam, i.e. AdamW)."),
    clip: float = _opt(TR.clip, "--clip", min=0.0, callback=_finite,
                       help="Clip the global gradient norm to this (0 = off)."),
    schedule: Schedule = _opt(f"{TR.schedule}; {BUDGET_SCHEDULE} under --max-time alone", "--schedule",
                              help="Learning-rate schedule over the run: cosine decays to 1% of --lr; step halves "
                                   "it at 1/2 and again at 3/4 of the run."),
    warmup: int = _opt(TR.warmup, "--warmup", min=0, callback=at_most(MAX_LENGTH),
                       help="Linear warm-up over the first N steps."),
    steps: int = _opt(None, "--steps", min=1, callback=at_most(MAX_LENGTH), help="Stop after N optimizer steps in "
                      f"all (counting those before a --resume). With none of --steps, --epochs and --max-time: "
                      f"{DEFAULT_STEPS} steps."),
    epochs: float = _opt(None, "--epochs", callback=_positive, help="Stop after E passes over the corpus."),
    max_time: str = _opt(None, "--max-time", help="Stop after this wall-clock budget for this invocation "
                         "(90s, 20m, 1h). A schedule that decays over --max-time (no --steps/--epochs) depends "
                         "on the wall clock, so such a run is not bit-reproducible."),
    val_frac: float = _opt(TR.val_frac, "--val-frac", min=0.0, max=0.5, callback=_finite,
                           help="The last fraction of the corpus is validation (0 = none)."),
    eval_every: int = _opt(TR.eval_every, "--eval-every", min=1, callback=at_most(MAX_LENGTH),
                           help="Validate (and save) every N steps."),
    val_chars: int = _opt(TR.val_chars, "--val-chars", min=0, callback=at_most(MAX_LENGTH),
                          help="Score at most N held-out characters per validation: the same fixed part of a large "
                               "split every time (the head of each stream); a smaller split is scored whole. "
                               "0 = always all of it."),
    patience: int = _opt(None, "--patience", min=1, callback=at_most(MAX_LENGTH),
                         help="Stop after K validations without improvement."),
    checkpoint_every: str = _opt(f"{TR.checkpoint_every / 60:g}m", "--checkpoint-every",
                                 help="Also save at least this often (a duration)."),
    seed: int = _opt(None, "--seed", min=0, callback=at_most(MAX_SEED), help="Every random draw follows from S; "
                     "when not given, a seed is drawn, printed on stderr and stored."),
    dtype: Dtype = _opt(TR.dtype, "--dtype", help="Compute precision."),
    include: list[str] = include_option(),
    encoding: str = encoding_option(),
    cache_dir: str = cache_dir_option(),
    threads: int = typer.Option(None, "--threads", min=1, max=MAX_THREADS, help="BLAS threads.",
                                show_default="all cores"),
    engine: Engine = typer.Option(DEFAULT_ENGINE, "--engine", help="Who computes the steps: numpy (built in) or "
                                  "torch (pip install 'charrnn[torch]'; GPUs, torchrun). Same model, checkpoint "
                                  "and results; a run may resume on either."),
    device: str = typer.Option(DEFAULT_DEVICE, "--device", help="Where the torch engine runs: cpu, cuda, cuda:N "
                               "or mps."),
) -> None:
    """Learn a character-level model of the text in PATH... and write it to --out (its path is printed on stdout)."""
    given = {k: (v.value if isinstance(v, Enum) else v) for k, v in locals().items()
             if v is not None and k not in ("ctx", "corpus", "out", "force", "resume", "threads", "engine", "device",
                                            "cache_dir", "init_from", "include", "encoding")}
    out = Path(out)
    for name in ("max_time", "checkpoint_every"):
        if name in given:
            try:
                given[name] = parse_duration(given[name])
            except typer.BadParameter as e:
                raise typer.BadParameter(str(e), param_hint="--" + name.replace("_", "-"))
    set_threads(threads)
    from charrnn.launch import LaunchError, check_out, plan, validation_notice

    try:
        check_out(out, force, resume, init_from)
    except LaunchError as e:
        fail(str(e))
    _check_writable(out)  # (imports numpy: after set_threads)
    dist = _prepare(engine.value, device, corpus)
    _lock(ctx, out, force, resume, dist)
    paths = corpus
    with dist.main_first() if dist is not None else contextlib.nullcontext():  # the corpus is prepared once
        corpus = load_corpus(paths, cache_dir, include, encoding)
        if not len(corpus):
            fail(f"{corpus_label(paths)} is empty: there is nothing to learn")
    try:
        launch = plan(given, corpus, out, resume, init_from)
        notice = validation_notice(launch.tc, len(corpus))
    except LaunchError as e:
        fail(str(e))
    if launch.init is not None:
        origin, added = launch.init.origin, launch.init.added
        say(f"starting from {init_from} (sha256 {origin['sha256'][:12]}, {origin['steps'] or 0:,} steps): its "
            f"{len(launch.init.vocab) - added} characters{f' and {added} new in this corpus' if added else ''}")
    if launch.seed_drawn:
        if dist is not None:  # every rank must follow rank 0's seed
            seed = dist.broadcast(launch.tc.seed)
            launch = dataclasses.replace(launch, tc=dataclasses.replace(launch.tc, seed=seed))
        say(f"seed {launch.tc.seed} (pass --seed {launch.tc.seed} to repeat this run)")
    if notice:
        say(notice)
    _train(_start(launch, corpus, engine.value, device, dist), launch.tc, out, corpus_words(paths, include, encoding))


def _prepare(engine: str, device: str, paths: list[str]):
    """Check that the engine and device can run here (else one line, exit 2); under torchrun, join the process
    group and return it (rank 0 alone speaks from here on), else None."""
    from charrnn.engine import EngineUnavailable, prepare

    try:
        dist = prepare(engine, device)
    except EngineUnavailable as e:
        fail(str(e), 2)
    if dist is not None and dist.rank != 0:
        common.QUIET = True  # errors only: the other ranks are quiet
    if dist is not None and "-" in paths:
        fail("a distributed run reads its corpus from a file: every rank must read it, stdin cannot be shared", 2)
    return dist
