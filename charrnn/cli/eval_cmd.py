"""`charrnn eval TEXT`: how well a model predicts a text, in nats/char, bits/char and perplexity."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from charrnn.cli.common import CHECKPOINT_HELP, app, checkpoint_path, fail, open_checkpoint, read_text, text_argument


@app.command("eval")
def evaluate(
    text: str = text_argument("UTF-8 text to score: a path, or - for stdin."),
    checkpoint: str = typer.Option(None, "-c", "--checkpoint", help=CHECKPOINT_HELP, show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    batch: int = typer.Option(32, "--batch", min=1, help="Contiguous streams, each with its own carried state "
                              "(fewer for short texts); every character but a stream's first is scored."),
) -> None:
    """Score TEXT with a model: mean loss in nats/char, bits/char, perplexity, characters scored, streams."""
    path = checkpoint_path(checkpoint)
    ckpt = open_checkpoint(path)
    source = read_text(text)
    from charrnn.data import Vocab
    from charrnn.train import evaluate as score

    vocab = Vocab(ckpt.vocab)
    missing = vocab.missing(source)
    if missing:
        shown = "".join(missing[:20]).encode("unicode_escape").decode("ascii")
        fail(f"the text has {len(missing)} character(s) the model's vocabulary lacks: '{shown}'; "
             f"evaluate text in the model's alphabet or train on a corpus that contains them")
    try:
        result = score(ckpt.params, ckpt.model_config, vocab.encode(source), batch)
    except ValueError as e:
        fail(str(e))
    report = {"nats_per_char": result.nats_per_char, "bits_per_char": result.bits_per_char,
              "perplexity": result.perplexity, "chars": result.chars, "streams": result.streams}
    if as_json:
        print(json.dumps(report))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{text} under {path}", title_justify="left")
    for label in ("nats/char", "bits/char", "perplexity", "chars", "streams"):
        table.add_column(label, justify="right")
    table.add_row(f"{result.nats_per_char:.4f}", f"{result.bits_per_char:.4f}", f"{result.perplexity:.3f}",
                  f"{result.chars:,}", str(result.streams))
    Console(highlight=False).print(table)
