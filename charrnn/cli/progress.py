"""Progress on stderr: a tqdm bar on a terminal, plain lines every few seconds otherwise, a rich summary.

The training bar builds its own line to fit the terminal (60 columns up): the fields are written from the most to
the least important and the less important ones are shortened or dropped until the line fits, so it is never cut;
tqdm draws the bar in the room that is left, redraws in place and leaves the last line behind. The run ends at
whichever bound comes first (--steps/--epochs as a step total, --max-time as a time budget); the percentage and
the ETA follow the bound expected to end it first. Losses are in nats/char everywhere, with bits in the plain lines.
Nothing is shown under --quiet.
"""

from __future__ import annotations

import math
import os
import sys
import time

from charrnn.cli import common
from charrnn.cli.common import quiet_stderr, say

PLAIN_EVERY = 5.0  # seconds between plain progress lines when stderr is not a terminal
REDRAW_EVERY = 0.2  # seconds between redraws of the bar
MIN_BAR = 10  # columns the bar keeps before the line gives up fields


def duration(seconds: float) -> str:
    """A duration with its unit, for people: 0.4s, 59s, 1m05s, 2h03m."""
    if seconds < 1:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def loss_text(nats: float | None) -> str:
    """A loss in nats/char with its bits: `1.2345 (1.781 bits)`; `-` when there is none."""
    return "-" if nats is None else f"{nats:.4f} ({nats / math.log(2):.3f} bits)"


def terminal_width(stream=None) -> int:
    """Columns of the terminal `stream` (stderr by default) writes to: $COLUMNS if set, else the terminal's, else 80."""
    try:
        return max(int(os.environ["COLUMNS"]), 1)
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size((stream or sys.stderr).fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80


def shows_bar(stream=None) -> bool:
    """Whether progress on `stream` (stderr by default) is a bar: a terminal, and not --quiet."""
    stream = stream or sys.stderr
    return not common.QUIET and hasattr(stream, "isatty") and stream.isatty()


def bar(total: float | None, desc: str, unit: str = "char", **kwargs):
    """A tqdm bar in charrnn's style for any long job (evaluation, preparing a corpus), or None off a terminal.

    `desc` names the job ("eval"); `total` counts `unit`s (characters by default; None if unknown). Numbers are
    scaled (1.2M), the width follows the terminal, the bar is left behind when closed. Use it as a tqdm:
    `b = bar(n, "eval")`, then `if b: b.update(k)` and `b.close()` at the end. None under --quiet or when stderr
    is not a terminal (write plain lines with `say` there if the job is long).
    """
    if not shows_bar():
        return None
    from tqdm import tqdm

    fmt = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {elapsed}<{remaining} {rate_fmt}"
    if total is None:
        fmt = "{desc} {n_fmt} {unit} {elapsed} {rate_fmt}"
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr, bar_format=fmt,
                dynamic_ncols=True, mininterval=REDRAW_EVERY, **kwargs)


def estimate(step, total: int | None, first: int, max_time: float | None) -> tuple[float | None, float | None, bool]:
    """(fraction done, seconds left, by time?) of the bound expected to end the run first.

    Steps: the average pace of this invocation (steps since `first` over `elapsed`) times the steps left. Time:
    the budget left. Each is None when its bound is not set (or no step has been timed yet).
    """
    by_steps = by_time = None
    done = step.step - first  # steps made in this invocation, which `elapsed` covers
    if total and done > 0 and step.elapsed > 0:
        by_steps = step.elapsed / done * max(total - step.step, 0)
    if max_time:
        by_time = max(max_time - step.elapsed, 0.0)
    if by_time is not None and (by_steps is None or by_time < by_steps or not total):
        return min(step.elapsed / max_time, 1.0), by_time, True
    if total:
        return min(step.step / total, 1.0), by_steps, False
    return None, None, False


def _clock(seconds: float) -> str:
    from tqdm import tqdm

    return tqdm.format_interval(seconds)


def bar_line(step, total: int | None, first: int, max_time: float | None, val: float | None, width: int) -> str:
    """The training bar's text for `width` columns, with `{bar}` where tqdm draws the bar (braces escaped)."""
    frac, left, by_time = estimate(step, total, first, max_time)
    pct = "  ?%" if frac is None else f"{math.floor(100 * frac):3d}%"  # 100% only when done
    count = f"{step.step}/{total}" if total and not by_time else f"step {step.step}"
    clock = f"{_clock(step.elapsed)}/{_clock(max_time)}" if by_time else _clock(step.elapsed)
    eta = f"eta {'?' if left is None else _clock(left)}"
    val_s = "-" if val is None else f"{val:.3f}"
    speed = f"{step.chars_per_sec:,.0f} chars/s"
    fields = {"count": count, "clock": clock, "eta": eta, "loss": f"loss {step.loss:.3f}", "val": f"val {val_s}",
              "unit": "nats/char", "speed": speed}
    order = ("count", "clock", "eta", "loss", "val", "unit", "speed")
    # cheapest first: what each shortening gives up
    shorter = [("speed", _short_speed(step.chars_per_sec)), ("clock", None if not by_time else clock),
               ("unit", "nats"), ("count", None if by_time else count), ("speed", None),
               ("clock", None), ("count", None), ("loss", None), ("unit", None)]
    bar_min = MIN_BAR
    for change in [None, *shorter, "bar"]:
        if change == "bar":
            bar_min = 3
        elif change is not None:
            fields[change[0]] = change[1]
        right = " ".join(fields[k] for k in order if fields[k])
        if len(pct) + 2 + bar_min + 1 + len(right) <= width:
            break
    text = f"{pct}|{{bar}}| {right.replace('{', '{{').replace('}', '}}')}"
    return text


def _short_speed(chars_per_sec: float) -> str:
    from tqdm import tqdm

    return f"{tqdm.format_sizeof(chars_per_sec)} chars/s"


class Progress:
    """Shows each `Step` on stderr; call close() at the end. `total_steps`: the step bound (None: time only);
    `first_step`: where this invocation started (a resumed run); `max_time`: the time budget in seconds or None."""

    def __init__(self, total_steps: int | None, first_step: int, max_time: float | None):
        self.total, self.first, self.max_time = total_steps, first_step, max_time
        self.last_line, self.last_draw, self.val = 0.0, 0.0, None
        self.undrawn = None  # the latest step, until the bar shows it
        self.bar = None
        self.quiet = common.QUIET
        if shows_bar():
            from tqdm import tqdm

            self.bar = tqdm(total=1000, file=sys.stderr, bar_format="  0%|{bar}| eta ?", ncols=self._width(),
                            leave=True, mininterval=REDRAW_EVERY)

    @staticmethod
    def _width() -> int:
        return max(terminal_width() - 1, 20)  # one column spare: a full line makes some terminals wrap early

    def update(self, step) -> None:
        if step.val_loss is not None:
            self.val = step.val_loss
        if self.quiet:
            return
        now = time.monotonic()
        if self.bar is not None:
            self.undrawn = step
            if now - self.last_draw >= REDRAW_EVERY or step.val_loss is not None or step.stop:
                self.last_draw = now
                self._draw(step)
            return
        if now - self.last_line >= PLAIN_EVERY or step.val_loss is not None or step.stop:
            self.last_line = now
            of = f"/{self.total}" if self.total else ""
            _, left, _ = estimate(step, self.total, self.first, self.max_time)
            say(f"step {step.step}{of}  epoch {step.epoch:.2f}  loss {loss_text(step.loss)}  "
                f"val {loss_text(self.val)}  lr {step.lr:.3g}  {step.chars_per_sec:,.0f} chars/s  "
                f"eta {'?' if left is None else duration(left)}")

    def _draw(self, step) -> None:
        width = self._width()
        frac, _, _ = estimate(step, self.total, self.first, self.max_time)
        self.bar.ncols = width
        self.bar.bar_format = bar_line(step, self.total, self.first, self.max_time, self.val, width)
        self.bar.n = round(1000 * (frac or 0.0))
        self.undrawn = None
        try:
            self.bar.refresh()
        except BrokenPipeError:  # nobody reads stderr any more: training goes on
            quiet_stderr()
            self.bar.disable = True

    def close(self) -> None:
        if self.bar is not None:
            try:
                if self.undrawn is not None:  # the bar left behind shows where the run ended
                    self._draw(self.undrawn)
                self.bar.close()
            except BrokenPipeError:
                quiet_stderr()
            self.bar = None


def summary(rows: list[tuple[str, str]]) -> None:
    """A short two-column table on stderr (nothing under --quiet)."""
    if common.QUIET:
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    try:
        common.console(stderr=True).print(table)
    except BrokenPipeError:  # nobody reads stderr any more: the checkpoint and the path on stdout still count
        quiet_stderr()


__all__ = ["Progress", "bar", "bar_line", "duration", "estimate", "loss_text", "summary", "terminal_width"]
