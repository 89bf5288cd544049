"""`charrnn info`: what a checkpoint holds."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from charrnn.cli.common import CHECKPOINT_HELP, app, checkpoint_path, open_checkpoint


@app.command()
def info(
    checkpoint: str = typer.Option(None, "-c", "--checkpoint", help=CHECKPOINT_HELP, show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Format version, cell, sizes, parameter count, vocabulary, training steps, seed, validation, curve."""
    from charrnn.checkpoint import describe

    path = checkpoint_path(checkpoint)
    ckpt = open_checkpoint(path)
    summary = describe(ckpt)
    if as_json:
        print(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(show_header=False, box=None)
    table.add_row("checkpoint", str(path))
    for key, value in summary.items():
        if key != "history":
            table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    history = summary["history"]
    if history:
        curve = Table(title="training curve", title_justify="left")
        for column in ("step", "epoch", "chars", "elapsed", "loss", "val_loss", "lr"):
            curve.add_column(column.replace("_", " "), justify="right")
        for row in history[-20:] if len(history) > 20 else history:
            curve.add_row(*(_cell(row.get(c)) for c in ("step", "epoch", "chars", "elapsed", "loss", "val_loss",
                                                        "lr")))
        console.print(curve)
        if len(history) > 20:
            console.print(f"(last 20 of {len(history)} entries; --json has them all)")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)
