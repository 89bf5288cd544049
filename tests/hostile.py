"""Hostile checkpoint files, for the fuzz suite (tests/test_fuzz.py) and the longer campaign
(tests/benchmarks/fuzz_campaign.py): a real checkpoint's members as raw .npy bytes, then damaged.

A file is described by `members` ({zip member name: bytes, or a callable giving byte chunks}), whether the
archive deflates them, and damage to the finished bytes (a truncation, flipped bytes). `write` makes the file.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus import Corpus

CORPUS = "the cat sat on the mat. the dog sat on the log.\n" * 8


def valid_checkpoint():
    """A real run's checkpoint (an LSTM 2x6 after 3 steps with validation), and the corpus it was trained on."""
    from charrnn.train import Run

    corpus = Corpus.from_text(CORPUS)
    mc = ModelConfig(cell="lstm", vocab_size=len(corpus.vocab), embed=4, hidden=6, layers=2)
    tc = TrainConfig(batch=2, seq=8, steps=3, eval_every=2, seed=1, val_frac=0.1)
    run = Run(mc, tc, corpus)
    for _ in run.steps():
        pass
    return run.checkpoint(), corpus


def npy(array) -> bytes:
    """An array as the bytes of a .npy file (no pickle)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def npy_header(descr, shape, fortran: bool = False) -> bytes:
    """Only the magic and header of a .npy file that claims `descr` and `shape` (any data must follow)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    return buf.getvalue()


def members_of(ckpt) -> dict[str, bytes]:
    """A checkpoint's zip members as raw bytes, under their names in the file."""
    from charrnn.checkpoint import save

    import tempfile
    import os

    with tempfile.TemporaryDirectory() as d:
        save(os.path.join(d, "m.npz"), ckpt)
        with zipfile.ZipFile(os.path.join(d, "m.npz")) as zf:
            return {info.filename: zf.read(info) for info in zf.infolist()}


def zeros(n_bytes: int, chunk: int = 2**20):
    """n_bytes of zeros in chunks: a member that deflates ~1000:1."""
    def chunks():
        for start in range(0, n_bytes, chunk):
            yield bytes(min(chunk, n_bytes - start))
    return chunks


def build(members: dict, deflate: bool = False) -> bytes:
    """The bytes of a zip archive holding `members`."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=True) as f:
                for chunk in (content() if callable(content) else [content]):
                    f.write(chunk)
    return buf.getvalue()


def damage(data: bytes, truncate: float | None = None, flips: tuple = ()) -> bytes:
    """`data` cut to a fraction of its length and/or with bytes at fractional positions xor-ed."""
    out = bytearray(data)
    for where, mask in flips:
        if out:
            out[int(where * (len(out) - 1))] ^= mask or 1
    if truncate is not None:
        out = out[: int(truncate * len(out))]
    return bytes(out)


def text(obj) -> bytes:
    """A JSON value as the .npy member a checkpoint stores text in (NaN and Infinity allowed, as json writes)."""
    return npy(np.array(json.dumps(obj)))


def nested(depth: int) -> bytes:
    """A JSON object nested `depth` levels deep, as a text member."""
    return npy(np.array('{"a": ' + "[" * depth + "]" * depth + "}"))
