"""`charrnn eval --show`: the text on stdout, each character coloured by the bits the model spent on it.

On a terminal with colour: a background from none (under 1 bit) through yellow and orange to dark red (8 bits and
more), a legend and the summary line on stderr. Off a terminal or with NO_COLOR: the plain text, which is the
product (`--json` carries the numbers: the report plus the shown text and its bits per character). Only the first
`limit` characters are shown: it is for a person to read.
"""

from __future__ import annotations

import json
import math

from charrnn.cli.common import say

# (upper bound in bits, style, legend label): the first bound a character's surprisal is below picks its style
# (named colours, so that the bands stay apart on 8-colour terminals too)
LEVELS = ((1.0, "", "<1"), (2.0, "on bright_black", "1-2"), (4.0, "black on yellow", "2-4"),
          (8.0, "bold white on red", "4-8"), (math.inf, "bold white on magenta", "8+"))
DEFAULT_LIMIT = 3000


def _style(bits: float) -> str:
    if math.isnan(bits):  # the first character: nothing predicted it
        return ""
    return next(style for bound, style, _ in LEVELS if bits < bound)


def _visible(ch: str) -> str:
    """Control characters (other than newline and tab) as their control pictures (ESC as ␛), so they draw."""
    if ch in "\n\t" or ch.isprintable():
        return ch
    return chr(0x2400 + ord(ch)) if ord(ch) < 0x20 else "\N{REPLACEMENT CHARACTER}"


def coloured(text: str, bits, style_of=None) -> "Text":  # noqa: F821 (rich.text.Text, imported lazily)
    """A rich Text of `text`, each run of characters in the same surprisal band styled with that band (or with
    `style_of(value)` for other values, as `inspect --unit` colours a unit's activations)."""
    from rich.text import Text

    style_of = style_of or _style
    out = Text(no_wrap=True)
    run, run_style = [], None
    for ch, b in zip(text, bits):
        style = style_of(float(b))
        if style != run_style and run:
            out.append("".join(run), style=run_style)
            run = []
        run_style = style
        run.append(_visible(ch))
    if run:
        out.append("".join(run), style=run_style)
    return out


def legend():
    """The colour key, as a rich Text."""
    from rich.text import Text

    key = Text("surprisal, bits per character: ")
    for _, style, label in LEVELS:
        key.append(f" {label} ", style=style).append(" ")
    return key


def show_surprisal(ckpt, ids, lut, limit: int, report: dict, as_json: bool, name: str) -> None:
    """Score the first `limit` characters of ids (the text's ids; `lut` maps them to the model's, or None) one by one
    and show them: coloured text on stdout on a terminal, else plain; `as_json`: the report with the numbers."""
    import numpy as np

    from charrnn.cli import common
    from charrnn.data import Vocab
    from charrnn.surprisal import surprisal_bits

    head = ids[:limit] if lut is None else lut[ids[:limit]]
    bits = surprisal_bits(ckpt.params, ckpt.model_config, head)
    text = Vocab(ckpt.vocab).decode(head)
    if as_json:
        shown = [None if math.isnan(b) else round(float(b), 4) for b in bits]
        print(json.dumps(report | {"shown": {"text": text, "bits": shown, "of": int(len(ids))}}))
        return
    out = common.console(soft_wrap=True, emoji=False)
    err = common.console(stderr=True, soft_wrap=True)
    colour = out.color_system is not None and not out.no_color  # off a terminal, or NO_COLOR: plain text
    if colour and not common.QUIET:
        err.print(legend())
    if colour:
        out.print(coloured(text, bits), end="" if text.endswith("\n") else "\n")
    else:
        try:
            out.file.write(text if text.endswith("\n") else text + "\n")
            out.file.flush()
        except BrokenPipeError:
            common.reader_gone()
    scored = bits[~np.isnan(bits)]
    part = f"the first {len(text):,} of {len(ids):,} characters" if len(ids) > len(text) else "all of it"
    mean = f", {scored.mean():.3f} bits/char" if scored.size else ""
    say(f"{name}: {report['nats_per_char']:.4f} nats/char, {report['bits_per_char']:.4f} bits/char, perplexity "
        f"{report['perplexity']:.3f} over {report['chars']:,} characters; shown: {part}{mean}")

