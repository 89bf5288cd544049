"""`python -m charrnn` is `charrnn`; `main` is also the console script's entry point.

The CLI is imported inside the try, so a Ctrl-C that lands while Python is still importing ends with exit code
130 and no traceback, like one that lands later.
"""

import signal
import sys


def _exit_130(signum, frame):
    raise SystemExit(130)  # no traceback is printed for SystemExit, wherever it lands


# Until main() has imported the CLI, Ctrl-C is a plain exit 130, even between this line and main()'s try (the
# console script imports this module outside any try). Only Python's own start-up, before any charrnn code, remains.
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _exit_130)


def _reopen_closed_std_streams() -> None:
    """A standard stream the caller closed (`<&-`, `>&-`, `2>&-`) becomes /dev/null: what nobody can read is
    dropped (chatter and errors are never moved to stdout), stdin reads as empty, and no file this process opens
    later can take the stream's descriptor number (a save must never land in fd 2)."""
    import os

    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:  # Python sets a stream that was closed at start-up to None
                setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))


def main() -> None:
    try:
        _reopen_closed_std_streams()
        from charrnn.cli import main as cli_main

        if signal.getsignal(signal.SIGINT) is _exit_130:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt again, as the CLI expects
        cli_main()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
