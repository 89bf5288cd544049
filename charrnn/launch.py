"""What one `charrnn train` invocation trains: the resume policy.

From the options given (a dict of the config fields the user set), the corpus and the checkpoint path: a new run
(ModelConfig and TrainConfig from the options and the defaults, a seed drawn when none was given; with --init-from,
the model and its first weights from another checkpoint, charrnn/finetune.py) or the run stored
in --out, continued (options not given come from the checkpoint; a given option that would break the run is a
conflict). Problems are `LaunchError`s with a one-line message, which the CLI shows as they are (exit 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn import data, finetune
from charrnn.checkpoint import Checkpoint, CheckpointError, load
from charrnn.config import BUDGET_SCHEDULE, MAX_PARAMS, MODEL_OPTIONS, ModelConfig, TrainConfig, param_count
from charrnn.corpus import Corpus
from charrnn.finetune import Init
from charrnn.train import fit_batch

# Options that cannot change on --resume without breaking the run; the rest (lr, bounds, ...) may. (val_chars:
# best-checkpoint selection compares validation losses, so every validation of a run scores the same characters.)
FIXED_ON_RESUME = ("batch", "seq", "val_frac", "val_chars", "dtype", "optimizer", "momentum", "weight_decay",
                   "seed")


INIT_AND_RESUME = ("--init-from starts a new run from another checkpoint's weights and --resume continues the run "
                   "in --out with its own; give only one of them")


class LaunchError(ValueError):
    """The options, the corpus and --out do not make a run (nothing to resume, another corpus, a conflict)."""


@dataclass(frozen=True)
class Plan:
    mc: ModelConfig
    tc: TrainConfig
    resume: Checkpoint | None  # the run to continue, or None for a new one
    seed_drawn: bool = False  # no --seed was given: tc.seed was drawn here (the CLI says which)
    init: Init | None = None  # a new run's start from another checkpoint's weights (--init-from), or None


def check_out(out: Path, force: bool, resume: bool, init_from: str | None = None) -> None:
    """--out must be a file path, and an existing file is never overwritten unless --resume or --force says so;
    --resume continues a run, so it takes neither --force nor --init-from."""
    if force and resume:
        raise LaunchError("--force starts a new run and --resume continues one; give only one of them")
    if init_from is not None and resume:
        raise LaunchError(INIT_AND_RESUME)
    if out.is_dir():
        raise LaunchError(f"--out {out} is a directory; give a file path such as {out / 'model.npz'}")
    if out.exists() and not out.is_file():
        raise LaunchError(f"--out {out} is not a regular file; give a file path such as checkpoints/model.npz")
    if out.exists() and not (force or resume):
        raise LaunchError(f"{out} already exists; it holds a checkpoint; say --resume to continue that run or "
                          f"--force to start a new one over it")


def plan(given: dict, corpus: Corpus, out: Path, resume: bool, init_from: str | None = None) -> Plan:
    """The run to train: a new one from `given` (its weights from the checkpoint `init_from` names, when given:
    see charrnn/finetune.py), or (resume) the one in `out` with `given` merged in."""
    model_given = {k: v for k, v in given.items() if k in MODEL_OPTIONS}
    train_given = {k: v for k, v in given.items() if k not in MODEL_OPTIONS}
    if resume and init_from is not None:
        raise LaunchError(INIT_AND_RESUME)
    if not resume:
        seed, drawn = train_given.pop("seed", None), False
        if seed is None:
            seed, drawn = int(np.random.SeedSequence().entropy % 2**32), True
        if "schedule" not in train_given and "max_time" in train_given and not {"steps", "epochs"} & set(given):
            train_given["schedule"] = BUDGET_SCHEDULE  # decay over the time budget
        tc, init = TrainConfig(**train_given, seed=seed), None
        mc = ModelConfig(**model_given, vocab_size=len(corpus.vocab))
        if init_from is not None:
            try:
                init = finetune.start(init_from, model_given, corpus.vocab, tc.dtype)
            except finetune.InitError as e:
                raise LaunchError(str(e)) from e
            mc = init.mc
        if param_count(mc) > MAX_PARAMS:
            raise LaunchError(f"a model of {param_count(mc):,} parameters is more than the {MAX_PARAMS:,} charrnn "
                              f"allows; give a smaller --hidden, --layers or --embed")
        return Plan(mc, tc, None, drawn, init)
    if not out.exists():
        raise LaunchError(f"nothing to resume: {out} does not exist (drop --resume to start a new run)")
    try:
        ckpt = load(out)
    except CheckpointError as e:
        raise LaunchError(str(e)) from e
    if ckpt.meta.get("corpus_sha256") != corpus.sha256:
        why = _difference(ckpt.meta, corpus)
        raise LaunchError(f"this corpus is not the one the run in {out} was trained on ({why}); resume with the same "
                          f"corpus, or start a new run with --force")
    stored = dataclasses.asdict(ckpt.model_config) | dataclasses.asdict(ckpt.train_config)
    for name, value in given.items():
        if (name in MODEL_OPTIONS or name in FIXED_ON_RESUME) and value != stored[name]:
            if name == "batch" and fitted_batch(value, len(corpus), ckpt.train_config) == stored[name]:
                continue  # the same command line again: a short corpus shrank --batch the same way
            flag = "--" + name.replace("_", "-")
            raise LaunchError(f"{flag} {value} conflicts with the run in {out} ({flag} {stored[name]}); drop it to "
                              f"resume, or start a new run with --force")
    train_given = {k: v for k, v in train_given.items() if k not in FIXED_ON_RESUME}
    return Plan(ckpt.model_config, dataclasses.replace(ckpt.train_config, **train_given), ckpt)


def _difference(meta: dict, corpus: Corpus) -> str:
    """How a corpus differs from the one a run was trained on, as far as the checkpoint tells."""
    files, chars = meta.get("corpus_files"), meta.get("corpus_chars")
    if files is not None and files != corpus.files:
        return (f"it is read from {corpus.files:,} file(s), the run's from {files:,}: a file was added or removed, "
                f"or other paths or --include were given")
    if chars is not None and chars != len(corpus):
        return f"it has {len(corpus):,} characters, the run's had {chars:,}; its SHA-256 differs"
    return "its SHA-256 differs: a file changed, or the files come in another order or encoding"


def fitted_batch(batch: int, n_chars: int, tc: TrainConfig) -> int:
    """The batch a run of `tc` on a corpus of n_chars characters uses for --batch `batch` (as train.Run does)."""
    n_train = n_chars - len(data.split(range(n_chars), tc.val_frac)[1])
    return fit_batch(n_train, batch, tc.seq)


def validation_notice(tc: TrainConfig, n_chars: int) -> str | None:
    """A notice when --val-frac holds out too little to validate (the run trains without validation); LaunchError
    when --patience would then never stop the run."""
    if tc.patience is not None and tc.val_frac == 0:
        raise LaunchError("--patience counts validations, but --val-frac 0 turns validation off; give --val-frac > 0")
    n_val = len(data.split(range(n_chars), tc.val_frac)[1])
    if tc.val_frac > 0 and n_val < 2:
        too_few = (f"--val-frac {tc.val_frac} holds out {n_val} character(s) of this corpus, fewer than the 2 "
                   f"validation needs")
        if tc.patience is not None:
            raise LaunchError(f"{too_few}, so --patience could never stop the run; give a larger --val-frac")
        return f"{too_few}: training without validation (give a larger --val-frac, or --val-frac 0)"
    return None
