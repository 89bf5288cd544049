"""The `charrnn` command: train, sample, eval, inspect, info. The only package that imports typer, rich or tqdm."""

from __future__ import annotations

import sys

import typer

from charrnn import __version__
from charrnn.cli import eval_cmd, info_cmd, inspect_cmd, sample_cmd, train_cmd  # noqa: F401  (each registers it)
from charrnn.cli.common import app, quiet_stdout, say


def _version(value: bool) -> None:
    if value:
        print(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", callback=_version,
                                 is_eager=True),
) -> None:
    """Character-level text generation with recurrent networks written by hand in NumPy.

    Start with `charrnn sample -t 0.5` (the bundled Shakespeare model), then `charrnn train CORPUS`.
    """
    if ctx.invoked_subcommand is None:  # bare `charrnn`: the help, and success (asking what it does is no error)
        print(ctx.get_help())
        raise typer.Exit()


def main() -> None:
    """Entry point of the console script and of `python -m charrnn`."""
    try:
        app(prog_name="charrnn")
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # the reader of stdout is gone (`| head`): a normal end, as in `sample`
        quiet_stdout()
    except OSError as e:  # never a traceback, e.g. for stdout on a full disk (`> /dev/full`)
        quiet_stdout()
        where = f": {e.filename}" if e.filename else ""
        say(f"charrnn: error: {e.strerror or e}{where}", error=True)
        sys.exit(1)
    except MemoryError:  # the maxima keep sizes bounded, but a machine can still have less memory than asked
        say("charrnn: error: out of memory; give smaller sizes (--hidden, --layers, --batch, ...)", error=True)
        sys.exit(1)
