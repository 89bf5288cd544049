"""Corpora for the commands: the PATH... argument and the options that say how to read it, preparing it with
progress on stderr, the cache options, unknown characters.

A command that reads a corpus takes `paths_argument()`, `include_option()`, `encoding_option()` and
`cache_dir_option()` and hands them to `load_corpus`, which runs the core's streaming preparation
(charrnn.corpus.prepare: files, folders, archives, any encoding) and shows it: a tqdm bar (bytes, MB/s) on a
terminal, a plain line every few seconds otherwise, nothing for a small corpus (prepared in memory) or under
--quiet. `--unknown error|skip` decides what `eval` and `sample --prefix` do with characters the model's
vocabulary lacks.
"""

from __future__ import annotations

import errno
import os
import shlex
import time
from enum import Enum
from typing import Sequence

import typer

from charrnn.cli import progress as shown
from charrnn.cli.common import fail, say

Unknown = Enum("Unknown", {"error": "error", "skip": "skip"}, type=str)
UNKNOWN_HELP = ("What to do with characters the model's vocabulary lacks: error (name them and exit 1) or skip "
                "(leave them out and say how many on stderr).")
CACHE_HELP = ("Where large corpora are cached as ids, ready to memory-map (default: $CHARRNN_CACHE_DIR, else "
              "charrnn in $XDG_CACHE_HOME, else ~/.cache/charrnn). Safe to delete.")
PHASES = {"spooling": "spooling", "reading": "reading", "encoding": "encoding", "checking": "checking cache of",
          "decoding": "decoding"}
PATHS_HELP = ("Files and folders, read in the order given, or - for stdin. A folder is read recursively, its files "
              "in sorted path order, names starting with . skipped; .gz, .bz2 and .xz files are decompressed. The "
              "text is the files' texts one after the other.")
INCLUDE_HELP = ("Of the files found in folders, read only those whose name matches GLOB (e.g. '*.txt'; repeat it "
                "for several). Files named on the command line are always read.")
ENCODING_HELP = ("The text encoding of every file: any codec Python knows (latin-1, cp1252, utf-16, ...). Default: "
                 "UTF-8, strictly, a leading byte-order mark dropped.")


def _paths(values: list[str]) -> list[str]:
    """Parse-time check of PATH...: '-' alone, or paths that exist (else exit 2)."""
    if "-" in values and len(values) > 1:
        raise typer.BadParameter("- (stdin) must be the only PATH")
    for value in values:
        if value != "-" and not os.path.exists(value):
            raise typer.BadParameter(f"{value!r} does not exist; give text files or folders, or - to read stdin")
    return values


def paths_argument(what: str):
    """The PATH... argument of a command that reads a corpus; `what` starts its help."""
    return typer.Argument(..., callback=_paths, metavar="PATH...", help=f"{what} {PATHS_HELP}", show_default=False)


def include_option():
    return typer.Option(None, "--include", metavar="GLOB", help=INCLUDE_HELP, show_default=False)


def _codec(value: str | None) -> str | None:
    if value is not None:
        try:  # (what charrnn.stream.text_codec checks, without importing numpy before --threads)
            b"\x00".decode(value)
        except UnicodeDecodeError:
            pass
        except LookupError:
            raise typer.BadParameter(f"{value!r} is not a text encoding Python knows (e.g. utf-8, latin-1, cp1252, "
                                     f"utf-16)")
    return value


def encoding_option():
    return typer.Option(None, "--encoding", metavar="NAME", callback=_codec, help=ENCODING_HELP, show_default="utf-8")


def corpus_words(paths: Sequence[str], include: Sequence[str] = (), encoding: str | None = None) -> str:
    """The corpus part of a command line that reads the same corpus again (for a resume hint)."""
    words = list(paths) + [w for g in include or () for w in ("--include", g)]
    return shlex.join(words + (["--encoding", encoding] if encoding else []))


def corpus_label(paths: Sequence[str]) -> str:
    """How messages name a corpus: its one path, stdin, or the first of several paths."""
    if len(paths) == 1:
        return "stdin" if paths[0] == "-" else paths[0]
    return f"{paths[0]} and {len(paths) - 1} more path(s)"


def unknown_option():
    return typer.Option(Unknown.error.value, "--unknown", help=UNKNOWN_HELP)


def cache_dir_option():
    return typer.Option(None, "--cache-dir", metavar="DIR", help=CACHE_HELP, show_default=False)


CONTROL_NAMES = {"\t": "tab", "\n": "line feed", "\r": "carriage return", "\x0b": "vertical tab",
                 "\x0c": "form feed", "\x00": "NUL", "\x1b": "escape", "\x7f": "delete"}


def name_char(c: str) -> str:
    """One character as a message names it: quoted as Python quotes it ('é', '"', "'"), so that a quote reads as
    one; an invisible one (a space, a control, a format character) as U+XXXX and its name: U+00A0 (no-break space)."""
    if c.isprintable() and not c.isspace():
        return repr(c)
    import unicodedata

    name = CONTROL_NAMES.get(c) or unicodedata.name(c, "").lower()
    return f"U+{ord(c):04X}" + (f" ({name})" if name else "")


def name_chars(chars: list[str], most: int = 20) -> str:
    """Characters as name_char shows them, comma-separated, at most `most` of them."""
    return ", ".join(map(name_char, chars[:most])) + (f" and {len(chars) - most} more" if len(chars) > most else "")


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


def load_corpus(paths: str | Sequence[str], cache_dir: str | None = None, include: Sequence[str] | None = None,
                encoding: str | None = None):
    """The prepared Corpus of paths (or one path, or '-' for stdin); bad content is one line and exit 1, paths that
    hold no text, an unknown encoding or unreadable input exit 2."""
    from charrnn import corpus_cache
    from charrnn.corpus import CorpusError, SourceError, prepare

    paths = [paths] if isinstance(paths, str) else list(paths)
    if include and not any(os.path.isdir(p) for p in paths):
        say("charrnn: note: --include picks among the files found in folders; files named on the command line are "
            "all read")
    name = corpus_label(paths)
    progress = _Shown(name)
    try:
        return prepare(paths[0] if paths == ["-"] else paths, cache_dir, progress, name=name,
                       encoding=encoding, include=include or ())
    except CorpusError as e:
        fail(str(e))
    except SourceError as e:
        fail(str(e), 2)
    except LookupError:
        fail(f"{encoding!r} is not a text encoding Python knows", 2)
    except IsADirectoryError as e:
        fail(f"{e.filename} is a directory, not a text file", 2)
    except FileNotFoundError as e:
        fail(f"{e.filename or name} does not exist", 2)
    except OSError as e:
        cache = os.path.abspath(cache_dir if cache_dir is not None else corpus_cache.default_dir())
        in_cache = e.filename is not None and os.path.abspath(e.filename).startswith(os.path.join(cache, ""))
        if in_cache or e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            fail(f"cannot use the corpus cache ({e.strerror}: {e.filename}); give another with --cache-dir")
        fail(f"cannot read {e.filename or name}: {e.strerror or e}", 2)
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
