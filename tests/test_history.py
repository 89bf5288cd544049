"""What a run remembers, bounded: the training-loss curve from the first step (finer than validation, exact across
a resume) and the validation rows, thinned so that `meta` always fits what a checkpoint may hold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from charrnn import data, history
from charrnn.checkpoint import load, save
from charrnn.checkpoint.files import TEXT_CHARS
from charrnn.cli import app
from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus import Corpus
from charrnn.train import Run, RunState

TEXT = "the quick brown fox jumps over the lazy dog, then naps in the sun.\n" * 12


def make_run(resume=None, **kw) -> Run:
    vocab = data.Vocab.from_text(TEXT)
    mc = ModelConfig(cell="gru", hidden=8, layers=1, embed=4, vocab_size=len(vocab))
    tc = TrainConfig(**{"batch": 4, "seq": 8, "seed": 3, "val_frac": 0.1, "eval_every": 100, "lr": 0.01, **kw})
    return Run(mc, tc, Corpus(vocab.encode(TEXT), vocab.codes, "hash"), resume=resume)


def test_a_400_step_run_has_a_curve_from_step_1_finer_than_validation():
    run = make_run(steps=400)
    losses = [s.loss for s in run.steps()]  # losses[i] is step i + 1's
    m = run.meta
    assert [h["step"] for h in m.history] == [100, 200, 300, 400]  # validation: 4 points
    points = history.curve_points(m.to_dict())
    assert points[0] == [1, losses[0]]  # the first step, alone
    every = m.curve_every
    assert every == 2 and 100 <= len(m.curve) - 1 < 2 * history.CURVE_POINTS  # every 0.5 % of the run
    for (prev, _), (step, mean) in zip(m.curve, m.curve[1:]):
        assert step - prev == (every if prev > 1 else step - 1)
        assert mean == pytest.approx(np.mean(losses[step - (step - prev):step]), rel=1e-12)
    assert [step for step, _ in m.curve[1:]] == list(range(1 + every, 400, every))
    assert points[-1][0] == 400 and points[-1][1] == pytest.approx(np.mean(losses[m.curve[-1][0]:]), rel=1e-12)
    assert [h["loss"] for h in m.history] == pytest.approx([np.mean(losses[i:i + 100]) for i in (0, 100, 200, 300)],
                                                           rel=1e-12)


def test_the_grain_doubles_as_the_run_grows_and_the_first_step_stays():
    m = RunState()
    for step in range(1, 100_001):
        m.step = step
        history.add_loss(m, 1.0 / step)
    assert m.curve[0] == [1, 1.0] and history.CURVE_POINTS <= len(m.curve) - 1 < 2 * history.CURVE_POINTS
    spans = {b[0] - a[0] for a, b in zip(m.curve[1:], m.curve[2:])}
    assert spans == {m.curve_every} and m.curve_every == 512


@pytest.mark.parametrize("k", [1, 150, 200, 201, 333])
def test_k_steps_and_a_resume_give_the_curve_and_history_of_n_straight(k):
    """The curve for any k; the history too when step k is a validation step of the straight run (a run that
    ends validates at its last step, so a run bounded at k has one more row)."""
    straight = make_run(steps=400)
    for _ in straight.steps():
        pass
    first = make_run(steps=k)
    for _ in first.steps():
        pass
    resumed = make_run(steps=400, resume=first.checkpoint())
    for _ in resumed.steps():
        pass
    a, b = straight.meta.to_dict(), resumed.meta.to_dict()
    for key in ("curve", "curve_every", "curve_sum", "curve_n"):
        assert a[key] == b[key], key
    if k % 100:
        return
    for key in ("window_sum", "window_n", "validations", "history_every"):
        assert a[key] == b[key], key
    drop = ("elapsed",)
    assert ([{k: v for k, v in h.items() if k not in drop} for h in a["history"]]
            == [{k: v for k, v in h.items() if k not in drop} for h in b["history"]])


def test_info_draws_the_curve_from_step_1(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "m.npz"
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(corpus), "-o", str(out), "--hidden", "8", "--embed", "4", "--layers",
                               "1", "--batch", "4", "--seq", "8", "--steps", "60", "--eval-every", "50",
                               "--seed", "1"]).exit_code == 0
    shown = runner.invoke(app, ["info", "-c", str(out)], env={"COLUMNS": "100"}).stdout
    assert "against steps, from step 1" in shown and "training (every step)" in shown
    axis = shown.rstrip().splitlines()[-1].split()
    assert axis[:2] == ["step", "1"] and axis[-2:] == ["step", "60"]
    report = json.loads(runner.invoke(app, ["info", "-c", str(out), "--json"]).stdout)
    assert [p[0] for p in report["curve"]] == list(range(1, 61)) and report["curve_every"] == 1
    assert [h["step"] for h in report["history"]] == [50, 60]


# --------------------------------------------------------------------------------------- a history that fits


def test_a_history_across_the_bound_keeps_the_best_and_the_latest_and_saves_and_loads(tmp_path):
    """60,000 validations (a long run validating often), made synthetically: the rows of every validation would be
    more JSON than a checkpoint may hold, the thinned history is evenly spaced, keeps the best and the latest, and
    the checkpoint saves and loads."""
    run = make_run(steps=10)
    for _ in run.steps():
        pass
    m, rng, every_row = run.meta, np.random.default_rng(0), []
    m.history, m.validations, m.best_val_loss, m.best_step = [], 0, None, None  # the 10 steps' validation gone
    best = 5_000 + 123  # the best validation comes early, and is kept through every thinning
    for i in range(60_000):
        m.step, m.elapsed = 100 * (i + 1), 0.5 * i
        val = 1.0 if i == best else 2.0 + float(rng.random())
        if m.best_val_loss is None or val < m.best_val_loss:
            m.best_val_loss, m.best_step = val, m.step
        row = {"step": m.step, "epoch": round(i / 7, 4), "chars": 3200 * (i + 1), "elapsed": round(m.elapsed, 3),
               "loss": 2.0 + float(rng.random()), "val_loss": val, "lr": 0.002 + 1e-3 * float(rng.random())}
        every_row.append(dict(row))
        history.add_row(m, row)
    assert len(json.dumps(every_row)) > TEXT_CHARS["meta"]  # unthinned, this run could not be saved
    rows = m.history
    assert len(rows) <= history.MAX_HISTORY and m.history_every == 8
    assert rows[-1]["step"] == 6_000_000 and any(r["step"] == m.best_step == 100 * (best + 1) for r in rows)
    grid = [r["n"] for r in rows if r["n"] % m.history_every == 0]
    assert grid == list(range(0, 60_000, m.history_every)) and len(rows) - len(grid) <= 2  # + the best, the latest
    assert all(r == every_row[r["n"]] | {"n": r["n"]} for r in rows)  # rows kept as they were made
    ckpt = run.checkpoint()
    save(tmp_path / "m.npz", ckpt)
    loaded = load(tmp_path / "m.npz")
    assert loaded.meta["history"] == rows and len(json.dumps(loaded.meta)) < TEXT_CHARS["meta"]
    resumed = make_run(steps=6_000_001, resume=loaded)  # and the run resumes from it
    assert resumed.meta.history == rows and resumed.meta.validations == 60_000


def test_a_long_interval_between_validations_is_a_sum_not_a_list():
    m = RunState()
    for step in range(1, 1_000_001):
        m.step = step
        history.add_loss(m, 1.5)
    assert m.window_n == 1_000_000 and len(json.dumps(m.to_dict())) < 20_000


@pytest.mark.parametrize("bad", [{"curve": "x"}, {"curve": [[1]]}, {"curve": [[1, float("nan")]]},
                                 {"curve": [[-1, 2.0]]}, {"curve_every": 0}, {"history_every": True},
                                 {"curve_n": -1}, {"window_sum": float("inf")}, {"history": [{"n": "1"}]}])
def test_a_hostile_curve_or_thinning_state_is_refused(tmp_path, bad):
    from charrnn.checkpoint import CheckpointError

    run = make_run(steps=3)
    for _ in run.steps():
        pass
    ckpt = run.checkpoint()
    ckpt.meta.update(bad)
    with pytest.raises(CheckpointError, match="meta"):
        save(tmp_path / "m.npz", ckpt)
