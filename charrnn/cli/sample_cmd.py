"""`charrnn sample`: text from a model, streamed to stdout character by character as it is generated.

Stdout carries only the text (flushed after every character: a write costs about a microsecond, a model step
about a hundred); notes go to stderr. A closed pipe (`| head`) ends the command quietly with exit 0. With
--exclude or --unique (charrnn.novelty) a sample is printed once it is complete and has passed the check.
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from typing import Iterable

import typer

from charrnn.cli.common import (CHECKPOINT_HELP, app, at_most, checkpoint_path, fail, open_checkpoint,
                                 quiet_stdout, read_text, say, unescape)
from charrnn.cli.corpus_io import Unknown, known_only, unknown_option
from charrnn.config import MAX_BEAM, MAX_BEAM_CHARS, MAX_LENGTH, MAX_SEED, MAX_VOCAB, SampleConfig

D = SampleConfig()
ESCAPES = "Understands the escapes \\n, \\t and \\\\."
BEAM_HELP = (
    "Beam search of width W (leave it out to sample): the most likely continuation it finds, by total "
    "log-probability under the model's raw probabilities; deterministic, printed when the search ends. "
    "--temperature, --top-k, --top-p and --seed do not apply to it (a note on stderr says so when they are "
    "given). With --stop, a beam that has generated STR is finished and set aside, and the result is the "
    "highest total log-probability among the finished and the full-length beams, so a short finished text can "
    "win; the search ends early once no unfinished beam can beat the best finished one (log-probabilities only "
    "decrease)."
)


EXCLUDE_HELP = (
    "Drop a sample that equals a line of FILE (UTF-8, e.g. the training list), so that only new items are printed. "
    "A sample is compared as its text (the prefix and the continuation) without the line breaks at its end, so "
    "--stop '\\n' makes one sample one line. A checked sample is printed once complete, not character by "
    "character. At most 20 x K + 100 samples are drawn for --num-samples K; then the command stops with what it "
    "found, one line on stderr, exit 1."
)


def _not_empty(value: str | None) -> str | None:
    if value == "":
        raise typer.BadParameter("an empty stop string would end every sample at once; leave --stop out instead")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def _top_p(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise typer.BadParameter(f"{value} is not in (0, 1]; 1 turns top-p off")
    return value


@app.command()
def sample(
    ctx: typer.Context,
    checkpoint: str = typer.Option(None, "-c", "--checkpoint", help=CHECKPOINT_HELP, show_default=False),
    prefix: str = typer.Option(
        "", "--prefix", metavar="TEXT", show_default=False,
        help=f"Text to condition on; - reads it from stdin, as is. Each sample is the prefix, then the "
             f"continuation. Empty (the default): the text starts as if after a line break. {ESCAPES}"),
    length: int = typer.Option(D.length, "-n", "--length", metavar="N", min=0, callback=at_most(MAX_LENGTH),
                               help="Characters to generate after the prefix, per sample."),
    temperature: float = typer.Option(
        D.temperature, "-t", "--temperature", metavar="T", min=0.0, callback=_finite,
        help="Divides the logits: below 1 safer, above 1 wilder; 0 means argmax (deterministic)."),
    top_k: int = typer.Option(D.top_k, "--top-k", metavar="K", min=0, callback=at_most(MAX_VOCAB),
                              help="Then keep only the K most likely characters (0 = off)."),
    top_p: float = typer.Option(
        D.top_p, "--top-p", metavar="P", callback=_top_p,
        help="Then keep the smallest set of most likely characters whose mass is >= P (1 = off); renormalise "
             "and draw."),
    seed: int | None = typer.Option(None, "--seed", metavar="S", min=0, callback=at_most(MAX_SEED), show_default=False,
                                    help="Same seed, same bytes out. Without it every run differs."),
    stop: str | None = typer.Option(
        None, "--stop", metavar="STR", show_default=False, callback=_not_empty,
        help=f"End a sample once the continuation has generated STR (STR is printed). {ESCAPES}"),
    num_samples: int = typer.Option(D.num_samples, "--num-samples", metavar="K", min=1, callback=at_most(MAX_LENGTH),
                                    help="K samples, each starting again from the prefix."),
    sep: str = typer.Option(
        D.sep, "--sep", metavar="STR", show_default="an empty line",
        help=f"Written between samples; a sample that does not end with a newline gets one first. {ESCAPES}"),
    beam: int | None = typer.Option(None, "--beam", metavar="W", min=1, callback=at_most(MAX_BEAM), show_default=False,
                                    help=BEAM_HELP),
    unknown: Unknown = unknown_option(),
    exclude: str | None = typer.Option(None, "--exclude", metavar="FILE", show_default=False,
                                       help=EXCLUDE_HELP),
    unique: bool = typer.Option(False, "--unique", help="Drop a sample equal to one printed before (compared as "
                                "for --exclude), so the K samples are all different; bounded as --exclude is."),
) -> None:
    """Generate text from a model and stream it to stdout: only the text, as it is generated."""
    if beam and (exclude or unique):
        raise typer.BadParameter("beam search is deterministic: it finds one text, so there is nothing to choose "
                                 "from; sample without --beam", param_hint="--exclude/--unique")
    if beam and beam * length > MAX_BEAM_CHARS:  # beam search keeps every live beam's whole text
        raise typer.BadParameter(f"--beam {beam} with --length {length} would hold {beam * length:,} characters; "
                                 f"keep W x N within {MAX_BEAM_CHARS:,}", param_hint="--beam")
    ckpt = open_checkpoint(checkpoint_path(checkpoint))
    known = _excluded(exclude)
    _stdin_hint(prefix)
    text = read_text("-") if prefix == "-" else unescape(prefix)
    import numpy as np

    from charrnn.sample import UnknownCharacters, as_vocab, generate

    cfg = SampleConfig(length, temperature, top_k, top_p, seed, unescape(stop) if stop else None, num_samples,
                       unescape(sep), beam or D.beam)
    vocab = as_vocab(ckpt.vocab)
    text = known_only(text, vocab, unknown)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**32)  # short enough to type back
        if not beam and temperature > 0:  # only a draw needs its seed to be repeated
            say(f"seed {seed} (pass --seed {seed} to repeat)")
    rng = np.random.default_rng(seed)
    try:
        first = generate(ckpt.params, ckpt.model_config, vocab, text, cfg, rng)
    except UnknownCharacters as e:
        fail(f"{e}; use a prefix in the model's alphabet (`charrnn info` describes the model)")
    _notes(ctx, cfg, vocab)
    if beam:  # deterministic: search once, print it num_samples times
        samples: Iterable = ["".join(first)] * num_samples
    elif exclude or unique:  # each sample whole, checked, then printed
        from charrnn.novelty import novel

        draws = itertools.chain(["".join(first)], ("".join(generate(ckpt.params, ckpt.model_config, vocab, text,
                                                                     cfg, rng)) for _ in itertools.count()))
        samples = novel(draws.__next__, num_samples, text, known, unique, exclude)
    else:
        rest = (generate(ckpt.params, ckpt.model_config, vocab, text, cfg, rng) for _ in range(num_samples - 1))
        samples = itertools.chain([first], rest)
    from charrnn.novelty import GaveUp

    try:
        _write(samples, text, cfg.sep)
    except BrokenPipeError:  # the reader is gone (`| head`): that is a normal end
        quiet_stdout()
    except GaveUp as e:  # what was found is printed
        fail(str(e))


def _excluded(path: str | None) -> set[str]:
    """The lines of --exclude FILE (a missing file exit 2, invalid UTF-8 exit 1)."""
    if path is None:
        return set()
    from charrnn.novelty import read_lines

    try:
        return read_lines(path)
    except FileNotFoundError:
        fail(f"--exclude {path} does not exist", 2)
    except IsADirectoryError:
        fail(f"--exclude {path} is a directory; give the list as one text file", 2)
    except OSError as e:
        fail(f"cannot read --exclude {path}: {e.strerror}", 2)
    except ValueError as e:
        fail(str(e))


def _stdin_hint(prefix: str) -> None:
    """A note when stdin holds text that will not be read (`echo ROMEO: | charrnn sample`), or a prompt when the
    prefix is to be typed at a terminal. Stdin is only looked at (fstat, and FIONREAD for a pipe), never read."""
    if prefix == "-":
        if sys.stdin.isatty():
            say("reading the prefix from stdin; end it with Ctrl-D")
        return
    if _stdin_has_data():
        say("charrnn: note: stdin is not read; pass --prefix - to use it as the prefix")


def _stdin_has_data() -> bool:
    """Whether fd 0 is a non-empty file, or a pipe or socket with bytes waiting (False when unknown)."""
    import os
    import stat

    try:
        mode = os.fstat(0)
        if stat.S_ISREG(mode.st_mode):
            return mode.st_size > 0
        if stat.S_ISFIFO(mode.st_mode) or stat.S_ISSOCK(mode.st_mode):
            import array
            import fcntl
            import termios

            waiting = array.array("i", [0])
            fcntl.ioctl(0, termios.FIONREAD, waiting)
            return waiting[0] > 0
    except (OSError, ImportError):  # no fd 0, or no FIONREAD on this platform: say nothing
        pass
    return False


def _notes(ctx: typer.Context, cfg: SampleConfig, vocab) -> None:
    """One-line notes on stderr for options that cannot take effect."""
    if cfg.beam:
        given = [f"--{name.replace('_', '-')}" for name in ("temperature", "top_k", "top_p", "seed")
                 if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"]
        if given:
            say(f"charrnn: note: --beam uses the model's raw probabilities; ignoring {', '.join(given)}")
        if cfg.num_samples > 1:
            say(f"charrnn: note: beam search is deterministic: the {cfg.num_samples} samples are identical")
    missing = vocab.missing(cfg.stop or "")
    if missing:
        say(f"charrnn: note: the model never generates {''.join(missing)!r}, so --stop {cfg.stop!r} cannot end "
            f"a sample")


def _write(samples: Iterable[Iterable[str]], prefix: str, sep: str) -> None:
    """Each sample as prefix + continuation + a newline if it lacks one, `sep` between; flushed every character."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    for i, chars in enumerate(samples):
        out.write(((sep if i else "") + prefix).encode())
        last = prefix[-1:]
        if isinstance(chars, str):  # a whole sample (checked, or a beam's): one write
            out.write(chars.encode())
            last = chars[-1:] or last
            chars = ()
        for ch in chars:
            out.write(ch.encode())
            out.flush()
            last = ch
        if last != "\n":
            out.write(b"\n")
        out.flush()
