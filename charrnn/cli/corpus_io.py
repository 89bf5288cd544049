"""Corpora for the commands: preparing one with progress on stderr, the cache options, unknown characters.

`load_corpus` runs the core's streaming preparation (charrnn.corpus.prepare) and shows it: a tqdm bar (bytes,
MB/s) on a terminal, a plain line every few seconds otherwise, nothing for a small corpus (prepared in memory)
or under --quiet. `--unknown error|skip` decides what `eval` and `sample --prefix` do with characters the model's
vocabulary lacks.
"""

from __future__ import annotations

import time
from enum import Enum

import typer

from charrnn.cli import progress as shown
from charrnn.cli.common import fail, say

Unknown = Enum("Unknown", {"error": "error", "skip": "skip"}, type=str)
UNKNOWN_HELP = ("What to do with characters the model's vocabulary lacks: error (name them and exit 1) or skip "
                "(leave them out and say how many on stderr).")
CACHE_HELP = ("Where large corpora are cached as ids, ready to memory-map (default: $CHARRNN_CACHE_DIR, else "
              "charrnn in $XDG_CACHE_HOME, else ~/.cache/charrnn). Safe to delete.")
PHASES = {"spooling": "spooling", "reading": "reading", "encoding": "encoding", "checking": "checking cache of"}


def unknown_option():
    return typer.Option(Unknown.error.value, "--unknown", help=UNKNOWN_HELP)


def cache_dir_option():
    return typer.Option(None, "--cache-dir", metavar="DIR", help=CACHE_HELP, show_default=False)


def name_chars(chars: list[str], most: int = 20) -> str:
    """Characters as themselves, space-separated; invisible ones (controls, spaces) as U+XXXX."""
    shown_ = [c if c.isprintable() and not c.isspace() else f"U+{ord(c):04X}" for c in chars[:most]]
    return " ".join(shown_) + (f" and {len(chars) - most} more" if len(chars) > most else "")


def unknown_message(chars: list[str], count: int, what: str) -> str:
    """`what` has N character(s) the vocabulary lacks (M occurrences): é ö ✓."""
    times = f", {count:,} times in all" if count > len(chars) else ""
    return f"{what} has {len(chars)} character(s) the model's vocabulary lacks{times}: {name_chars(chars)}"


class _Shown:
    """The core's progress callback, shown on stderr: a bar per phase on a terminal, else a line every few s."""

    def __init__(self, name: str):
        self.name, self.phase, self.bar, self.last = name, None, None, time.monotonic()

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if phase != self.phase:
            self.close()
            self.phase = phase
            self.bar = shown.bar(total, f"{PHASES.get(phase, phase)} {self.name}", unit="B", unit_divisor=1024)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        elif time.monotonic() - self.last >= shown.PLAIN_EVERY:
            self.last = time.monotonic()
            of = f" of {total / 2**20:,.0f}" if total else ""
            say(f"{PHASES.get(phase, phase)} {self.name}: {done / 2**20:,.0f}{of} MiB")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def load_corpus(source: str, cache_dir: str | None = None):
    """The prepared Corpus of a path or '-' (stdin); bad content is one line and exit 1, unreadable input exit 2."""
    from charrnn.corpus import CorpusError, prepare

    name = "stdin" if source == "-" else source
    progress = _Shown(name)
    try:
        return prepare(source, cache_dir, progress)
    except CorpusError as e:
        fail(str(e))
    except IsADirectoryError:
        fail(f"{source} is a directory, not a text file", 2)
    except FileNotFoundError:
        fail(f"{source} does not exist", 2)
    except OSError as e:
        if e.filename is None or str(e.filename) == source:
            fail(f"cannot read {name}: {e.strerror}", 2)
        fail(f"cannot use the corpus cache ({e.strerror}: {e.filename}); give another with --cache-dir")
    finally:
        progress.close()


def known_only(text: str, vocab, unknown: str, what: str = "the prefix") -> str:
    """`text` if the vocabulary (a Vocab) has all its characters; else, with --unknown skip, the text without
    the others (their count on stderr), or with --unknown error a one-line error naming them (exit 1)."""
    missing = sorted(vocab.missing(text))  # in code point order, as for a corpus
    if not missing:
        return text
    count = sum(text.count(c) for c in missing)
    if Unknown(unknown) is Unknown.error:
        fail(f"{unknown_message(missing, count, what)}; use characters of the model's alphabet (`charrnn info` "
             f"describes the model) or pass --unknown skip to leave them out")
    say(f"skipped {count:,} occurrence(s) of {len(missing)} character(s) the model's vocabulary lacks: "
        f"{name_chars(missing)}")
    drop = set(missing)
    return "".join(c for c in text if c not in drop)
