"""`python -m charrnn` is `charrnn`."""

from charrnn.cli import main

if __name__ == "__main__":
    main()
