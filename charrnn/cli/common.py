"""What every command shares: the Typer app, one-line errors, reading text, opening checkpoints, escapes.

The CLI package is the only place that imports typer, rich or tqdm. NumPy and the core are imported inside the
command functions, so `charrnn --help` never imports numpy.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import NoReturn

import typer

from charrnn.cli.layout import App, Group
from charrnn.config import DEFAULT_CHECKPOINT

app = App(
    name="charrnn",
    cls=Group,
    help="Character-level text generation with recurrent networks written by hand in NumPy.",
    invoke_without_command=True,  # bare `charrnn` prints the help and exits 0 (see the callback in cli/__init__)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
QUIET = False  # -q, --quiet (set by every command, see layout.quiet_option): `say` stays silent, errors still show

BUNDLED = Path(__file__).resolve().parent.parent / "pretrained" / "shakespeare.npz"
BUNDLED_ABOUT = "a 2-layer LSTM of 512 trained on tinyshakespeare"
CHECKPOINT_HELP = (f"Checkpoint to read (default {DEFAULT_CHECKPOINT}; without it, the bundled pretrained model, "
                   f"{BUNDLED_ABOUT}).")


def say(message: str, error: bool = False) -> None:
    """One line of chatter on stderr (none under --quiet unless it is an error). If its reader is gone
    (`2>&1 | head`), chatter stops and the work goes on."""
    if (QUIET and not error) or sys.stderr is None:  # None: stderr was closed (`2>&-`); never fall back to stdout
        return
    try:
        print(message, file=sys.stderr, flush=True)
    except BrokenPipeError:
        quiet_stderr()


def console(stderr: bool = False, **kw):
    """A rich Console that treats a closed pipe as `sample` does: on stdout (`| head`) the reader is gone, which
    is a normal end (exit 0; rich on its own exits 1); on stderr BrokenPipeError, for the caller to go on quietly."""
    from rich.console import Console

    c = Console(highlight=False, stderr=stderr, **kw)
    c.on_broken_pipe = _broken_pipe if stderr else reader_gone
    return c


def reader_gone() -> NoReturn:
    """Stdout's reader is gone (`| head`): end the command quietly with exit 0."""
    quiet_stdout()
    raise SystemExit(0)


def _broken_pipe() -> NoReturn:
    raise BrokenPipeError


def at_most(limit: int):
    """A parse-time check (exit 2, Typer's usage message) that an option stays within a documented maximum of
    charrnn.config; used instead of max= where a long range would crowd --help."""

    def check(value):
        if value is not None and value > limit:
            raise typer.BadParameter(f"{value} is above the maximum, {limit:,}")
        return value

    return check


def fail(message: str, code: int = 1) -> NoReturn:
    """A one-line error on stderr and a non-zero exit: bad content is 1, bad usage 2 (README.md, "Exit codes")."""
    say(f"charrnn: error: {message}", error=True)
    raise typer.Exit(code)


def _text_source(value: str) -> str:
    """Parse-time check of a text argument: '-' (stdin), or a path that exists and is not a directory (else exit 2)."""
    if value != "-" and (not os.path.exists(value) or os.path.isdir(value)):
        what = "is a directory" if os.path.isdir(value) else "does not exist"
        raise typer.BadParameter(f"{value!r} {what}; give a text file, or - to read stdin")
    return value


def text_argument(help: str):
    """A TEXT argument: a path or '-' for stdin. A plain str: Typer's Path(allow_dash=True) rejects '-' in 0.29."""
    return typer.Argument(..., callback=_text_source, help=help)


def read_text(source: str) -> str:
    """The UTF-8 text of a path, or of stdin when source is '-', without a leading byte-order mark (an encoding
    marker that Windows editors write, not text); fails with the byte offset of bad UTF-8."""
    name = "stdin" if source == "-" else source
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except IsADirectoryError:
        fail(f"{source} is a directory, not a text file", 2)
    except FileNotFoundError:
        fail(f"{source} does not exist", 2)
    except OSError as e:
        fail(f"cannot read {name}: {e.strerror}", 2)
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = bom + e.start
        fail(f"{name} is not valid UTF-8 (byte {at}: {raw[at:at + 1]!r}); convert it, "
             f"e.g. with `iconv -t UTF-8`")


def checkpoint_path(path: str | None) -> Path:
    """The checkpoint to read: -c PATH, else checkpoints/model.npz, else the bundled model (with a notice)."""
    if path is not None:
        if not Path(path).exists():
            fail(f"checkpoint {path} does not exist", 2)
        return Path(path)
    default = Path(DEFAULT_CHECKPOINT)
    if default.exists():
        return default
    if BUNDLED.exists():
        say(f"charrnn: no {default}: using the bundled Shakespeare model (-q hides this)")
        return BUNDLED
    fail(f"no model at {default}; train one first: `charrnn train CORPUS` (or pass -c PATH)")


def open_checkpoint(path: str | Path):
    """Load the checkpoint at a path from `checkpoint_path`; a bad file is a one-line error."""
    from charrnn.checkpoint import CheckpointError, load

    try:
        return load(path)
    except CheckpointError as e:
        fail(str(e))


_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\\\": "\\"}


def unescape(text: str) -> str:
    """Turn the escapes \\n, \\t and \\\\ into their characters; any other backslash stays as it is."""
    return re.sub(r"\\[nt\\]", lambda m: _ESCAPES[m.group(0)], text)


def parse_duration(text: str) -> float:
    """'90s', '20m', '1h', '1h30m', '2.5m' or plain seconds -> seconds; raises typer.BadParameter."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    text = text.strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd]?)", text)
    if not text or not parts or "".join(a + b for a, b in parts) != text:
        raise typer.BadParameter(f"{text!r} is not a duration; use e.g. 90s, 20m, 1h or 1h30m")
    seconds = sum(float(n) * units[u or "s"] for n, u in parts)
    if not 0 < seconds < 1e12:  # (a number too long for a float is inf)
        raise typer.BadParameter("a duration must be positive and below 30,000 years")
    return seconds


def set_threads(threads: int | None) -> None:
    """Ask the BLAS for `threads` threads; takes effect only before numpy is first imported."""
    if threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)


def _point_at_devnull(stream) -> None:
    """Make `stream`'s file descriptor /dev/null, so that later writes and the exit flush go nowhere."""
    try:
        devnull, fd = os.open(os.devnull, os.O_WRONLY), stream.fileno()
        if devnull != fd:  # (if fd was closed, open() may have returned that very number)
            os.dup2(devnull, fd)
            os.close(devnull)
    except (OSError, ValueError):
        pass


def quiet_stderr() -> None:
    """After a closed pipe on stderr (`2>&1 | head`): later chatter goes nowhere."""
    _point_at_devnull(sys.stderr)


def quiet_stdout() -> None:
    """After a closed pipe (`| head`): point stdout at /dev/null so the final flush cannot complain."""
    _point_at_devnull(sys.stdout)
