"""`charrnn inspect TEXT`: which units of a model track what in a text (features, gate saturation), the text
coloured by one unit (`--unit`), and a self-contained page of it all (`--html`).

The core (charrnn.probe) computes; inspect_view.py presents. TEXT is read as `eval` reads it (the same corpus
preparation and `--unknown`); its first --chars characters are inspected.
"""

from __future__ import annotations

import typer

from charrnn.cli.common import (BUNDLED, CHECKPOINT_HELP, app, at_most, checkpoint_path, fail, open_checkpoint,
                                quiet_stdout, set_threads, text_argument)
from charrnn.cli.corpus_io import Unknown, cache_dir_option, encoding_option, load_corpus, unknown_option
from charrnn.config import INSPECT_CHARS, MAX_INSPECT_CHARS, MAX_THREADS

TOP = 5  # units per feature in the table and the JSON


@app.command("inspect")
def inspect(
    text: str = text_argument("Text to run the model over (UTF-8 unless --encoding says): a path, or - for stdin."),
    checkpoint: str = typer.Option(None, "-c", "--checkpoint", help=CHECKPOINT_HELP, show_default=False),
    chars: int = typer.Option(INSPECT_CHARS, "--chars", metavar="N", min=1, callback=at_most(MAX_INSPECT_CHARS),
                              help=f"Inspect the first N characters of the text (one stream, state carried; at "
                              f"most {MAX_INSPECT_CHARS:,})."),
    top: int = typer.Option(TOP, "--top", metavar="K", min=0, help="Units listed per feature, best first "
                            "(0: every unit)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (features, gates, chars, ...) "
                                 "instead of tables."),
    unit: str = typer.Option(None, "--unit", metavar="L:N[:c]", help="Print the text coloured by this unit's "
                             "activation (layer L's hidden unit N, from 0; :c an LSTM's cell state); a legend on "
                             "stderr; plain text off a terminal or with NO_COLOR.", show_default=False),
    html: str = typer.Option(None, "--html", metavar="FILE", help="Also write a self-contained page (offline, "
                             "one file): the text coloured by surprisal or by any unit, the model's top guesses, "
                             "the feature table, gate saturation, the loss curve. #unit=L:N[:c] in its URL picks "
                             "a unit.", show_default=False),
    threads: int = typer.Option(1, "--threads", metavar="N", min=1, max=MAX_THREADS, help="BLAS threads. The "
                                "model reads one character at a time: matrix-vector products, which a second "
                                "thread slows down more often than not (BENCHMARKS.md, \"inspect\")."),
    unknown: Unknown = unknown_option(),
    encoding: str = encoding_option(),
    cache_dir: str = cache_dir_option(),
) -> None:
    """Which units of the model follow which feature of TEXT (Pearson r), and how saturated its gates are."""
    set_threads(threads)  # before numpy is imported
    from charrnn.cli import inspect_view as view
    from charrnn.cli.eval_cmd import _model_ids
    from charrnn.data import Vocab
    from charrnn.probe import inspect as run
    from charrnn.probe import units

    path = checkpoint_path(checkpoint)
    ckpt = open_checkpoint(path)
    mc = ckpt.model_config
    try:
        picked = units.parse(unit, mc) if unit is not None else None
    except ValueError as e:
        fail(str(e), 2)
    corpus = load_corpus(text, cache_dir, encoding=encoding)
    ids, lut = _model_ids(corpus, ckpt.vocab, Unknown(unknown).value, cache_dir)
    head = ids[:chars] if lut is None else lut[ids[:chars]]
    if len(head) < 2:
        fail(f"{text} has {len(head)} character(s) the model can read; inspect needs at least 2")
    shown = Vocab(ckpt.vocab).decode(head)
    page = view.page_plan(mc, shown) if html else None
    result = run(ckpt.params, mc, head, shown, record=[picked] if picked else (),
                 head=page.keep if page else 0, guesses=page.guesses if page else 0)
    if not result.finite:
        fail(f"the model's activations or outputs are not finite (NaN or infinity) over {text}: the weights in "
             f"{path} are broken; use another checkpoint")
    name, model = "stdin" if text == "-" else text, "the bundled model" if path == BUNDLED else str(path)
    if html:
        view.write_page(html, ckpt, model, name, shown, head, result, page)
    try:
        if picked is not None:
            view.show_unit(shown, result, picked, mc, as_json)
        elif as_json:
            view.print_json(result, mc, top, model, name)
        else:
            view.print_tables(result, mc, top, model, name)
    except BrokenPipeError:  # the reader is gone (`| head`): a normal end, as for sample
        quiet_stdout()
