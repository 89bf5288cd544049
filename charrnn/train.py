"""Training and evaluation: `Run.steps()` yields one `Step` per optimizer step; `evaluate()` scores a text.

Shapes: B streams, T steps, V vocabulary. The corpus is cut into B contiguous streams; batch k+1 continues every
stream where batch k stopped and the hidden state is carried across batches (truncated BPTT), reset to zero when an
epoch wraps around. Everything a run needs to continue exactly where it stopped (latest weights, optimizer moments,
step, data cursor, carried state, RNG state, history) goes into its checkpoint, so N steps straight and k steps plus
a resume to N give identical weights. The core never prints: progress flows up as yielded `Step` records, and the
caller decides when to save.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from charrnn import data, model
from charrnn.checkpoint import Checkpoint
from charrnn.config import DEFAULT_STEPS, ModelConfig, TrainConfig
from charrnn.optim import clip_grad_norm, learning_rate, make_optimizer


# nats/char: no model that learns gets here (uniform guessing over all of Unicode is 13.9); a finite loss this
# large means the weights blew up (e.g. --lr 1e30 saturates every gate, so the loss never becomes NaN).
LOSS_CEILING = 1e3


class Diverged(RuntimeError):
    """A loss or the gradient norm became non-finite, or a loss exceeded LOSS_CEILING: do not save this run.

    Raised before the update when the training loss shows it, after it when validation does (the step's update
    blew the weights up)."""


@dataclass(frozen=True)
class EvalResult:
    nats_per_char: float
    chars: int  # characters scored
    streams: int

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.nats_per_char, 700.0))


def evaluate(params: dict, mc: ModelConfig, ids: np.ndarray, batch: int = 32, seq: int = 64) -> EvalResult:
    """Mean loss over ids (L,): B contiguous streams with carried state; every character but a stream's first counts.

    B is `batch`, or fewer for short texts (each stream needs two characters). Validation uses this function too.
    The streams go through in chunks of `seq` steps (64: a chunk's gate arrays stay small; 256 measured the same
    or slower for an LSTM 2x256); the result does not depend on it.
    """
    if len(ids) < 2:
        raise ValueError("the text must have at least 2 characters to be scored")
    B = max(1, min(batch, len(ids) // 2))
    streams = data.streams(ids, B)  # (B,S)
    state = model.init_state(mc, B, params["decoder.weight"].dtype)
    total, S = 0.0, streams.shape[1]
    for start in range(0, S - 1, seq):
        y = streams[:, start + 1 : start + seq + 1]  # (B,≤seq) targets
        x = streams[:, start : start + y.shape[1]]  # (B,≤seq) inputs
        nll, state = model.loss(params, mc, x, y, state)
        total += nll
    chars = B * (S - 1)
    return EvalResult(total / chars, chars, B)


def trained_chars(n_chars: int, batch: int, seq: int) -> int:
    """How many characters one epoch trains on with `batch` streams of T = seq steps (the rest is left over)."""
    return batch * ((n_chars // batch - 1) // seq) * seq


def fit_batch(n_chars: int, batch: int, seq: int) -> int:
    """The batch size to use: the largest B <= `batch` whose epoch covers at least 95% of the most any B can.

    A stream of S characters gives (S - 1) // seq batches and leaves the rest unused, so on a short text the
    requested B can leave much of it out (bears.txt, B 32, T 64: 48%); a long text keeps `batch`.
    """
    if n_chars < seq + 1:
        raise ValueError(f"the training text has {n_chars} characters, fewer than one sequence of --seq {seq} "
                         f"needs ({seq + 1}); use a longer corpus or a smaller --seq")
    covered = [trained_chars(n_chars, B, seq) for B in range(1, batch + 1)]  # covered[B - 1]
    return max(B for B in range(1, batch + 1) if covered[B - 1] >= 0.95 * max(covered))


@dataclass(frozen=True)
class Step:
    step: int  # optimizer steps in all, counting those before a resume
    epoch: float  # passes over the training text
    loss: float  # this step's training loss, nats/char
    lr: float
    grad_norm: float  # before clipping
    chars_per_sec: float  # in this invocation
    elapsed: float  # seconds in this invocation
    total_steps: int | None  # the step the run is bounded by, if any
    val_loss: float | None = None  # set on steps that validated
    best_val_loss: float | None = None
    improved: bool = False
    stop: str | None = None  # why the run ends after this step: steps, epochs, time, patience


class Run:
    """A training run, fresh or resumed from a checkpoint's `resume/` state."""

    def __init__(self, mc: ModelConfig, tc: TrainConfig, vocab: np.ndarray, ids: np.ndarray, corpus_hash: str,
                 resume: Checkpoint | None = None):
        self.vocab, self.corpus_hash = vocab, corpus_hash
        train_ids, self.val_ids = data.split(ids, tc.val_frac)
        self.tc = tc = replace(tc, batch=fit_batch(len(train_ids), tc.batch, tc.seq))
        self.mc, self.dtype = mc, np.dtype(tc.dtype)
        self.train = data.streams(train_ids, tc.batch)  # (B,S)
        self.per_epoch = data.batches_per_epoch(self.train, tc.seq)
        self.total_steps = self._total_steps()
        self.rng = np.random.default_rng(tc.seed)
        self.params = model.init_params(mc, self.rng, self.dtype)
        self.optimizer = make_optimizer(tc.optimizer, self.params, tc.momentum, tc.weight_decay)
        self.state = model.init_state(mc, tc.batch, self.dtype)
        self.best: dict | None = None  # best-validation weights
        self.meta = {"step": 0, "cursor": 0, "epochs_done": 0, "chars": 0, "elapsed": 0.0, "seed": tc.seed,
                     "best_val_loss": None, "best_step": None, "bad_evals": 0, "history": [],
                     "corpus_sha256": corpus_hash, "corpus_chars": int(len(ids))}
        if resume is not None:
            self._restore(resume)

    def _total_steps(self) -> int | None:
        tc, bounds = self.tc, []
        if tc.steps is not None:
            bounds.append(tc.steps)
        if tc.epochs is not None:
            bounds.append(math.ceil(tc.epochs * self.per_epoch))
        if not bounds and tc.max_time is None:
            bounds.append(DEFAULT_STEPS)
        return min(bounds) if bounds else None

    def _restore(self, ckpt: Checkpoint) -> None:
        r, meta = ckpt.resume, dict(ckpt.meta)
        if not r:
            raise ValueError("the checkpoint holds no training state to resume (start a new run with --force)")
        try:
            self._restore_state(r, meta)
        except (KeyError, TypeError, ValueError) as e:  # a damaged or foreign file: one line, not a traceback
            detail = f"no {e}" if isinstance(e, KeyError) else str(e)
            raise ValueError(f"the checkpoint's training state cannot be resumed ({detail}); start a new run "
                             f"with --force") from e
        if meta.get("best_val_loss") is not None:
            self.best = {k: v.astype(self.dtype) for k, v in ckpt.params.items()}
        self.meta.update(meta)

    def _restore_state(self, r: dict, meta: dict) -> None:
        """Latest weights, optimizer moments, carried state and RNG from `resume/` arrays and meta (pops "rng")."""
        saved = {f"params/{k}": p for k, p in self.params.items()}
        saved |= {f"state/{layer}/{i}": a for layer, s in enumerate(self.state) for i, a in enumerate(s)}
        for key, a in saved.items():
            if r[key].shape != a.shape:
                raise ValueError(f"{key} has shape {r[key].shape}, expected {a.shape}")
        for k, p in self.params.items():
            p[...] = r[f"params/{k}"]
        self.optimizer.load_state_dict({k[len("optim/"):]: v for k, v in r.items() if k.startswith("optim/")})
        self.state = [tuple(r[f"state/{layer}/{i}"].astype(self.dtype) for i in range(len(s)))
                      for layer, s in enumerate(self.state)]
        self.rng.bit_generator.state = meta.pop("rng")

    def checkpoint(self) -> Checkpoint:
        """Everything to sample from (best weights when validating, else latest) and to resume exactly."""
        resume = {f"params/{k}": v for k, v in self.params.items()}
        resume |= {f"optim/{k}": v for k, v in self.optimizer.state_dict().items()}
        resume |= {f"state/{layer}/{i}": a for layer, s in enumerate(self.state) for i, a in enumerate(s)}
        meta = dict(self.meta, rng=self.rng.bit_generator.state)
        return Checkpoint(model_config=self.mc, train_config=self.tc, vocab=self.vocab,
                          params=self.best if self.best is not None else self.params, resume=resume, meta=meta)

    def _progress(self, elapsed: float) -> float:
        """How far through the run we are, for the learning-rate schedule."""
        if self.total_steps:
            return min(1.0, self.meta["step"] / self.total_steps)
        return min(1.0, elapsed / self.tc.max_time)

    def _stop_reason(self, elapsed: float) -> str | None:
        tc, step = self.tc, self.meta["step"]
        if tc.steps is not None and step >= tc.steps:
            return "steps"
        if tc.epochs is not None and step >= math.ceil(tc.epochs * self.per_epoch):
            return "epochs"
        if self.total_steps is not None and step >= self.total_steps:
            return "steps"
        if tc.max_time is not None and elapsed >= tc.max_time:
            return "time"
        return None

    def validate(self) -> float:
        """Validation loss (nats/char) of the latest weights; tracks the best weights and patience."""
        loss = evaluate(self.params, self.mc, self.val_ids, self.tc.batch).nats_per_char
        meta = self.meta
        if not math.isfinite(loss) or loss > LOSS_CEILING:  # caught before the save that follows validation
            raise Diverged(f"training diverged at step {meta['step']} (validation loss {loss:.4g}); lower --lr "
                           f"(now {self.tc.lr:g}) or clip gradients with --clip")
        if meta["best_val_loss"] is None or loss < meta["best_val_loss"]:
            meta.update(best_val_loss=loss, best_step=meta["step"], bad_evals=0)
            if self.best is None:
                self.best = {k: v.copy() for k, v in self.params.items()}
            for k, v in self.params.items():
                np.copyto(self.best[k], v)
        else:
            meta["bad_evals"] += 1
        return loss

    def _record(self, losses: list[float], val: float | None, lr: float) -> None:
        """One history entry: mean training loss since the last entry, validation loss, position, time."""
        m = self.meta
        m["history"].append({"step": m["step"], "epoch": round(m["epochs_done"] + m["cursor"] / self.per_epoch, 4),
                             "chars": m["chars"], "elapsed": round(m["elapsed"], 3),
                             "loss": float(np.mean(losses)) if losses else None, "val_loss": val, "lr": lr})

    def steps(self) -> Iterator[Step]:
        """Train until a bound is reached, yielding after every optimizer step. Raises Diverged."""
        tc, meta = self.tc, self.meta
        start, before, first_step = time.perf_counter(), meta["elapsed"], meta["step"]
        window = meta.setdefault("window", [])  # training losses since the last history entry, kept across a resume
        if self._stop_reason(0.0):
            return
        while True:
            x, y = data.get_batch(self.train, meta["cursor"], tc.seq)
            lr = learning_rate(tc.lr, tc.schedule, self._progress(time.perf_counter() - start), meta["step"],
                               tc.warmup)
            dropout_rng = self.rng if self.mc.dropout > 0 else None
            loss, grads, state = model.loss_and_grads(self.params, self.mc, x, y, self.state, dropout_rng)
            norm = clip_grad_norm(grads, tc.clip)
            if not (math.isfinite(loss) and math.isfinite(norm)) or loss > LOSS_CEILING:
                raise Diverged(f"training diverged at step {meta['step'] + 1} (loss {loss:.4g}, gradient norm "
                               f"{norm:.4g}); lower --lr (now {tc.lr:g}) or clip gradients with --clip")
            self.optimizer.step(self.params, grads, lr)
            self.state = state
            meta["step"] += 1
            meta["chars"] += x.size
            meta["cursor"] += 1
            if meta["cursor"] == self.per_epoch:  # the streams are used up: wrap around with a fresh state
                meta.update(cursor=0, epochs_done=meta["epochs_done"] + 1)
                self.state = model.init_state(self.mc, tc.batch, self.dtype)
            window.append(loss)
            elapsed = time.perf_counter() - start
            meta["elapsed"] = before + elapsed
            stop, val = self._stop_reason(elapsed), None
            if meta["step"] % tc.eval_every == 0 or stop:
                if len(self.val_ids) >= 2:
                    val = self.validate()
                    if tc.patience is not None and meta["bad_evals"] >= tc.patience:
                        stop = stop or "patience"
                self._record(window, val, lr)
                window.clear()
            speed = (meta["step"] - first_step) * x.size / max(elapsed, 1e-9)
            yield Step(step=meta["step"], epoch=meta["epochs_done"] + meta["cursor"] / self.per_epoch, loss=loss,
                       lr=lr, grad_norm=norm, chars_per_sec=speed, elapsed=elapsed, total_steps=self.total_steps,
                       val_loss=val, best_val_loss=meta["best_val_loss"],
                       improved=val is not None and meta["best_step"] == meta["step"], stop=stop)
            if stop:
                return
