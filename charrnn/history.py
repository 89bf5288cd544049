"""What a run remembers of its past, bounded whatever its length: the training-loss curve and the validation rows.

The curve: the first step's loss as a point of its own (the curve starts where training did, near ln V), then the
mean training loss over every `curve_every` steps. `curve_every` starts at 1 and doubles whenever the curve holds
2 x CURVE_POINTS of those means, each adjacent pair merged into one (their mean: both cover the same number of
steps), so a run of any length keeps between CURVE_POINTS and 2 x CURVE_POINTS evenly spaced points, about every
0.5-1 % of the steps so far. The grain depends on the steps made, not on the planned length, so k steps plus a
resume to N give the same curve as N steps straight (the running sum of an unfinished interval is part of the
resumable state), and a `--max-time` run gets the same treatment as any other.

The validation rows (`history`): one per validation (or per `--eval-every` steps without a validation split),
numbered by `n`. Up to MAX_HISTORY rows every validation is kept; past it, every other one, then every fourth
and so on (a row is kept when its n is a multiple of `history_every`, which doubles each time the bound is
reached), always with the latest row and the best validation's. So `meta` stays a few MiB, well within what a
checkpoint may hold (checkpoint/files.py, TEXT_CHARS), however many validations a run makes.

Every function here takes the run's RunState (train.py) and changes it in place.
"""

from __future__ import annotations

CURVE_POINTS = 100  # the curve keeps CURVE_POINTS to 2 x CURVE_POINTS evenly spaced means (and the first step)
MAX_HISTORY = 10_000  # validation rows kept whole; past this they are thinned


def add_loss(m, loss: float) -> None:
    """Count one step's training loss (m.step is that step): in the window of the next history row and in the
    curve."""
    m.window_sum += loss
    m.window_n += 1
    if m.step == 1:
        m.curve.append([1, loss])  # the first step alone: the curve starts at step 1
        return
    m.curve_sum += loss
    m.curve_n += 1
    if m.curve_n < m.curve_every:
        return
    m.curve.append([m.step, m.curve_sum / m.curve_n])
    m.curve_sum, m.curve_n = 0.0, 0
    first = 1 if m.curve[0][0] == 1 else 0  # a run resumed from an older checkpoint has no first-step point
    if len(m.curve) - first >= 2 * CURVE_POINTS:
        rest = m.curve[first:]
        m.curve[first:] = [[b[0], (a[1] + b[1]) / 2] for a, b in zip(rest[::2], rest[1::2])]
        m.curve_every *= 2


def window_mean(m) -> float | None:
    """The mean training loss since the last history row (None when no step was made since), and a new window."""
    mean = m.window_sum / m.window_n if m.window_n else None
    m.window_sum, m.window_n = 0.0, 0
    return mean


def add_row(m, row: dict) -> None:
    """Append a history row (it gets its number n), dropping the rows that the thinning no longer keeps."""
    row["n"] = m.validations
    m.validations += 1
    if m.history and not _kept(m, m.history[-1], len(m.history) - 1):  # the latest row so far, off the grid
        m.history.pop()
    m.history.append(row)
    while len(m.history) > MAX_HISTORY:
        m.history_every *= 2
        last = len(m.history) - 1
        m.history[:] = [r for i, r in enumerate(m.history) if i == last or _kept(m, r, i)]


def _kept(m, row: dict, i: int) -> bool:
    """Whether the thinning keeps `row` (at index i of history) once it is not the latest: on the grid, or the best
    validation's."""
    n = row.get("n", i)  # rows of older checkpoints carry no number: their place
    return n % m.history_every == 0 or (m.best_step is not None and row.get("step") == m.best_step)


def curve_points(meta: dict) -> list:
    """The curve to show: the stored points, then the unfinished interval's mean at the latest step."""
    points = [list(p) for p in meta.get("curve", [])]
    n = meta.get("curve_n", 0)
    if n:
        points.append([meta.get("step"), meta.get("curve_sum", 0.0) / n])
    return points
