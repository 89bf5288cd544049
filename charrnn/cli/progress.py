"""Training progress on stderr: a tqdm bar on a terminal, plain lines every few seconds otherwise, a rich summary."""

from __future__ import annotations

import math
import sys
import time

from charrnn.cli.common import quiet_stderr, say

PLAIN_EVERY = 5.0  # seconds between plain progress lines when stderr is not a terminal


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _bits(nats: float | None) -> str:
    return "-" if nats is None else f"{nats:.4f} ({nats / math.log(2):.3f} bits)"


class Progress:
    """Shows each `Step`; call close() at the end."""

    def __init__(self, total_steps: int | None, first_step: int, max_time: float | None):
        self.total, self.first, self.max_time = total_steps, first_step, max_time
        self.last_line, self.val = 0.0, None
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=first_step, unit="step", file=sys.stderr, dynamic_ncols=True,
                            smoothing=0.1)

    def _eta(self, step) -> str:
        if self.total and step.step:
            done = max(step.step - self.first, 1)  # steps made in this invocation, which `elapsed` covers
            remaining = step.elapsed / done * (self.total - step.step)
        elif self.max_time:
            remaining = self.max_time - step.elapsed
        else:
            return "?"
        if self.max_time:
            remaining = min(remaining, self.max_time - step.elapsed)
        return _duration(max(remaining, 0.0))

    def update(self, step) -> None:
        if step.val_loss is not None:
            self.val = step.val_loss
        if self.bar is not None:
            self.bar.update(1)
            val = "-" if self.val is None else f"{self.val:.3f}"
            self.bar.set_postfix_str(f"loss {step.loss:.3f} val {val} {step.chars_per_sec:,.0f} chars/s", refresh=False)
            return
        now = time.monotonic()
        if now - self.last_line >= PLAIN_EVERY or step.val_loss is not None or step.stop:
            self.last_line = now
            of = f"/{self.total}" if self.total else ""
            say(f"step {step.step}{of}  epoch {step.epoch:.2f}  loss {step.loss:.4f}  val {_bits(self.val)}  "
                f"lr {step.lr:.3g}  {step.chars_per_sec:,.0f} chars/s  eta {self._eta(step)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summary(rows: list[tuple[str, str]]) -> None:
    """A short two-column table on stderr."""
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    try:
        Console(stderr=True, highlight=False).print(table)
    except BrokenPipeError:  # nobody reads stderr any more: the checkpoint and the path on stdout still count
        quiet_stderr()


__all__ = ["Progress", "summary", "_bits", "_duration"]
