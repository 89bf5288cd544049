"""Sampling and beam search: text from a trained model, character by character.

Shapes: N batch (1 when sampling, W beams in beam search), T time, H hidden, V vocabulary.
Everything runs through `model.forward`, the one forward path: the prefix in ONE call with T = len(prefix), then
one call with T = 1 per new character, given `model.for_stepping`'s fused weight per LSTM or GRU layer (one
matrix-vector product per layer and step instead of two; the RNN has none: see `model.for_stepping`). The
distribution of the next character is logits / temperature -> top-k -> top-p -> renormalise, computed in float64
and drawn with one `rng.random()` and a cumulative-sum search.

Choices made on purpose:
- Every prefix, the empty one included, is read as if it followed a line break: from the zero state "\\n" is fed
  first (it is not part of the output). A zero state alone is rare in training (it only starts each stream), and
  a model conditioned on it directly writes worse text. A vocabulary without "\\n" starts from the zero state;
  with an empty prefix the first character then comes from the decoder at a zero hidden state (logits =
  decoder.bias, about the unigram distribution).
- A stop string counts only when the continuation itself has generated it (it does not straddle the prefix).
- Beam search uses the raw model probabilities (no temperature, top-k or top-p) and no randomness.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from charrnn import model
from charrnn.config import ModelConfig, SampleConfig
from charrnn.data import Vocab


class UnknownCharacters(ValueError):
    """Text holds characters that the model's vocabulary lacks; `chars` lists them in order of appearance."""

    def __init__(self, what: str, chars: list[str]):
        self.chars = chars
        super().__init__(f"{what} has characters the model's vocabulary lacks: {', '.join(map(repr, chars))}")


def as_vocab(vocab) -> Vocab:
    """A Vocab from a Vocab or from the checkpoint's (V,) uint32 code points."""
    return vocab if isinstance(vocab, Vocab) else Vocab(np.asarray(vocab, dtype=np.uint32))


def check_config(cfg: SampleConfig) -> None:
    """ValueError naming the first invalid field of `cfg` (the CLI reports these as usage errors first)."""
    problems = [
        (cfg.length < 0, f"length must be >= 0, got {cfg.length}"),
        (not cfg.temperature >= 0, f"temperature must be >= 0, got {cfg.temperature}"),
        (cfg.top_k < 0, f"top_k must be >= 0, got {cfg.top_k}"),
        (not 0 < cfg.top_p <= 1, f"top_p must be in (0, 1], got {cfg.top_p}"),
        (cfg.num_samples < 1, f"num_samples must be >= 1, got {cfg.num_samples}"),
        (cfg.beam < 0, f"beam must be >= 0, got {cfg.beam}"),
    ]
    for bad, message in problems:
        if bad:
            raise ValueError(message)


# ------------------------------------------------------------------------------------------- the distribution


def filter_probs(logits, temperature: float, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """logits (V,) -> probabilities (V,) float64: / temperature -> top-k -> top-p -> renormalise.

    temperature 0 is exact argmax (one-hot). top_k K > 0 keeps the K largest; top_p P < 1 then keeps the smallest
    set of most likely tokens whose (renormalised) mass is >= P, at least one. Ties go to the lowest id.
    """
    raw = np.asarray(logits, dtype=np.float64).ravel()  # (V,)
    V = raw.size
    if temperature == 0:
        probs = np.zeros(V)  # (V,)
        probs[np.argmax(raw)] = 1.0  # argmax returns the lowest id among ties
        return probs
    z = raw - raw.max()  # (V,) every value <= 0 before the division: a tiny temperature cannot overflow to +inf
    with np.errstate(over="ignore", under="ignore"):
        z /= temperature
        probs = np.exp(z)  # (V,) unnormalised, the largest is exactly 1
    if 0 < top_k < V or top_p < 1.0:
        order = np.argsort(-raw, kind="stable")  # (V,) most likely first, ties by lowest id (raw: no rounding)
        keep = min(top_k, V) if top_k > 0 else V
        if top_p < 1.0:
            mass = np.cumsum(probs[order[:keep]])  # (keep,) unnormalised mass of the `keep` most likely
            keep = min(int(np.searchsorted(mass, top_p * mass[-1])) + 1, keep)  # first prefix with mass >= P
        probs[order[keep:]] = 0.0
    probs /= probs.sum()
    return probs


def draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    """One id drawn from probs (V,) with a single rng.random() and a cumulative-sum search."""
    cum = np.cumsum(probs)  # (V,)
    k = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))  # never lands on a zero-probability id
    return min(k, len(cum) - 1)


def next_id(logits: np.ndarray, cfg: SampleConfig, rng: np.random.Generator) -> int:
    """The next id from logits (V,); temperature 0 is argmax and draws nothing from rng."""
    if cfg.temperature == 0:
        return int(np.argmax(logits))
    if cfg.top_p >= 1.0 and not 0 < cfg.top_k < logits.shape[-1]:  # no filtering: the common case
        return _draw_unfiltered(logits, cfg.temperature, rng)
    return draw(filter_probs(logits, cfg.temperature, cfg.top_k, cfg.top_p), rng)


def _draw_unfiltered(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """draw(filter_probs(logits, temperature), rng) for temperature > 0, bit for bit, in about half the time.

    The same float64 operations in the same order on one buffer: shift by the max, / temperature, exp, normalise,
    cumulative sum, search for one rng.random() scaled by the total. The speed comes from calling the ufunc
    methods directly (np.add.accumulate is np.cumsum's loop without its dispatch; ndarray.searchsorted skips part
    of np.searchsorted's), from working in place, and from entering np.errstate (itself not free) only where a
    division can overflow: at temperature 1 there is no division, and exp of values <= 0 can only underflow.
    The figures: BENCHMARKS.md, "What each change bought", the unfiltered-draw row.
    """
    z = np.array(logits, dtype=np.float64).ravel()  # (V,) a float64 copy of the logits
    z -= np.maximum.reduce(z)  # every value <= 0
    if temperature != 1:  # x / 1 == x exactly: skipping the division changes no bit
        with np.errstate(over="ignore", under="ignore"):
            z /= temperature
            np.exp(z, out=z)
    else:
        np.exp(z, out=z)  # (V,) unnormalised probabilities, the largest exactly 1
    z /= np.add.reduce(z)  # the same pairwise sum as probs.sum() in filter_probs
    np.add.accumulate(z, out=z)  # (V,) cumulative sum, as np.cumsum in draw
    k = int(z.searchsorted(rng.random() * z[-1], side="right"))
    return min(k, len(z) - 1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """logits (..., V) -> log-probabilities (..., V) in float64."""
    z = logits.astype(np.float64)  # (...,V)
    z -= z.max(axis=-1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return z


# ---------------------------------------------------------------------------------------------- conditioning


def condition(params: dict, mc: ModelConfig, vocab: Vocab, prefix: str) -> tuple[np.ndarray, list]:
    """Run the prefix through the model in one forward pass from the zero state.

    Returns the logits (V,) of the first new character and the state (batch 1). "\\n" is fed before the prefix
    when the vocabulary has it; otherwise an empty prefix gives logits = decoder.bias with the zero state.
    Raises UnknownCharacters (a ValueError) naming prefix characters the vocabulary lacks.
    """
    state = model.init_state(mc, 1, params["embedding.weight"].dtype)
    missing = vocab.missing(prefix)
    if missing:
        raise UnknownCharacters("the prefix", missing)
    if vocab.missing("\n"):
        if not prefix:
            return params["decoder.bias"], state
    else:  # a zero state is rare in training (only where a stream starts): start as if after a line break
        prefix = "\n" + prefix
    ids = vocab.encode(prefix)[None]  # (1,T)
    logits, state, _ = model.forward(params, mc, ids, state, need_cache=False)  # (T,1,V)
    return logits[-1, 0], state


def generate(params: dict, mc: ModelConfig, vocab, prefix: str, cfg: SampleConfig,
             rng: np.random.Generator) -> Iterator[str]:
    """The continuation of `prefix` (not the prefix itself), one character at a time, as soon as each exists.

    Stops after cfg.length characters or once cfg.stop has been generated (included). With cfg.beam > 0 it is
    beam search (see `beam_search`), which yields its result only when the search ends. `vocab` is a Vocab or
    the (V,) uint32 code points. Bad config or unknown prefix characters raise ValueError here, at the call.
    """
    check_config(cfg)
    vocab = as_vocab(vocab)
    if cfg.beam > 0:
        condition(params, mc, vocab, prefix)  # validates the prefix now; the search runs on first next()
        return iter(_beam_chars(params, mc, vocab, prefix, cfg))
    logits, state = condition(params, mc, vocab, prefix)
    return _sample_chars(params, mc, vocab, logits, state, cfg, rng)


def _beam_chars(params, mc, vocab, prefix, cfg) -> Iterator[str]:
    text, _ = beam_search(params, mc, vocab, prefix, cfg.beam, cfg.length, cfg.stop)
    yield from text


def _sample_chars(params, mc, vocab, logits, state, cfg, rng) -> Iterator[str]:
    """Draw, yield, feed back: one forward with T = 1 per character after the first, none after the last."""
    stop, recent = cfg.stop or "", ""
    chars = [chr(c) for c in vocab.codes.tolist()]  # (V,) id -> character, built once
    params = model.for_stepping(params, mc)  # fused per-layer weights for the T = 1 steps, made once
    x = np.zeros((1, 1), dtype=np.int64)  # (N=1,T=1) the character just drawn
    for i in range(cfg.length):
        k = next_id(logits, cfg, rng)
        ch = chars[k]
        yield ch
        if stop:
            recent = (recent + ch)[-len(stop):]
            if recent == stop:
                return
        if i + 1 < cfg.length:
            x[0, 0] = k
            out, state, _ = model.forward(params, mc, x, state, need_cache=False)  # (1,1,V) no backward follows
            logits = out[0, 0]


# ----------------------------------------------------------------------------------------------- beam search


def beam_search(params: dict, mc: ModelConfig, vocab, prefix: str, width: int, length: int,
                stop: str | None = None) -> tuple[str, float]:
    """The most likely continuation of `prefix` that a beam of `width` finds -> (text, total log-probability).

    Deterministic, raw model probabilities in float64. Each step is ONE model.forward over all live beams
    (N <= W); of all their W×V extensions the best W survive (ties: lowest beam, then lowest id). With `stop`, a
    beam that has generated it is finished and set aside; the search ends at `length` characters or when no live
    beam can beat the best finished one (log-probabilities only decrease). Result: the highest total
    log-probability among finished beams and full-length beams (a tie goes to the finished one).
    """
    vocab = as_vocab(vocab)
    logits, state = condition(params, mc, vocab, prefix)
    logp = log_softmax(np.asarray(logits)[None])  # (N,V) next-character log-probabilities of each live beam
    V = logp.shape[1]
    stop_ids = vocab.encode(stop) if stop and not vocab.missing(stop) else None  # None: it can never be generated
    scores, seqs = np.zeros(1), np.zeros((1, 0), dtype=np.int64)  # (N,) totals, (N,t) ids of the live beams
    best = (-np.inf, np.zeros(0, dtype=np.int64))  # the best finished beam: (score, ids)
    params = model.for_stepping(params, mc)  # fused per-layer weights for the steps, made once
    for t in range(length):
        total = (scores[:, None] + logp).ravel()  # (N·V,) the score of every extension
        order = np.argsort(-total, kind="stable")[:width]  # (N',) the best, ties by lowest flat index
        parent, token = np.divmod(order, V)  # (N',), (N',)
        scores, seqs = total[order], np.concatenate([seqs[parent], token[:, None]], axis=1)  # (N',), (N',t+1)
        state = [tuple(s[parent] for s in layer) for layer in state]  # each (N',H), reordered to the parents
        if stop_ids is not None and t + 1 >= len(stop_ids):
            done = np.all(seqs[:, -len(stop_ids):] == stop_ids, axis=1)  # (N',) beams that just generated stop
            if done.any():
                i = int(np.flatnonzero(done)[0])  # scores are sorted: the first finished is the best
                if scores[i] > best[0]:
                    best = (float(scores[i]), seqs[i])
                live = ~done
                scores, seqs = scores[live], seqs[live]
                state = [tuple(s[live] for s in layer) for layer in state]
        if len(scores) == 0 or scores[0] <= best[0] or t + 1 == length:
            break
        out, state, _ = model.forward(params, mc, seqs[:, -1:], state, need_cache=False)  # (1,N,V)
        logp = log_softmax(out[0])  # (N,V)
    full = len(scores) > 0 and seqs.shape[1] == length and scores[0] > best[0]
    score, ids = (float(scores[0]), seqs[0]) if full else best
    return vocab.decode(ids), score
