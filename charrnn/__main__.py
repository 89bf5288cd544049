"""`python -m charrnn` is `charrnn`; `main` is also the console script's entry point.

The CLI is imported inside the try, so a Ctrl-C that lands while Python is still importing ends with exit code
130 and no traceback, like one that lands later.
"""

import sys


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

        cli_main()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
