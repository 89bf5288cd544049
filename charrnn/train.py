"""Training and evaluation: `Run.steps()` yields one `Step` per optimizer step; `evaluate()` scores a text.

Shapes: B streams, T steps, V vocabulary. The corpus is cut into B contiguous streams; batch k+1 continues every
stream where batch k stopped and the hidden state is carried across batches (truncated BPTT), reset to zero when an
epoch wraps around. Everything a run needs to continue exactly where it stopped (latest weights, optimizer moments,
step, data cursor, carried state, RNG state, history) goes into its checkpoint, so N steps straight and k steps plus
a resume to N give identical weights. The core never prints: progress flows up as yielded `Step` records, and the
caller decides when to save. Who computes each step (and holds the weights, optimizer state and carried state) is an
engine, NumPy by default (charrnn/engine.py); everything here is the same for every engine.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np

from charrnn import data, history, model
from charrnn.checkpoint import Checkpoint
from charrnn.config import DEFAULT_BATCH, DEFAULT_STEPS, ModelConfig, TrainConfig
from charrnn.corpus import Corpus, to_vocab
from charrnn.engine import make_engine
from charrnn.finetune import Init
from charrnn.optim import learning_rate


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


# The shortest stream evaluate() cuts, in characters. Each stream starts from the zero state, and the first
# characters of a stream are scored before the model has any context, so many short streams score a text worse
# than it reads (README.md, "eval"); a text under twice this is one stream.
MIN_STREAM = 1000


def eval_streams(n_chars: int, batch: int, max_chars: int | None = None, min_stream: int = MIN_STREAM) -> int:
    """How many streams evaluate() cuts n_chars characters into: `batch` at most, and none shorter than
    `min_stream` characters (of the max_chars scored, when that bounds the work); at least one."""
    scored = min(n_chars, max_chars) if max_chars else n_chars
    return max(1, min(batch, scored // max(min_stream, 2)))


def evaluate(params: dict, mc: ModelConfig, ids: np.ndarray, batch: int = DEFAULT_BATCH, seq: int = 64,
             max_chars: int | None = None, lut: np.ndarray | None = None, progress=None,
             score=None, min_stream: int = MIN_STREAM) -> EvalResult:
    """Mean loss over ids (L,): B contiguous streams with carried state; every character but a stream's first counts.

    B is `batch`, or fewer so that no stream is shorter than `min_stream` characters (see eval_streams: a short
    text is one stream). Validation uses this function too. `max_chars` bounds the work on a long text: every
    stream is cut to its first S = max_chars // B characters, a fixed part spread over the whole text, the same
    every time (None or 0: all of it). `lut` (V_text,) maps the
    text's ids to the model's, chunk by chunk, so a memory-mapped text is never copied whole. `progress(done,
    total)` hears the characters scored after every chunk. The streams go through in chunks of `seq` steps (64: a
    chunk's gate arrays stay small; 256 measured the same or slower for an LSTM 2x256); the result does not
    depend on it. `score(x, y, state) -> (summed nll, state)` computes a chunk (default: model.loss with params;
    the torch engine passes its own, so that validation runs where the weights are).
    """
    if len(ids) < 2:
        raise ValueError("the text must have at least 2 characters to be scored")
    B = eval_streams(len(ids), batch, max_chars, min_stream)
    streams = data.streams(ids, B)  # (B,S) a view: nothing is copied
    if max_chars and streams.size > max_chars:
        streams = streams[:, :max(2, max_chars // B)]  # (B,S') the head of every stream
    state = model.init_state(mc, B, params["decoder.weight"].dtype)
    total, S = 0.0, streams.shape[1]
    for start in range(0, S - 1, seq):
        chunk = streams[:, start : start + seq + 1]  # (B,≤seq+1) inputs and, shifted by one, targets
        if lut is not None:
            chunk = lut[chunk]
        if score is None:
            nll, state = model.loss(params, mc, chunk[:, :-1], chunk[:, 1:], state)
        else:
            nll, state = score(chunk[:, :-1], chunk[:, 1:], state)
        total += nll
        if progress:
            progress(B * (start + chunk.shape[1] - 1), B * (S - 1))
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
    # Only block ends can win: within a run of B with the same n // B, covered(B) = B·T·((n // B - 1) // T) grows
    # with B, and B beyond n // (T + 1) covers nothing. The block ends are every B <= √n and n // k for k <= √n,
    # so this looks at O(√n) candidates (not `batch` of them) and picks what the search over 1..batch picks.
    m = min(batch, n_chars // (seq + 1))  # >= 1
    r = math.isqrt(n_chars)
    ends = n_chars // np.arange(n_chars // (m + 1) + 1, r + 1, dtype=np.int64)  # last B of blocks n // B = k, <= m
    candidates = np.unique(np.concatenate([np.arange(1, min(m, r) + 1), ends, [m]]))  # (≤ 2√n,)
    covered = candidates * ((n_chars // candidates - 1) // seq) * seq  # trained_chars of each candidate
    return int(candidates[covered >= 0.95 * int(covered.max())].max())


def _lut(corpus: Corpus, vocab: np.ndarray) -> np.ndarray | None:
    """How the corpus's ids map to the model's vocabulary (V_corpus,), or None when the two are the same; the
    model's must hold every character of the corpus (ValueError otherwise)."""
    if np.array_equal(vocab, corpus.vocab):
        return None
    lut, missing, _ = to_vocab(corpus, vocab)
    if missing:
        raise ValueError(f"the model's vocabulary lacks {len(missing)} character(s) of the corpus")
    return lut.astype(data.id_dtype(len(vocab)))


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
    stop: str | None = None  # why the run ends after this step: steps, epochs, time, patience, interrupt


@dataclass
class RunState:
    """Where a run stands; the checkpoint stores it as JSON `meta` (with the RNG state beside it)."""

    step: int = 0  # optimizer steps in all, counting those before a resume
    cursor: int = 0  # the next batch of the epoch
    epochs_done: int = 0
    chars: int = 0  # characters trained on (all ranks together)
    elapsed: float = 0.0  # seconds of training, all invocations
    seed: int | None = None
    best_val_loss: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # validations since the last improvement
    history: list = field(default_factory=list)  # one dict per validation (or eval_every steps), thinned
    history_every: int = 1  # history keeps the rows whose n is a multiple of this (see history.py)
    validations: int = 0  # history rows ever made: the next one's n
    window_sum: float = 0.0  # training losses since the last history row: their sum and count
    window_n: int = 0
    curve: list = field(default_factory=list)  # [step, mean training loss] points from step 1 (history.py)
    curve_every: int = 1  # steps per curve point
    curve_sum: float = 0.0  # the curve's unfinished interval: sum and count of its losses
    curve_n: int = 0
    corpus_sha256: str = ""
    corpus_chars: int = 0
    corpus_files: int | None = None  # files the corpus was read from (None: a checkpoint from before it was kept)
    val_chars: int | None = None  # characters the last validation scored (TrainConfig.val_chars bounds it)
    init_from: dict | None = None  # the checkpoint a fine-tuned run started from (finetune.Init.origin)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunState":
        """From a checkpoint's meta: unknown keys ignored, missing ones default (older files: a list `window` of
        losses becomes its sum and count); ValueError when a count is not a non-negative integer."""
        names = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in d.items() if k in names})
        if isinstance(d.get("window"), list) and "window_n" not in d:
            state.window_sum, state.window_n = float(sum(d["window"])), len(d["window"])
        if "validations" not in d and isinstance(state.history, list):
            state.validations = len(state.history)
        for name in ("step", "cursor", "epochs_done", "chars", "bad_evals", "window_n", "curve_n", "validations"):
            value = getattr(state, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"meta {name} must be a non-negative integer, got {value!r}")
        for name in ("curve_every", "history_every"):
            value = getattr(state, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"meta {name} must be a positive integer, got {value!r}")
        if not isinstance(state.history, list) or not isinstance(state.curve, list):
            raise ValueError("meta history and curve must be lists")
        return state


class Run:
    """A training run, fresh or resumed from a checkpoint's `resume/` state, on one of the ENGINES.

    The run owns the data, the RNG, the schedule, validation, the bounds and the checkpoint; the engine owns the
    weights, optimizer state and carried state and computes each step (charrnn/engine.py). Distributed (torch
    engine under torchrun): every rank runs this same loop in lockstep, rank 0 alone validates and checkpoints.
    """

    def __init__(self, mc: ModelConfig, tc: TrainConfig, corpus: Corpus, resume: Checkpoint | None = None,
                 engine: str = "numpy", device: str = "cpu", dist=None, init: Init | None = None):
        """`init` (finetune.Init, a new run only): the first weights and the vocabulary, else drawn from the seed
        and the corpus's. A vocabulary other than the corpus's (a fine-tuned run's) is reached through a lut."""
        self.corpus = corpus
        train_ids, self.val_ids = data.split(corpus.ids, tc.val_frac)
        self.tc = tc = replace(tc, batch=fit_batch(len(train_ids), tc.batch, tc.seq))
        self.mc, self.dtype = mc, np.dtype(tc.dtype)
        self.train = data.streams(train_ids, tc.batch)  # (B,S)
        self.per_epoch = data.batches_per_epoch(self.train, tc.seq)
        self.total_steps = self._total_steps()
        self.rng = np.random.default_rng(tc.seed)
        self.vocab = resume.vocab if resume is not None else init.vocab if init is not None else corpus.vocab
        self.lut = _lut(corpus, self.vocab)  # (V_corpus,) corpus id -> model id, or None when they are the same
        params = ({k: v.astype(self.dtype) for k, v in init.params.items()} if init is not None and resume is None
                  else model.init_params(mc, self.rng, self.dtype))
        self.engine = make_engine(engine, mc, tc, params, device, dist)
        self.best: dict | None = None  # best-validation weights
        self.meta = RunState(seed=tc.seed, corpus_sha256=corpus.sha256, corpus_chars=int(len(corpus)),
                             init_from=init.origin if init is not None else None, corpus_files=corpus.files)
        if resume is not None:
            self._restore(resume)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The latest weights (the NumPy engine's live arrays; a copy from the torch engine)."""
        return self.engine.weights()

    @property
    def state(self) -> list[tuple[np.ndarray, ...]]:
        """The carried hidden state, per layer (h,) or (h, c), each (B,H)."""
        return self.engine.carried_state()

    @property
    def is_main(self) -> bool:
        """Whether this process validates, prints and saves (rank 0, or the only process)."""
        return self.engine.rank == 0

    def _total_steps(self) -> int | None:
        tc, bounds = self.tc, []
        if tc.steps is not None:
            bounds.append(tc.steps)
        if tc.epochs is not None:
            bounds.append(math.ceil(tc.epochs * self.per_epoch))
        if not bounds and tc.max_time is None:
            bounds.append(DEFAULT_STEPS)
        return min(bounds) if bounds else None

    # --------------------------------------------------------------------------------------- checkpoint, resume

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
        if self.meta.best_val_loss is not None:
            self.best = {k: v.astype(self.dtype) for k, v in ckpt.params.items()}

    def _restore_state(self, r: dict, meta: dict) -> None:
        """Latest weights, optimizer moments, carried state, RNG and RunState from `resume/` arrays and meta."""
        params, state = self.engine.weights(), self.engine.carried_state()
        saved = {f"params/{k}": p for k, p in params.items()}
        saved |= {f"state/{layer}/{i}": a for layer, s in enumerate(state) for i, a in enumerate(s)}
        for key, a in saved.items():
            if r[key].shape != a.shape:
                raise ValueError(f"{key} has shape {r[key].shape}, expected {a.shape}")
        self.rng.bit_generator.state = meta.pop("rng")
        run_state = RunState.from_dict(meta)
        if run_state.cursor >= self.per_epoch:
            raise ValueError(f"cursor {run_state.cursor} is past the {self.per_epoch} batches of an epoch")
        self.engine.load_weights({k: r[f"params/{k}"] for k in params})
        self.engine.load_optimizer_state({k[len("optim/"):]: v for k, v in r.items() if k.startswith("optim/")})
        self.engine.load_carried_state([tuple(r[f"state/{layer}/{i}"] for i in range(len(s)))
                                        for layer, s in enumerate(state)])
        self.meta = run_state

    def checkpoint(self) -> Checkpoint:
        """Everything to sample from (best weights when validating, else latest) and to resume exactly, in
        engine-neutral layouts (see charrnn/engine.py)."""
        params = self.engine.weights()
        resume = {f"params/{k}": v for k, v in params.items()}
        resume |= {f"optim/{k}": v for k, v in self.engine.optimizer_state().items()}
        resume |= {f"state/{layer}/{i}": a for layer, s in enumerate(self.engine.carried_state())
                   for i, a in enumerate(s)}
        meta = dict(self.meta.to_dict(), rng=self.rng.bit_generator.state)
        return Checkpoint(model_config=self.mc, train_config=self.tc, vocab=self.vocab,
                          params=self.best if self.best is not None else params, resume=resume, meta=meta)

    # ------------------------------------------------------------------------------------------- the steps

    def _progress(self, elapsed: float) -> float:
        """How far through the run we are, for the learning-rate schedule."""
        if self.total_steps:
            return min(1.0, self.meta.step / self.total_steps)
        return min(1.0, elapsed / self.tc.max_time)

    def _stop_reason(self, elapsed: float) -> str | None:
        tc, step = self.tc, self.meta.step
        if tc.steps is not None and step >= tc.steps:
            return "steps"
        if tc.epochs is not None and step >= math.ceil(tc.epochs * self.per_epoch):
            return "epochs"
        if self.total_steps is not None and step >= self.total_steps:
            return "steps"
        if tc.max_time is not None and elapsed >= tc.max_time:
            return "time"
        return None

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, float]:
        """One optimizer step on batch x, y (B,T): (loss, gradient norm before clipping). Raises Diverged before
        the update when the loss or the norm shows it."""
        loss, norm = self.engine.compute(x, y, self.rng if self.mc.dropout > 0 else None)
        if not (math.isfinite(loss) and math.isfinite(norm)) or loss > LOSS_CEILING:
            raise Diverged(f"training diverged at step {self.meta.step + 1} (loss {loss:.4g}, gradient norm "
                           f"{norm:.4g}); lower --lr (now {self.tc.lr:g}) or clip gradients with --clip")
        self.engine.apply(lr)
        return loss, norm

    def advance(self, chars: int, loss: float) -> None:
        """Count the step and move the data cursor; at the end of the streams wrap around with a fresh state."""
        m = self.meta
        m.step += 1
        m.chars += chars
        m.cursor += 1
        if m.cursor == self.per_epoch:
            m.cursor, m.epochs_done = 0, m.epochs_done + 1
            self.engine.reset_state()
        history.add_loss(m, loss)

    def validate(self) -> float:
        """Validation loss (nats/char) of the latest weights; tracks the best weights and patience."""
        params, meta = self.engine.weights(), self.meta
        result = evaluate(params, self.mc, self.val_ids, self.tc.batch, max_chars=self.tc.val_chars, lut=self.lut,
                          score=self.engine.scorer())
        loss, meta.val_chars = result.nats_per_char, result.chars
        if not math.isfinite(loss) or loss > LOSS_CEILING:  # caught before the save that follows validation
            raise Diverged(f"training diverged at step {meta.step} (validation loss {loss:.4g}); lower --lr "
                           f"(now {self.tc.lr:g}) or clip gradients with --clip")
        if meta.best_val_loss is None or loss < meta.best_val_loss:
            meta.best_val_loss, meta.best_step, meta.bad_evals = loss, meta.step, 0
            if self.best is None:
                self.best = {k: v.copy() for k, v in params.items()}
            for k, v in params.items():
                np.copyto(self.best[k], v)
        else:
            meta.bad_evals += 1
        return loss

    def _validate_and_record(self, lr: float) -> tuple[float | None, bool]:
        """On a validation step: (validation loss or None without a validation split, whether patience ran out),
        agreed by every rank (rank 0 alone computes it), and one history entry."""
        val, patience_out = None, False
        if len(self.val_ids) >= 2:
            diverged = None
            if self.is_main:
                try:
                    val = self.validate()
                except Diverged as e:
                    diverged = e
            patience_out = self.tc.patience is not None and self.meta.bad_evals >= self.tc.patience
            (val,), (bad, patience_out) = self.engine.agree([math.nan if val is None else val],
                                                            [diverged is not None, patience_out])
            if bad:
                raise diverged or Diverged(f"training diverged at step {self.meta.step} (validation on rank 0)")
        self._record(val, lr)
        return val, patience_out

    def _record(self, val: float | None, lr: float) -> None:
        """One history entry: mean training loss since the last entry, validation loss, position, time."""
        m = self.meta
        history.add_row(m, {"step": m.step, "epoch": round(m.epochs_done + m.cursor / self.per_epoch, 4),
                            "chars": m.chars, "elapsed": round(m.elapsed, 3), "loss": history.window_mean(m),
                            "val_loss": val, "lr": lr})

    def steps(self, interrupted: Callable[[], bool] | None = None) -> Iterator[Step]:
        """Train until a bound is reached, yielding after every optimizer step. Raises Diverged.

        `interrupted()` (e.g. a Ctrl-C handler's flag) is asked after every step; when it (on any rank) says so,
        the step is yielded with stop "interrupt", unvalidated, and the run ends there."""
        tc, meta = self.tc, self.meta
        start, before, first_step, elapsed = time.perf_counter(), meta.elapsed, meta.step, 0.0
        if self._stop_reason(0.0):
            return
        while True:
            x, y = data.get_batch(self.train, meta.cursor, tc.seq)
            if self.lut is not None:  # a fine-tuned run's vocabulary holds more than the corpus's
                x, y = self.lut[x], self.lut[y]
            lr = learning_rate(tc.lr, tc.schedule, self._progress(elapsed), meta.step, tc.warmup)
            loss, norm = self.train_step(x, y, lr)
            self.advance(x.size, loss)
            asked = bool(interrupted is not None and interrupted())
            (elapsed,), (asked,) = self.engine.agree([time.perf_counter() - start], [asked])  # rank 0's clock
            meta.elapsed = before + elapsed
            stop, val, patience_out = "interrupt" if asked else self._stop_reason(elapsed), None, False
            if meta.step % tc.eval_every == 0 or (stop and stop != "interrupt"):  # as if not interrupted
                val, patience_out = self._validate_and_record(lr)
            stop = stop or ("patience" if patience_out else None)
            speed = (meta.step - first_step) * x.size / max(elapsed, 1e-9)
            yield Step(step=meta.step, epoch=meta.epochs_done + meta.cursor / self.per_epoch, loss=loss, lr=lr,
                       grad_norm=norm, chars_per_sec=speed, elapsed=elapsed, total_steps=self.total_steps,
                       val_loss=val, best_val_loss=meta.best_val_loss,
                       improved=val is not None and meta.best_step == meta.step, stop=stop)
            if stop:
                return
