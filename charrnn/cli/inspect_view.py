"""How `charrnn inspect` presents what charrnn.probe found: the feature table and the gate-saturation plots
(rich, on stdout: they are the product), the JSON object, the text coloured by one unit, and the page."""

from __future__ import annotations

import json
import math
import os

from charrnn.cli import common
from charrnn.cli.common import fail, say

# A diverging palette (blue below zero, red above), 9 bands of the activation / max |activation| over the text:
# (upper bound, background, foreground)
PALETTE = ((-0.75, "#08306b", "white"), (-0.5, "#2166ac", "white"), (-0.25, "#6baed6", "black"),
           (-0.05, "#c6dbef", "black"), (0.05, "", ""), (0.25, "#fcbba1", "black"), (0.5, "#fb6a4a", "black"),
           (0.75, "#cb181d", "white"), (math.inf, "#67000d", "white"))
CENTRES = (-0.875, -0.625, -0.375, -0.15, 0.0, 0.15, 0.375, 0.625, 0.875)  # one value inside each band, for the key


def report(result, mc, top: int, path: str, name: str) -> dict:
    """The JSON object: the features' ranked units, the gates' saturation, the counts."""
    ranked = result.ranked(mc, top)
    gates = [{"layer": k, "gate": g, "left": round(float(left.mean()), 4), "right": round(float(right.mean()), 4),
              "units_left": [round(float(v), 4) for v in left], "units_right": [round(float(v), 4) for v in right]}
             for (k, g), (left, right) in result.saturation.items()]
    scored = result.bits[1:]
    return {"checkpoint": path, "text": name, "chars": result.chars, "cell": mc.cell, "layers": mc.layers,
            "hidden": mc.hidden, "units": int(result.r.shape[0]),
            "bits_per_char": round(float(scored.mean()), 4) if scored.size else None,
            "features": {f: [{"unit": str(u), "r": round(r, 4)} for u, r in units] for f, units in ranked.items()},
            "constant_features": [f for f, units in ranked.items() if not units], "gates": gates}


def print_json(result, mc, top: int, path: str, name: str) -> None:
    print(json.dumps(report(result, mc, top, path, name)))


def print_tables(result, mc, top: int, path: str, name: str) -> None:
    """The feature table, then the gate-saturation plots (LSTM, GRU), on stdout."""
    from rich.table import Table

    from rich import box

    console = common.console()  # `| head` ends quietly with 0, as for `sample | head`
    table = Table(title=f"units that follow each feature of {name} ({result.chars:,} characters), Pearson r",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("feature", no_wrap=True)
    fits = max((console.width - 18) // 15, 1)  # columns of `L:N:c +0.123` the terminal has room for
    shown = min(top or result.r.shape[0], fits)
    for i in range(shown):
        table.add_column(f"#{i + 1}", justify="right", no_wrap=True)
    for feature, units in result.ranked(mc, shown).items():
        cells = [f"{u} {r:+.3f}" for u, r in units] or ["(constant)"]
        table.add_row(feature, *cells)
    console.print(table)
    if result.saturation:
        console.print()
        console.print(gate_plots(result, console.width))


def gate_plots(result, width: int):
    """Per gate, a scatter of its units (x: fraction of the time right-saturated, > 0.9; y: left-saturated,
    < 0.1), one glyph and colour per layer, as in Karpathy et al. 2015, figure 3; then the means as a table."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from charrnn.cli.plot import Series, plot

    glyphs, styles = "•×+o*#", ("cyan", "magenta", "yellow", "green", "blue", "red")
    gates = list(dict.fromkeys(g for _, g in result.saturation))
    layers = sorted({k for k, _ in result.saturation})
    cols = max(min((width - 2 * len(gates)) // len(gates), 40), 22)
    grid = Table.grid(padding=(0, 2))
    for _ in gates:
        grid.add_column(width=cols, no_wrap=True)
    plots = []
    for g in gates:
        series = [Series(f"layer {k}", list(right), list(left), style=styles[k % 6], glyph=glyphs[k % 6])
                  for k in layers for (kk, gg), (left, right) in result.saturation.items() if (kk, gg) == (k, g)]
        title = Text(f"gate {g}\n", style="bold")
        plots.append(Group(title, plot(series, width=cols, height=8, y_format="{:.1f}", x_format="{:.1f}",
                                       x_range=(0.0, 1.0), y_range=(0.0, 1.0))))
    grid.add_row(*plots)
    legend = Text("gate saturation, one point per unit: y the fraction of the time < 0.1, x > 0.9\n")
    for k in layers:
        legend.append(f"{glyphs[k % 6]} layer {k}", style=styles[k % 6]).append("  ")
    means = Table(title="mean fraction of the time saturated", title_justify="left")
    for column in ("layer", "gate", "left (< 0.1)", "right (> 0.9)", ""):
        means.add_column(column, justify="right" if column else "left")
    for (k, g), (left, right) in result.saturation.items():
        bar = Text("█" * round(left.mean() * 20), style="cyan").append("█" * round(right.mean() * 20),
                                                                         style="magenta")
        means.add_row(str(k), g, f"{left.mean():.3f}", f"{right.mean():.3f}", bar)
    return Group(legend, grid, Text(""), means)  # (the means' bars: cyan left, magenta right)


def _band(value: float) -> str:
    bg, fg = next((bg, fg) for bound, bg, fg in PALETTE if value < bound)
    return f"{fg} on {bg}" if bg else ""


def show_unit(text: str, result, unit, mc, as_json: bool) -> None:
    """The text on stdout coloured by one unit's activation (a legend on stderr); the plain text off a terminal
    or with NO_COLOR; with as_json, one object: the unit, its best features' r and every character's value."""
    import numpy as np
    from rich.text import Text

    from charrnn.cli.show import coloured
    from charrnn.probe import features, units

    values = result.recorded[unit]
    col = units.column(unit, mc)
    rs = {f: round(float(result.r[col, i]), 4) for i, f in enumerate(features.NAMES)}
    if as_json:
        print(json.dumps({"unit": str(unit), "chars": result.chars, "r": rs, "text": text,
                          "values": [round(float(v), 5) for v in values]}))
        return
    scale = float(np.abs(values).max()) or 1.0
    out = common.console(soft_wrap=True, emoji=False)
    err = common.console(stderr=True, soft_wrap=True)
    colour = out.color_system is not None and not out.no_color
    if colour and not common.QUIET:
        key = Text(f"unit {unit}, activation (max |a| = {scale:.3g}): ")
        for centre in CENTRES:
            key.append(f" {centre * scale:+.2g} ", style=_band(centre)).append(" ")
        err.print(key)
    if colour:
        out.print(coloured(text, values / scale, _band), end="" if text.endswith("\n") else "\n")
    else:
        out.file.write(text)  # the inspected text itself, byte for byte
        out.file.flush()
    best = max(rs, key=lambda f: abs(rs[f]))
    say(f"unit {unit} over {result.chars:,} characters: from {values.min():.3g} to {values.max():.3g}; follows "
        f"{best} best (r = {rs[best]:+.3f})")


def page_plan(mc, text: str):
    from charrnn.probe.page import plan

    return plan(mc, text)


def write_page(path: str, ckpt, ckpt_path: str, name: str, text: str, ids, result, plan) -> None:
    """Build the page (charrnn.probe.page) and write it to path atomically; say where and how big."""
    from charrnn.checkpoint import describe
    from charrnn.probe.page import render

    html = render(ckpt.params, ckpt.model_config, ckpt.vocab, ids, text, result, plan,
                  {"text": name, "checkpoint": ckpt_path, "history": describe(ckpt)["history"]})
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        fail(f"cannot write {path}: {e.strerror}", 1)
    say(f"wrote {path} ({len(html.encode()) / 1e6:.1f} MB): open it in a browser; #unit=L:N[:c] picks a unit")
