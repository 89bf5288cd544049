"""Configuration: every default lives here, once.

Frozen dataclasses for the model, training and sampling, plus the names of the cells, optimizers, schedules
and dtypes. This module imports no numpy, so `charrnn --help` stays fast; the CLI reads its defaults here and
the checkpoint stores `ModelConfig` and `TrainConfig` as JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # G: gate blocks packed in weight_ih / weight_hh; cells.CELLS follows it
CELL_NAMES = tuple(GATES)
CELL_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # one recurrent layer's parameters (PyTorch's names)
OPTIMIZER_NAMES = ("adam", "rmsprop", "adagrad", "sgd")
SCHEDULE_NAMES = ("constant", "cosine", "step")
DTYPE_NAMES = ("float32", "float64")

# Documented maxima. The CLI rejects larger option values at parse time (exit 2) and loading rejects a checkpoint
# whose configuration exceeds them, so a small file or a typo cannot ask for unbounded memory or time.
MAX_LAYERS = 64
MAX_HIDDEN = 16384
MAX_EMBED = 16384
MAX_VOCAB = 0x110000  # every Unicode code point
MAX_PARAMS = 2**30  # weights in a model (4 GiB as float32): bounds layers x hidden x ... together
MAX_BATCH = 65536  # streams (train --batch, eval --batch)
MAX_SEQ = 65536  # steps of truncated BPTT
MAX_BEAM = 1024  # beam width
MAX_BEAM_CHARS = 2**26  # beam width x length: the live beams' histories stay below half a GiB
MAX_LENGTH = 2**40  # sample --length, --num-samples, train --steps, --warmup, --eval-every, --patience
MAX_THREADS = 1024
MAX_SEED = 2**64 - 1
# charrnn inspect: the first INSPECT_CHARS characters by default; --chars at most MAX_INSPECT_CHARS (one stream at
# batch 1: about ten times the default's time, and its --html page stays within its byte budget)
INSPECT_CHARS = 20_000
MAX_INSPECT_CHARS = 200_000

DEFAULT_CHECKPOINT = "checkpoints/model.npz"
DEFAULT_BATCH = 32  # streams `charrnn eval` scores at once
ENGINE_NAMES = ("numpy", "torch")  # who computes the training steps (charrnn/engine.py); not stored in a run
DEFAULT_ENGINE = "numpy"
DEFAULT_DEVICE = "cpu"  # where the torch engine computes: cpu, cuda, cuda:N, mps
# The schedule of a new run bounded by --max-time alone when no --schedule is given: it decays over the budget. A
# run bounded by --steps or --epochs keeps TrainConfig.schedule, so that k steps and a --resume to N equal N steps.
BUDGET_SCHEDULE = "cosine"
DEFAULT_STEPS = 4000  # with none of --steps, --epochs, --max-time (training never runs forever): at the default
# batch of 16 as many characters as the 2000 steps at batch 32 used to be


@dataclass(frozen=True)
class ModelConfig:
    """Embedding (embed) -> `layers` stacked `cell`s of size `hidden` -> linear decoder over `vocab_size`."""

    cell: str = "lstm"
    vocab_size: int = 0
    embed: int = 64
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0


# The options that shape the model: every ModelConfig field but the vocabulary size, which the corpus gives.
MODEL_OPTIONS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name != "vocab_size")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `steps`/`epochs`/`max_time` bound the run (whichever comes first); None = not set."""

    # batch, lr, eval_every and the schedule a time budget gets (BUDGET_SCHEDULE) are tuned for the best
    # validation a fixed CPU budget buys (an LSTM 2x256 on tinyshakespeare in 5 minutes): more, smaller steps, a
    # learning rate that decays to the end of the budget, little of it spent validating. See BENCHMARKS.md,
    # "Defaults for a time budget".
    batch: int = 16
    seq: int = 64
    lr: float = 3e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    clip: float = 5.0
    schedule: str = "constant"  # BUDGET_SCHEDULE when --max-time alone bounds a new run (launch.plan)
    warmup: int = 0
    steps: int | None = None
    epochs: float | None = None
    max_time: float | None = None  # seconds
    val_frac: float = 0.05
    # characters a periodic validation scores at most: a fixed part of a large held-out split, the same every
    # time (the head of each of the B streams); a smaller split is scored whole. 0 = always all of it. Sized
    # so one validation of an LSTM 2x256 stays under ~10 s on the 2-core machine (BENCHMARKS.md, "Large corpora")
    val_chars: int = 250_000
    eval_every: int = 500
    patience: int | None = None
    checkpoint_every: float | None = 600.0  # seconds between periodic saves
    seed: int | None = None
    dtype: str = "float32"
    threads: int | None = None


@dataclass(frozen=True)
class SampleConfig:
    """How to sample: logits / temperature -> top-k -> top-p -> renormalise -> draw."""

    length: int = 500
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = None
    stop: str | None = None
    num_samples: int = 1
    sep: str = "\n"
    beam: int = 0  # 0 = no beam search


def to_dict(config) -> dict:
    """A config as a JSON-ready dict."""
    return dataclasses.asdict(config)


def from_dict(cls, data: dict):
    """Build `cls` from a dict, ignoring unknown keys (older/newer checkpoints) and keeping defaults for missing."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def layer_shapes(G: int, D: int, H: int) -> dict[str, tuple[int, ...]]:
    """One recurrent layer's parameters (CELL_PARAMS) and shapes: G gate blocks of H rows each, input size D."""
    return dict(zip(CELL_PARAMS, ((G * H, D), (G * H, H), (G * H,), (G * H,))))


def param_shapes(mc: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in order, under PyTorch's `state_dict` names and layouts (see README.md,
    "Checkpoints"). The one list of the model's parameters: initialisation and checkpoint validation follow it."""
    G, H, V = GATES[mc.cell], mc.hidden, mc.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (V, mc.embed)}
    for k in range(mc.layers):
        layer = layer_shapes(G, mc.embed if k == 0 else H, H)
        shapes.update({f"rnn.{name}_l{k}": shape for name, shape in layer.items()})
    shapes["decoder.weight"] = (V, H)
    shapes["decoder.bias"] = (V,)
    return shapes


def param_count(mc: ModelConfig) -> int:
    """How many weights `param_shapes(mc)` holds, without building anything."""
    G, H, D, V, L = GATES[mc.cell], mc.hidden, mc.embed, mc.vocab_size, mc.layers
    return V * D + G * H * (D + H + 2) + (L - 1) * G * H * (2 * H + 2) + V * H + V
