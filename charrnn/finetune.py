"""Fine-tuning: a new run whose weights start from another checkpoint's (`charrnn train CORPUS --init-from SRC`).

Shapes: V source vocabulary, V' the run's vocabulary, K new characters, D embedding, H hidden, P probe characters.
The source gives the architecture (cell, layers, hidden, embed) and its weights to sample with (its best ones); the
new run brings its own training options. The vocabulary becomes the union of the source's and the corpus's
characters, sorted as `data.Vocab` sorts (by code point): every source character keeps its rows, moved to its new
index, and stays even when the corpus lacks it. A new character gets rows chosen so that, at step 0, the model
predicts what the source predicted on any text the source could read (see `grow`). Simplification chosen on
purpose: nothing of the source's training state is used (optimizer moments, carried state, schedule), so any
checkpoint can be a source, a packaged one included; what the run records about it is `Init.origin`, and a
`--resume` of the new run never reads the source again.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn import model
from charrnn.checkpoint import Checkpoint, CheckpointError, load
from charrnn.config import ModelConfig, SampleConfig
from charrnn.data import Vocab

BUNDLED_NAME = "bundled"  # --init-from bundled: the model `sample` uses when there is no other
BUNDLED = Path(__file__).resolve().parent / "pretrained" / "shakespeare.npz"
ARCHITECTURE = ("cell", "layers", "hidden", "embed")  # what the source fixes; dropout is the new run's (see plan)
NEW_CHAR_MASS = 1e-4  # at most this much probability in all for the new characters, on the probe (see grow)
PROBE_CHARS = 1000  # characters the source writes to measure its logits on
PROBE_SEED = 0
PROBE_LOGITS = 2**20  # logits one forward of the probe may hold (a vocabulary of 1.1 M: one position at a time)


class InitError(ValueError):
    """The source cannot start this run: unreadable, or an option conflicts with its architecture."""


@dataclass(frozen=True)
class Init:
    """The start of a fine-tuning run: its weights (under config.param_shapes of mc), vocabulary (V',) uint32
    and `origin`, the JSON the run's meta keeps as `init_from`."""

    mc: ModelConfig
    params: dict[str, np.ndarray]
    vocab: np.ndarray
    origin: dict
    added: int  # characters the corpus brought that the source lacked


def source_path(name: str) -> Path:
    """The checkpoint --init-from names: a path, or the word `bundled` for the bundled model."""
    return BUNDLED if name == BUNDLED_NAME else Path(name)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_source(name: str) -> tuple[Checkpoint, dict]:
    """The source checkpoint (read as hostile input, as every checkpoint is) and what a run records of it: the
    name as given, the SHA-256 of the file, its steps, best validation and corpus hash. Raises InitError."""
    path = source_path(name)
    try:
        ckpt = load(path)
        sha = file_sha256(path)
    except CheckpointError as e:
        raise InitError(f"--init-from: {e}") from e
    except OSError as e:
        raise InitError(f"--init-from: cannot read {path}: {e.strerror}") from e
    meta = ckpt.meta
    origin = {"path": name, "sha256": sha, "steps": meta.get("step"), "best_val_loss": meta.get("best_val_loss"),
              "corpus_sha256": meta.get("corpus_sha256")}
    return ckpt, origin


def model_config(source: ModelConfig, given: dict, vocab_size: int, name: str) -> ModelConfig:
    """The new run's model: the source's architecture (a given size that differs is an InitError naming both),
    the given dropout or else the source's, and the grown vocabulary."""
    for option in ARCHITECTURE:
        if option in given and given[option] != getattr(source, option):
            flag = "--" + option
            raise InitError(f"{flag} {given[option]} conflicts with --init-from {name} ({flag} "
                            f"{getattr(source, option)}): the architecture comes from the source; drop {flag}")
    return ModelConfig(cell=source.cell, vocab_size=vocab_size, embed=source.embed, hidden=source.hidden,
                       layers=source.layers, dropout=given.get("dropout", source.dropout))


def probe_log_partition(params: dict, mc: ModelConfig, vocab: np.ndarray) -> float:
    """The smallest log-sum-exp of the source's logits over PROBE_CHARS characters it writes itself (temperature
    1, a fixed seed): a text it knows, whatever corpus comes next."""
    from charrnn.sample import generate  # (sampling imports the model; kept out of this module's import time)

    cfg = SampleConfig(length=PROBE_CHARS)
    text = "".join(generate(params, mc, vocab, "", cfg, np.random.default_rng(PROBE_SEED)))
    ids = Vocab(vocab).encode(text)[None]  # (1,P)
    state, lowest = model.init_state(mc, 1, params["decoder.weight"].dtype), math.inf
    step = max(1, PROBE_LOGITS // len(vocab))  # positions per forward, so that memory is bounded for any V
    for at in range(0, ids.shape[1], step):
        logits, state, _ = model.forward(params, mc, ids[:, at:at + step], state, need_cache=False)  # (t,1,V)
        z = logits[:, 0].astype(np.float64)  # (t,V)
        top = z.max(axis=1)  # (t,)
        lowest = min(lowest, float((top + np.log(np.exp(z - top[:, None]).sum(axis=1))).min()))
    return lowest


def grow(params: dict, mc: ModelConfig, vocab: np.ndarray, corpus_vocab: np.ndarray, dtype) -> tuple[dict,
                                                                                                      np.ndarray]:
    """The source's weights over the union vocabulary (V',) uint32: (params as `dtype`, vocabulary).

    A source character's embedding and decoder rows move to its new index unchanged. A new character's:
    - embedding row: the mean of the source's rows (an input like those the recurrent weights know, where a
      fresh N(0, 1) draw would be a vector they have never seen; only text with the new character reaches it);
    - decoder row: weight zero and one bias c for all K, so its logit is c in every context, and
      c = log(NEW_CHAR_MASS / K) + (the smallest log-partition of the source on its probe text). The new
      characters then hold at most NEW_CHAR_MASS of the probability at every probe position, so the log-probability
      of a source character moves by at most -log(1 - NEW_CHAR_MASS) ~ 1e-4 there: the model predicts what the
      source did. Its ranking of the source's characters does not change anywhere (their logits are unchanged).
    A zero weight row still learns: its gradient is (p - onehot) h, which is large exactly where the character
    occurs, and an unlikely target's loss gradient does not vanish.
    """
    union = np.union1d(vocab, corpus_vocab).astype(np.uint32)  # (V',) sorted unique
    old = np.searchsorted(union, vocab)  # (V,) new index of every source character
    new = np.setdiff1d(np.arange(len(union)), old)  # (K,) indices of the corpus's new characters
    out = {k: v.astype(dtype) for k, v in params.items()}
    if not len(new):
        return out, union
    c = math.log(NEW_CHAR_MASS / len(new)) + probe_log_partition(params, mc, vocab)
    for name, fill in (("embedding.weight", params["embedding.weight"].mean(axis=0)), ("decoder.weight", 0.0),
                       ("decoder.bias", c)):
        grown = np.empty((len(union),) + params[name].shape[1:], dtype)  # (V',D), (V',H) or (V',)
        grown[old] = params[name]
        grown[new] = fill
        out[name] = grown
    return out, union


def start(name: str, given: dict, corpus_vocab: np.ndarray, dtype: str) -> Init:
    """The Init of a run fine-tuned from --init-from `name` on a corpus of vocabulary `corpus_vocab` (V_c,),
    computing in `dtype`, with the model options `given`. Raises InitError."""
    ckpt, origin = read_source(name)
    mc = model_config(ckpt.model_config, given, len(np.union1d(ckpt.vocab, corpus_vocab)), name)
    params, vocab = grow(ckpt.params, ckpt.model_config, ckpt.vocab, corpus_vocab, np.dtype(dtype))
    return Init(mc, params, vocab, origin, len(vocab) - len(ckpt.vocab))
