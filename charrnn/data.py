"""Text as integer ids: the vocabulary, encoding, the train/validation split and contiguous batch streams.

Shapes: L corpus length, B streams, T steps, V vocabulary.
The vocabulary is the sorted set of Unicode code points (not bytes) of the corpus, kept as uint32 so that U+0000
survives a checkpoint. Ids use the smallest unsigned dtype that fits V.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def code_points(text: str) -> np.ndarray:
    """The code points of `text`, (L,) uint32, without a Python loop (lone surrogates pass through)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint32)


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds every id of a vocabulary of this size."""
    return np.dtype(np.uint8 if vocab_size <= 2**8 else np.uint16 if vocab_size <= 2**16 else np.uint32)


@dataclass(frozen=True)
class Vocab:
    """Sorted unique code points; id k stands for chr(codes[k])."""

    codes: np.ndarray  # (V,) uint32, sorted, unique

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls(np.unique(code_points(text)))

    def __len__(self) -> int:
        return len(self.codes)

    def missing(self, text: str) -> list[str]:
        """The distinct characters of `text` that are not in the vocabulary, in order of first appearance."""
        cps = code_points(text)
        pos = np.minimum(np.searchsorted(self.codes, cps), len(self.codes) - 1)
        bad = cps[self.codes[pos] != cps]
        return list(dict.fromkeys(chr(c) for c in bad.tolist()))

    def encode(self, text: str) -> np.ndarray:
        """text -> ids (L,); raises KeyError naming the characters the vocabulary lacks."""
        cps = code_points(text)
        ids = np.searchsorted(self.codes, cps)  # (L,) position of each code point in the sorted vocabulary
        if len(cps) and (ids.max() >= len(self.codes) or np.any(self.codes[ids] != cps)):
            raise KeyError("".join(self.missing(text)))
        return ids.astype(id_dtype(len(self.codes)))

    def decode(self, ids) -> str:
        """ids (any shape, flattened) -> text."""
        cps = self.codes[np.asarray(ids).ravel()]
        return cps.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


def split(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """The first 1 - val_frac of the ids for training, the last val_frac for validation (views)."""
    n_val = int(round(len(ids) * val_frac)) if val_frac > 0 else 0
    n_val = min(n_val, len(ids))
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


def streams(ids: np.ndarray, batch: int) -> np.ndarray:
    """Cut ids (L,) into `batch` contiguous streams (B, L // B); the tail that does not fit is dropped."""
    per = len(ids) // batch
    return ids[: per * batch].reshape(batch, per)


def batches_per_epoch(data: np.ndarray, seq: int) -> int:
    """How many (x, y) batches of T steps one pass over streams (B, S) gives; y needs one character more."""
    return (data.shape[1] - 1) // seq


def get_batch(data: np.ndarray, k: int, seq: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch k: x (B,T) and targets y (B,T); batch k+1 continues every stream where batch k stopped."""
    start = k * seq
    return data[:, start : start + seq], data[:, start + 1 : start + seq + 1]
