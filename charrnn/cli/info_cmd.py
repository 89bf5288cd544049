"""`charrnn info`: what a checkpoint holds, and its loss curves drawn in the terminal (`--json`: every number)."""

from __future__ import annotations

import json
import math

import typer

from charrnn.cli import common
from charrnn.cli.common import CHECKPOINT_HELP, app, checkpoint_path, open_checkpoint


def _best(summary: dict) -> tuple[int | None, float | None]:
    """(step, loss) of the best validation in the curve, or (None, None)."""
    vals = [(h["val_loss"], h["step"]) for h in summary["history"] if isinstance(h.get("val_loss"), (int, float))]
    best = summary["best_val_loss"]
    steps = [step for loss, step in vals if loss == best]
    return (steps[0] if steps else None), best


@app.command()
def info(
    checkpoint: str = typer.Option(None, "-c", "--checkpoint", help=CHECKPOINT_HELP, show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (every number of the curve) instead "
                                 "of tables and a plot."),
) -> None:
    """Format version, cell, sizes, parameter count, vocabulary, training steps, seed, validation, curve."""
    from charrnn.checkpoint import describe
    from charrnn.history import curve_points

    path = checkpoint_path(checkpoint)
    ckpt = open_checkpoint(path)
    summary = describe(ckpt)
    summary["corpus_chars"] = ckpt.meta.get("corpus_chars")
    summary["corpus_files"] = ckpt.meta.get("corpus_files")  # None in checkpoints from before it was kept
    summary["curve"] = curve_points(ckpt.meta)  # [step, mean training loss] from step 1 (none in older files)
    summary["curve_every"] = ckpt.meta.get("curve_every") if summary["curve"] else None  # steps per curve point
    history = summary["history"]
    summary["best_step"], _ = _best(summary)
    summary["elapsed"] = history[-1].get("elapsed") if history else None  # seconds of training, resumes included
    if as_json:
        print(json.dumps(summary))
        return
    console = common.console()
    console.print(_facts(str(path), summary))
    if history or summary["curve"]:
        console.print()
        console.print(_curves(history, summary, console.width))


def _facts(path: str, s: dict):
    """The two-column table of what the checkpoint holds."""
    from rich.table import Table

    from charrnn.cli.progress import duration, loss_text

    best = loss_text(s["best_val_loss"])
    if s["best_step"] is not None:
        best += f" at step {s['best_step']:,}"
    rows = [("checkpoint", path), ("format version", str(s["format_version"])),
            ("model", f"{s['cell']}, {s['layers']} x {s['hidden']}, embedding {s['embed']}, dropout {s['dropout']:g}"),
            ("parameters", f"{s['parameters']:,}"), ("vocab size", str(s["vocab_size"])),
            ("dtype", s["dtype"] if s["storage"] == s["dtype"] else f"{s['dtype']} (stored as {s['storage']})"),
            ("steps", "-" if s["steps"] is None else f"{s['steps']:,}"),
            ("training time", "-" if s["elapsed"] is None else duration(s["elapsed"])),
            ("seed", "-" if s["seed"] is None else str(s["seed"])), ("best val loss", best),
            ("val chars", "-" if not s.get("val_chars") else f"{s['val_chars']:,} scored per validation"),
            ("corpus", _corpus(s))]
    if s.get("init_from"):
        rows.append(("fine-tuned from", _origin(s["init_from"])))
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    return table


def _origin(origin: dict) -> str:
    """The source of a fine-tuned run on one line: its name as given, hash, steps, best validation, corpus."""
    parts = [f"sha256 {str(origin.get('sha256'))[:12]}"]
    if isinstance(origin.get("steps"), int):
        parts.append(f"{origin['steps']:,} steps")
    if isinstance(origin.get("best_val_loss"), (int, float)):
        parts.append(f"best val {origin['best_val_loss']:.4f}")
    if origin.get("corpus_sha256"):
        parts.append(f"corpus sha256 {str(origin['corpus_sha256'])[:12]}")
    return f"{origin.get('path')} ({', '.join(parts)})"


def _corpus(s: dict) -> str:
    """'1,234 characters from 3 files' (the file count is missing from older checkpoints)."""
    if s.get("corpus_chars") is None:
        return "-"
    files = s.get("corpus_files")
    return f"{s['corpus_chars']:,} characters" + ("" if files is None else f" from {files:,} file(s)")


def _curves(history: list[dict], s: dict, width: int):
    """Training and validation loss against steps, the best validation marked, as a braille plot with a legend."""
    from rich.console import Group
    from rich.text import Text

    from charrnn.cli.plot import Series, plot

    def finite(key):
        rows = [(h["step"], h[key]) for h in history if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]
        return [r[0] for r in rows], [r[1] for r in rows]

    curve = [(x, y) for x, y in s["curve"] if math.isfinite(y)]
    if curve:  # from step 1, finer than validation
        train = Series("train", [p[0] for p in curve], [p[1] for p in curve], style="cyan")
        every = s["curve_every"] or 1
        grain = f" (step 1, then the mean over every {every:,} steps)" if every > 1 else " (every step)"
    else:  # an older checkpoint: one mean per validation interval
        train, grain = Series("train", *finite("loss"), style="cyan"), " (mean per validation interval)"
    val = Series("val", *finite("val_loss"), style="magenta", glyph="•")
    mark = None
    first = min(train.xs + val.xs) if train.xs or val.xs else 0
    legend = Text(f"loss curves: nats/char against steps, from step {first:,}\n", style="bold")
    legend.append("⣀⡠ training", style="cyan").append(grain)
    if val.xs:
        legend.append("  ").append("• validation", style="magenta")
    if s["best_step"] is not None:
        mark = (s["best_step"], s["best_val_loss"], "◆", "bold red")
        legend.append("  ").append(f"◆ best {s['best_val_loss']:.4f} at step {s['best_step']:,}", style="bold red")
    width = max(min(width, 100), 40)
    return Group(legend, plot([train, val], width=width, height=10, mark=mark, y_format="{:.3f}", x_label="step"))
