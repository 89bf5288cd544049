"""Features of a text, one number per character, that a unit of the model may follow. Shapes: L characters.

Every feature describes the text *after* reading character t, which is what the state h_t (computed from
characters 0..t) can know:
- `position_in_line`: characters read since the last newline (0 right after a newline, 1 after a line's first
  character, ...).
- `inside_quotes`: 1 from an opening quote mark up to (not including) its closing mark, else 0. Quote marks are
  `"`, `'` and a run of three of either kind (a triple quote, one mark), matched within a line: an opening mark
  is closed by the next mark of the same kind on its line (other marks in between are literal, so `"it's"` is
  one quotation); a mark with no partner later on its line opens nothing. Not a quote mark: a `'` between two
  letters or digits (an apostrophe: don't, o'er), a mark right after a backslash that is not itself escaped.
- `bracket_depth`: brackets `(`, `[`, `{` opened and not yet closed by `)`, `]`, `}` (of any kind; never below 0;
  brackets inside quotes count too).
- `indentation`: the leading blanks of the current line read so far, in columns: a space is 1, a tab moves to the
  next multiple of 8 (as Python's tokenizer and terminals do); 0 right after a newline, growing over the leading
  blanks, then the line's indentation until its end.
- `inside_word`: character t is a word character: a letter, digit or `_`, or an apostrophe between two letters.
- `word_start`: character t is a word character and the one before it is not.
- `uppercase`, `digit`, `whitespace`: character t is one (str.isupper, str.isdigit, str.isspace).
"""

from __future__ import annotations

import numpy as np

NAMES = ("position_in_line", "inside_quotes", "bracket_depth", "indentation", "inside_word", "word_start",
         "uppercase", "digit", "whitespace")
OPEN, CLOSE = "([{", ")]}"
TAB = 8


def features(text: str) -> dict[str, np.ndarray]:
    """{name: (L,) float64} for every name in NAMES (module docstring)."""
    L = len(text)
    word = np.array([_word_char(text, t) for t in range(L)], dtype=bool)  # (L,)
    previous = np.concatenate(([False], word[:-1])) if L else word  # (L,) character t-1 is a word character
    out = {
        "position_in_line": _position(text),
        "inside_quotes": _inside_quotes(text),
        "bracket_depth": _bracket_depth(text),
        "indentation": _indentation(text),
        "inside_word": word,
        "word_start": word & ~previous,
        "uppercase": [c.isupper() for c in text],
        "digit": [c.isdigit() for c in text],
        "whitespace": [c.isspace() for c in text],
    }
    return {name: np.asarray(out[name], dtype=np.float64).reshape(L) for name in NAMES}


def _alnum(text: str, t: int) -> bool:
    return 0 <= t < len(text) and text[t].isalnum()


def _apostrophe(text: str, t: int) -> bool:
    """text[t] is a ' between two letters or digits (don't, o'er): part of a word, not a quote mark."""
    return text[t] == "'" and _alnum(text, t - 1) and _alnum(text, t + 1)


def _word_char(text: str, t: int) -> bool:
    c = text[t]
    return c.isalnum() or c == "_" or _apostrophe(text, t)


def _position(text: str) -> np.ndarray:
    pos, col = np.empty(len(text), dtype=np.int64), 0  # (L,)
    for t, c in enumerate(text):
        col = 0 if c == "\n" else col + 1
        pos[t] = col
    return pos


def _bracket_depth(text: str) -> np.ndarray:
    depth, d = np.empty(len(text), dtype=np.int64), 0  # (L,)
    for t, c in enumerate(text):
        if c in OPEN:
            d += 1
        elif c in CLOSE:
            d = max(d - 1, 0)
        depth[t] = d
    return depth


def _indentation(text: str) -> np.ndarray:
    indent, width, leading = np.empty(len(text), dtype=np.int64), 0, True  # (L,)
    for t, c in enumerate(text):
        if c == "\n":
            width, leading = 0, True
        elif leading and c == " ":
            width += 1
        elif leading and c == "\t":
            width = (width // TAB + 1) * TAB
        else:
            leading = False
        indent[t] = width
    return indent


def _quote_marks(line: str) -> list[tuple[int, str]]:
    """(position, mark) of a line's quote marks (the line without its newline): a double or single quote, or three
    of one kind in a row as one mark; neither apostrophes nor escaped marks."""
    marks, backslashes, t = [], 0, 0
    while t < len(line):
        c = line[t]
        if c in "\"'" and backslashes % 2 == 0 and not _apostrophe(line, t):
            mark = c * 3 if line.startswith(c * 3, t) else c
            marks.append((t, mark))
            t += len(mark)
            backslashes = 0
            continue
        backslashes = backslashes + 1 if c == "\\" else 0
        t += 1
    return marks


def _inside_quotes(text: str) -> np.ndarray:
    inside = np.zeros(len(text), dtype=bool)  # (L,)
    start = 0
    for line in text.split("\n"):
        marks = _quote_marks(line)
        k = 0
        while k < len(marks):
            opening, mark = marks[k]
            closing = next((j for j in range(k + 1, len(marks)) if marks[j][1] == mark), None)
            if closing is None:  # no partner on this line: not a quote; the next mark may open one
                k += 1
                continue
            inside[start + opening : start + marks[closing][0]] = True
            k = closing + 1
        start += len(line) + 1
    return inside
