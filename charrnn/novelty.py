"""New, distinct samples: drop those equal to a line of a list (the training list) or to a sample already kept.

A sample's *item* is its text, the prefix and the continuation, without the line breaks at its end: with
`--stop '\\n'` a generated name is compared as the name itself, and the lines of the list are compared without
their line ends ("\\n" or "\\r\\n"). Another stop string stays part of the item (a list of sentences keeps its
full stops). The work is bounded: at most `max_tries(k)` samples are drawn for k new ones, so a model that only
repeats its list ends with what it found and a GaveUp.
"""

from __future__ import annotations

import codecs
import os
from typing import Callable, Iterator

TRIES_PER_SAMPLE, EXTRA_TRIES = 20, 100  # max_tries(k) = 20 k + 100 samples drawn for k new and distinct ones


class GaveUp(RuntimeError):
    """Fewer new samples than asked for within the bound; the message is one line."""


def max_tries(k: int) -> int:
    return TRIES_PER_SAMPLE * k + EXTRA_TRIES


def item(text: str) -> str:
    """What a sample is compared as: its text without the line breaks at its end."""
    return text.rstrip("\r\n")


def read_lines(path: str | os.PathLike) -> set[str]:
    """The lines of a UTF-8 file (a leading byte-order mark dropped), without their line ends, as a set (memory:
    about the file's size plus some 60 bytes a line). ValueError naming the byte offset of invalid UTF-8."""
    lines, offset = set(), 0
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    with open(path, "rb") as f:
        for raw in f:  # (split at b"\n": never inside a UTF-8 character)
            try:
                lines.add(decoder.decode(raw).rstrip("\r\n") if raw.endswith(b"\n") else decoder.decode(raw, True))
            except UnicodeDecodeError as e:
                at = offset + e.start + (3 if offset == 0 and raw.startswith(codecs.BOM_UTF8) else 0)
                raise ValueError(f"{os.fspath(path)} is not valid UTF-8 (byte {at}: {raw[e.start:e.start + 1]!r})"
                                 ) from None
            offset += len(raw)
    return lines


def novel(draw: Callable[[], str], k: int, prefix: str = "", exclude: set[str] = frozenset(),
          unique: bool = False, what: str = "the list") -> Iterator[str]:
    """Up to k continuations from `draw()` whose item (prefix + continuation) is not in `exclude` and, if
    `unique`, not the item of one yielded before; raises GaveUp after max_tries(k) draws with fewer found."""
    seen, found = set(), 0
    for _ in range(max_tries(k)):
        text = draw()
        key = item(prefix + text)
        if key in exclude or (unique and key in seen):
            continue
        if unique:
            seen.add(key)
        found += 1
        yield text
        if found == k:
            return
    why = " or ".join(w for w, on in ((f"a line of {what}", bool(exclude)), ("an earlier sample", unique)) if on)
    new = "new and distinct" if unique and exclude else "distinct" if unique else "new"
    raise GaveUp(f"gave up after {max_tries(k):,} samples: {found:,} of the {k:,} asked for were {new} (the others "
                 f"repeated {why}); try a higher --temperature or fewer --num-samples")
