"""`charrnn eval PATH...`: how well a model predicts a text, in nats/char, bits/char and perplexity.

The text goes through the same streaming preparation as a training corpus (a large one is cached and
memory-mapped, so memory stays bounded); its ids are mapped to the model's vocabulary chunk by chunk while it is
scored, with a bar on stderr on a terminal.
"""

from __future__ import annotations

import json
import typer

from charrnn.cli import common
from charrnn.cli import progress as shown
from charrnn.cli.common import CHECKPOINT_HELP, app, at_most, checkpoint_path, fail, open_checkpoint, say
from charrnn.cli.corpus_io import (Unknown, cache_dir_option, corpus_label, encoding_option, include_option,
                                   load_corpus, name_chars, paths_argument, unknown_message, unknown_option)
from charrnn.config import DEFAULT_BATCH, MAX_BATCH, MAX_LENGTH


@app.command("eval")
def evaluate(
    text: list[str] = paths_argument("Text to score."),
    checkpoint: str = typer.Option(None, "-c", "--checkpoint", help=CHECKPOINT_HELP, show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    batch: int = typer.Option(DEFAULT_BATCH, "--batch", min=1, max=MAX_BATCH, help="Contiguous streams at most, each "
                              "with its own carried state (fewer for short texts: no stream is shorter than 1,000 "
                              "characters); every character but a stream's first is scored."),
    unknown: Unknown = unknown_option(),
    include: list[str] = include_option(),
    encoding: str = encoding_option(),
    cache_dir: str = cache_dir_option(),
    show: bool = typer.Option(False, "--show", help="Print the text itself, each character coloured by the bits "
                              "the model spent on it (a legend and the scores on stderr); plain text off a "
                              "terminal or with NO_COLOR; with --json, the report plus every character's bits."),
    show_chars: int = typer.Option(3000, "--show-chars", metavar="N", min=1, callback=at_most(MAX_LENGTH),
                                   help="How much of the text --show prints: its first N characters."),
) -> None:
    """Score the text in PATH... with a model: mean loss in nats/char, bits/char, perplexity, characters scored,
    streams."""
    path = checkpoint_path(checkpoint)
    ckpt = open_checkpoint(path)
    corpus = load_corpus(text, cache_dir, include, encoding)
    text = corpus_label(text)
    ids, lut = _model_ids(corpus, ckpt.vocab, Unknown(unknown).value, cache_dir)
    from charrnn.train import evaluate as score

    bar = _Bar()
    try:
        result = score(ckpt.params, ckpt.model_config, ids, batch, lut=lut, progress=bar)
    except ValueError as e:
        fail(str(e))
    finally:
        bar.close()
    report = {"nats_per_char": result.nats_per_char, "bits_per_char": result.bits_per_char,
              "perplexity": result.perplexity, "chars": result.chars, "streams": result.streams}
    if show:
        from charrnn.cli.show import show_surprisal

        show_surprisal(ckpt, ids, lut, show_chars, report, as_json, text)
        return
    if as_json:
        print(json.dumps(report))
        return
    from rich.table import Table

    table = Table(title=f"{text} under {path}", title_justify="left")
    for label in ("nats/char", "bits/char", "perplexity", "chars", "streams"):
        table.add_column(label, justify="right")
    table.add_row(f"{result.nats_per_char:.4f}", f"{result.bits_per_char:.4f}", f"{result.perplexity:.3f}",
                  f"{result.chars:,}", str(result.streams))
    common.console().print(table)


def _model_ids(corpus, vocab, unknown: str, cache_dir):
    """(ids, lut) to score: the text's ids and the map to the model's ids (None when they are the same); with
    --unknown skip, characters the model lacks are left out (and counted on stderr), else they are an error."""
    import numpy as np

    from charrnn.corpus import to_vocab, without_unknown

    lut, missing, count = to_vocab(corpus, vocab)
    if missing and unknown == "error":
        fail(f"{unknown_message(missing, count, 'the text')}; evaluate text in the model's alphabet, pass "
             f"--unknown skip to leave them out, or train on a corpus that contains them")
    if missing:
        say(f"skipped {count:,} occurrence(s) of {len(missing)} character(s) the model's vocabulary lacks: "
            f"{name_chars(missing)}")
        return without_unknown(corpus, lut, cache_dir), None
    same = len(lut) == len(vocab) and np.array_equal(lut, np.arange(len(lut)))
    return corpus.ids, None if same else lut


class _Bar:
    """evaluate()'s progress callback: a bar of characters scored, on a terminal only."""

    def __init__(self):
        self.bar, self.started = None, False

    def __call__(self, done: int, total: int) -> None:
        if not self.started:
            self.started, self.bar = True, shown.bar(total, "eval")
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
