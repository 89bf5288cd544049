"""`python -m charrnn` is `charrnn`; `main` is also the console script's entry point.

The CLI is imported inside the try, so a Ctrl-C that lands while Python is still importing ends with exit code
130 and no traceback, like one that lands later.
"""

import sys


def main() -> None:
    try:
        from charrnn.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
