"""Checkpoints: one versioned, pickle-free `.npz` per model, written atomically and validated on load.

Keys in the file (see README.md, "Checkpoints"):
    format_version        () int64
    model_config          () str, JSON of ModelConfig
    train_config          () str, JSON of TrainConfig
    meta                  () str, JSON: step, seed, best_val_loss, history, corpus hash, rng state, ...
    vocab                 (V,) uint32 code points, sorted, unique
    <param name>          PyTorch state_dict names and shapes, config.param_shapes; one float dtype for all:
                          float32 or float64, or (format 2) float16, which load() upcasts to float32
    resume/<key>          training state (any non-object arrays)
Simplification chosen on purpose: the file is the whole truth; nothing is pickled, and a file is hostile input:
only regular files are opened, every member's size is held to what the (bounded) configs give it before it is
read (reader.py), every field of the configs and meta is type- and range-checked (fields.py), and every failure
to read or validate becomes a one-line CheckpointError with a hint.
"""

from charrnn.checkpoint.bundle import for_shipping, package
from charrnn.checkpoint.files import check_writable, describe, discard_temp_files, load, save
from charrnn.checkpoint.record import (BAD_FILE_HINT, FORMAT_VERSION, MAX_CODE_POINT, RESERVED, RESUME_PREFIX,
                                       TEXT_KEYS, TRAIN_HINT, WEIGHT_DTYPES, Checkpoint, CheckpointError)

__all__ = ["FORMAT_VERSION", "RESUME_PREFIX", "TEXT_KEYS", "RESERVED", "MAX_CODE_POINT", "TRAIN_HINT",
           "BAD_FILE_HINT", "Checkpoint", "CheckpointError", "save", "load", "describe", "discard_temp_files",
           "check_writable", "WEIGHT_DTYPES", "for_shipping", "package"]
