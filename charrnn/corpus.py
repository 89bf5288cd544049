"""A prepared corpus: its ids, vocabulary and content hash, the one thing training and evaluation read text through.

Shapes: L corpus length in characters, V vocabulary.
`Corpus.from_text` builds one from a string in memory (tests, short texts). Large files and stdin go through the
streaming preparation, which gives the same `Corpus` with `ids` memory-mapped from an on-disk cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from charrnn.data import Vocab


def text_sha256(text: str) -> str:
    """The SHA-256 of a text's UTF-8 bytes (the identity a checkpoint stores as `corpus_sha256`)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Corpus:
    """A corpus ready to train on: ids (L,) in the smallest unsigned dtype (possibly a read-only memory map),
    the vocabulary (V,) uint32 code points it was encoded with, and the SHA-256 of its UTF-8 text."""

    ids: np.ndarray  # (L,) uint8/16/32
    vocab: np.ndarray  # (V,) uint32, sorted, unique
    sha256: str

    @classmethod
    def from_text(cls, text: str) -> "Corpus":
        vocab = Vocab.from_text(text)
        return cls(vocab.encode(text), vocab.codes, text_sha256(text))

    def __len__(self) -> int:
        return len(self.ids)
