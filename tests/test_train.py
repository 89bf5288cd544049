"""Training runs (charrnn.train) without the CLI: batch fitting, evaluation, bounds, validation and best weights,
patience, divergence, and exact resume (N steps straight == k steps + checkpoint + resume to N)."""

import math
import random

import numpy as np
import pytest

from charrnn import checkpoint, data, model, train
from charrnn.corpus import Corpus
from charrnn.config import DEFAULT_STEPS, ModelConfig, TrainConfig
from charrnn.optim import learning_rate
from charrnn.train import Diverged, EvalResult, Run, eval_streams, evaluate, fit_batch, trained_chars

WORDS = "the cat sat on a mat , and a dog ran to the cat . then they slept".split()
TEXT = " ".join(random.Random(0).choices(WORDS, k=180)) + "\n"  # ~680 characters, 19 distinct


def make_run(text=TEXT, resume=None, **kw):
    """A tiny run: H 8, 1 layer, D 4, B 4, T 8, 10% validation; keyword arguments override either config."""
    vocab = data.Vocab.from_text(text)
    model_kw = {k: kw.pop(k) for k in ("cell", "hidden", "layers", "embed", "dropout") if k in kw}
    mc = ModelConfig(**{"hidden": 8, "layers": 1, "embed": 4, **model_kw}, vocab_size=len(vocab))
    tc = TrainConfig(**{"batch": 4, "seq": 8, "seed": 0, "val_frac": 0.1, "eval_every": 5, **kw})
    return Run(mc, tc, Corpus(vocab.encode(text), vocab.codes, "corpus-hash"), resume=resume)


def snapshot(params):
    return {k: v.copy() for k, v in params.items()}


def assert_params_equal(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ------------------------------------------------------------------------------------------ batches and eval


@pytest.mark.parametrize("n", [2, 9, 10, 25, 26, 64, 333])
@pytest.mark.parametrize("seq", [1, 4, 8, 24])
@pytest.mark.parametrize("batch", [1, 3, 32])
def test_fit_batch_leaves_every_stream_at_least_one_batch(n, seq, batch):
    if n < seq + 1:
        with pytest.raises(ValueError, match=rf"--seq {seq} needs \({seq + 1}\)"):
            fit_batch(n, batch, seq)
        return
    B = fit_batch(n, batch, seq)
    assert 1 <= B <= batch
    assert data.batches_per_epoch(data.streams(np.arange(n), B), seq) >= 1
    best = max(trained_chars(n, b, seq) for b in range(1, batch + 1))
    assert trained_chars(n, B, seq) >= 0.95 * best  # little of the text is left out ...
    assert all(trained_chars(n, b, seq) < 0.95 * best for b in range(B + 1, batch + 1))  # ... with the most streams


def test_fit_batch_keeps_the_batch_on_a_long_text_and_covers_a_short_one():
    assert fit_batch(1_000_000, 32, 64) == 32
    n = 3960  # corpora/bears.txt less a 10% validation tail
    B = fit_batch(n, 32, 64)
    assert trained_chars(n, 32, 64) / n < 0.55  # what the requested batch would have trained on
    assert trained_chars(n, B, 64) / n > 0.9 and B >= 16


def test_a_short_corpus_trains_with_fewer_streams():
    text = "hello world, hello there\n"  # 25 characters; 24 for training with --val-frac 0.05 rounding to 1
    run = make_run(text, batch=32, seq=4, steps=3, val_frac=0.05)
    assert run.tc.batch == 1 and run.per_epoch == 5  # one stream covers 20 of 24 characters; 4 streams only 16
    assert [s.step for s in run.steps()] == [1, 2, 3]


def test_evaluate_equals_one_pass_over_each_whole_stream():
    run = make_run(dtype="float64")
    ids = data.Vocab(run.vocab).encode(TEXT)
    result = evaluate(run.params, run.mc, ids, batch=3, seq=7, min_stream=2)  # chunks of 7, the state carried
    streams = data.streams(ids, 3)  # (3,S)
    total, _ = model.loss(run.params, run.mc, streams[:, :-1], streams[:, 1:], model.init_state(run.mc, 3, np.float64))
    assert result.streams == 3 and result.chars == 3 * (streams.shape[1] - 1)
    assert result.nats_per_char == pytest.approx(total / result.chars, rel=1e-12)
    assert result.bits_per_char == pytest.approx(result.nats_per_char / math.log(2))
    assert result.perplexity == pytest.approx(math.exp(result.nats_per_char))


def test_evaluate_uses_fewer_streams_for_short_texts_and_needs_two_characters():
    run = make_run()
    ids = data.Vocab(run.vocab).encode("the cat")
    assert evaluate(run.params, run.mc, ids, batch=32, min_stream=2).streams == 3  # a stream needs 2 characters
    assert evaluate(run.params, run.mc, ids, batch=32) == evaluate(run.params, run.mc, ids, batch=1)  # one stream
    assert evaluate(run.params, run.mc, ids[:2], batch=32) == evaluate(run.params, run.mc, ids[:2], batch=1)
    with pytest.raises(ValueError, match="at least 2 characters"):
        evaluate(run.params, run.mc, ids[:1])


@pytest.mark.parametrize("n, batch, max_chars, streams", [
    (1, 32, None, 1), (87, 32, None, 1), (1_999, 32, None, 1), (2_000, 32, None, 2), (5_000, 32, None, 5),
    (1_000_000, 32, None, 32), (1_000_000, 8, None, 8), (1_000_000, 32, 4_000, 4), (1_000_000, 32, 250_000, 32),
    (3_000, 32, 250_000, 3)])
def test_eval_streams_are_never_shorter_than_1000_characters(n, batch, max_chars, streams):
    assert eval_streams(n, batch, max_chars) == streams


def test_a_bounded_evaluation_of_a_long_split_keeps_its_streams_1000_characters_long():
    run = make_run()
    ids = np.resize(data.Vocab(run.vocab).encode(TEXT), 100_000)
    result = evaluate(run.params, run.mc, ids, batch=32, max_chars=4_000)  # 4 streams, the first 1,000 of each
    assert (result.streams, result.chars) == (4, 4 * 999)


def test_initial_validation_loss_is_about_ln_v():
    run = make_run(hidden=16)
    val = run.validate()
    assert abs(val - math.log(len(run.vocab))) < 0.5


# ---------------------------------------------------------------------------------------------------- bounds


def test_without_any_bound_the_documented_default_applies():
    assert make_run().total_steps == DEFAULT_STEPS
    assert make_run(max_time=60.0).total_steps is None  # a time budget alone bounds the run
    assert make_run(steps=7, epochs=100.0).total_steps == 7


def test_steps_bound_stops_exactly_and_says_why():
    got = list(make_run(steps=7).steps())
    assert [s.step for s in got] == list(range(1, 8))
    assert [s.stop for s in got] == [None] * 6 + ["steps"]
    assert all(s.total_steps == 7 and s.chars_per_sec > 0 and math.isfinite(s.loss) for s in got)


def test_epochs_bound_wraps_around_with_a_fresh_state():
    run = make_run(epochs=2.0, val_frac=0.0)
    per = run.per_epoch
    got = []
    for s in run.steps():
        got.append(s)
        if s.step == per:  # the streams are used up: cursor back to 0, zero hidden state
            assert run.meta.cursor == 0 and run.meta.epochs_done == 1
            assert all(not np.any(a) for layer in run.state for a in layer)
        elif s.step < per:
            assert any(np.any(a) for layer in run.state for a in layer)
    assert len(got) == 2 * per and got[-1].stop == "epochs" and got[-1].epoch == 2.0
    assert [s.epoch for s in got[:2]] == [1 / per, 2 / per]


def test_fractional_epochs_round_up_to_whole_steps():
    run = make_run(epochs=0.5, val_frac=0.0)
    assert len(list(run.steps())) == math.ceil(0.5 * run.per_epoch)


def test_max_time_ends_the_run_after_the_budget():
    got = list(make_run(max_time=0.3, val_frac=0.0).steps())
    assert got[-1].stop == "time" and 0.3 <= got[-1].elapsed < 5.0
    assert all(s.stop is None for s in got[:-1])


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_each_step_uses_the_scheduled_learning_rate(schedule):
    got = list(make_run(steps=12, warmup=3, schedule=schedule, lr=0.01).steps())
    assert [s.lr for s in got] == [learning_rate(0.01, schedule, k / 12, k, 3) for k in range(12)]


# ------------------------------------------------------------------------------------ validation and patience


def scripted(monkeypatch, losses):
    """Make every validation return the next of `losses`."""
    it = iter(losses)
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: EvalResult(next(it), 10, 1))


def test_patience_stops_after_k_validations_without_improvement(monkeypatch):
    scripted(monkeypatch, [3.0, 2.5, 2.6, 2.4, 2.7, 2.8, 2.9, 1.0])
    run = make_run(steps=1000, eval_every=2, patience=3)
    seen = {}
    for s in run.steps():
        seen[s.step] = snapshot(run.params)
        assert (s.val_loss is not None) == (s.step % 2 == 0)
    assert s.step == 14 and s.stop == "patience"  # the 7th validation is the 3rd without improvement
    assert run.meta.best_val_loss == 2.4 and run.meta.best_step == 8 and run.meta.bad_evals == 3
    ckpt = run.checkpoint()
    assert_params_equal(ckpt.params, seen[8])  # what sample and eval use: the best weights
    assert_params_equal({k[len("params/"):]: v for k, v in ckpt.resume.items() if k.startswith("params/")},
                        seen[14])  # what a resume continues from: the latest weights
    vals = [h["val_loss"] for h in run.meta.history]
    assert vals == [3.0, 2.5, 2.6, 2.4, 2.7, 2.8, 2.9]


def test_improved_flags_the_steps_that_set_a_new_best(monkeypatch):
    scripted(monkeypatch, [3.0, 3.1, 2.0, 2.0, 1.5])
    got = [s for s in make_run(steps=10, eval_every=2).steps() if s.val_loss is not None]
    assert [s.improved for s in got] == [True, False, True, False, True]
    assert [s.best_val_loss for s in got] == [3.0, 3.0, 2.0, 2.0, 1.5]


def test_patience_counts_on_across_a_resume(monkeypatch, tmp_path):
    scripted(monkeypatch, [3.0, 2.5, 2.6, 2.4, 2.7, 2.8, 2.9])
    run = make_run(steps=1000, eval_every=2, patience=3)
    for s in run.steps():
        if s.step == 10:  # stopped (as by Ctrl-C) after the 5th validation: one bad so far
            break
    checkpoint.save(tmp_path / "m.npz", run.checkpoint())
    again = make_run(steps=1000, eval_every=2, patience=3, resume=checkpoint.load(tmp_path / "m.npz"))
    assert again.meta.bad_evals == 1
    got = list(again.steps())
    assert got[-1].step == 14 and got[-1].stop == "patience"
    assert again.meta.best_step == 8


def test_without_validation_the_checkpoint_holds_the_latest_weights():
    run = make_run(steps=6, val_frac=0.0)
    list(run.steps())
    ckpt = run.checkpoint()
    assert run.best is None and ckpt.meta["best_val_loss"] is None
    assert_params_equal(ckpt.params, run.params)


def test_a_worsening_validation_keeps_the_best_weights():
    """Train on a's, validate on b's: every step makes validation worse, so the best weights are step 1's."""
    run = make_run("a" * 300 + "b" * 34, steps=12, eval_every=1, lr=0.05)  # validation: the last 33 b's
    seen, vals = {}, []
    for s in run.steps():
        seen[s.step] = snapshot(run.params)
        vals.append(s.val_loss)
    assert vals == sorted(vals) and vals[0] < vals[-1] and run.meta.best_step == 1
    ckpt = run.checkpoint()
    assert_params_equal(ckpt.params, seen[1])
    assert_params_equal({k[len("params/"):]: v for k, v in ckpt.resume.items() if k.startswith("params/")}, seen[12])
    assert evaluate(ckpt.params, run.mc, run.val_ids, run.tc.batch).nats_per_char == run.meta.best_val_loss


# ------------------------------------------------------------------------------------------------ divergence


@pytest.mark.parametrize("lr, dtype", [(1e30, "float32"), (1e30, "float64"), (1e300, "float32")])
def test_divergence_raises_one_line_and_leaves_the_failing_step_unapplied(lr, dtype):
    run = make_run(steps=50, lr=lr, clip=0.0, optimizer="sgd", dtype=dtype)
    before = None
    with np.errstate(all="ignore"), pytest.raises(Diverged) as err:
        for s in run.steps():
            before = snapshot(run.params)
    message = str(err.value)
    assert "\n" not in message and "diverged at step" in message and "--lr" in message
    assert before is not None  # the first step (a sane loss) went through
    assert_params_equal(run.params, before)
    assert run.meta.step == s.step


# ------------------------------------------------------------------------------------------------ exact resume


def run_to_end(run):
    for _ in run.steps():
        pass
    return run


def assert_same_run(a: Run, b: Run):
    ca, cb = a.checkpoint(), b.checkpoint()
    assert_params_equal(ca.params, cb.params)
    assert ca.resume.keys() == cb.resume.keys()
    for k in ca.resume:
        np.testing.assert_array_equal(ca.resume[k], cb.resume[k], err_msg=k)
    keys = ("step", "cursor", "epochs_done", "chars", "best_val_loss", "best_step", "bad_evals", "rng", "curve",
            "curve_every", "curve_sum", "curve_n", "window_sum", "window_n", "history_every", "validations")
    assert {k: ca.meta[k] for k in keys} == {k: cb.meta[k] for k in keys}
    strip = [{k: v for k, v in h.items() if k != "elapsed"} for h in ca.meta["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "elapsed"} for h in cb.meta["history"]]


@pytest.mark.parametrize("cell, dtype, optimizer, k", [
    ("lstm", "float32", "adam", 5),
    ("gru", "float64", "rmsprop", 7),
    ("rnn", "float32", "adagrad", 12),
])
def test_interrupted_and_resumed_equals_straight(tmp_path, cell, dtype, optimizer, k):
    """Cosine schedule with warm-up, dropout, validation and an epoch wrap: the split must not show anywhere."""
    kw = dict(cell=cell, dtype=dtype, optimizer=optimizer, layers=2, dropout=0.25, steps=20, schedule="cosine",
              warmup=4, eval_every=3, lr=0.01)
    straight = run_to_end(make_run(**kw))
    assert straight.meta.epochs_done >= 1 and straight.per_epoch != k
    first = make_run(**kw)
    for s in first.steps():
        if s.step == k:
            break  # as Ctrl-C does: the step is finished, then saved
    checkpoint.save(tmp_path / "m.npz", first.checkpoint())
    resumed = run_to_end(make_run(**kw, resume=checkpoint.load(tmp_path / "m.npz")))
    assert_same_run(resumed, straight)


def test_resume_exactly_at_an_epoch_boundary(tmp_path):
    kw = dict(steps=20, dropout=0.5, layers=2, val_frac=0.0, optimizer="sgd", momentum=0.9, lr=0.05)
    straight = run_to_end(make_run(**kw))
    first = make_run(**kw)
    for s in first.steps():
        if s.step == first.per_epoch:
            break
    assert first.meta.cursor == 0
    checkpoint.save(tmp_path / "m.npz", first.checkpoint())
    assert_same_run(run_to_end(make_run(**kw, resume=checkpoint.load(tmp_path / "m.npz"))), straight)


def test_resume_needs_training_state(tmp_path):
    ckpt = make_run(steps=1).checkpoint()
    ckpt.resume = {}
    with pytest.raises(ValueError, match="no training state"):
        make_run(resume=ckpt)


def test_a_finished_run_resumed_with_the_same_bound_makes_no_step():
    run = run_to_end(make_run(steps=3))
    again = make_run(steps=3, resume=run.checkpoint())
    assert list(again.steps()) == [] and again.meta.step == 3


def test_a_blow_up_is_caught_by_validation_before_anything_is_saved():
    """Validation follows the update of its step: a blown-up model must not become the checkpoint's best."""
    run = make_run(steps=50, lr=1e30, clip=0.0, optimizer="sgd", eval_every=1)
    with np.errstate(all="ignore"), pytest.raises(Diverged, match=r"at step 1 \(validation loss"):
        next(run.steps())
    assert run.best is None and run.meta.best_val_loss is None


@pytest.mark.parametrize("damage", ["drop params", "shrink params", "shrink state", "drop rng", "drop optimizer"])
def test_damaged_training_state_is_a_one_line_value_error(damage):
    ckpt = run_to_end(make_run(steps=2)).checkpoint()
    resume, meta = dict(ckpt.resume), dict(ckpt.meta)
    if damage == "drop params":
        del resume["params/decoder.bias"]
    elif damage == "shrink params":
        resume["params/decoder.bias"] = resume["params/decoder.bias"][:1]  # would broadcast silently
    elif damage == "shrink state":
        resume["state/0/0"] = resume["state/0/0"][:1]
    elif damage == "drop rng":
        del meta["rng"]
    else:
        del resume["optim/m/decoder.bias"]
    ckpt.resume, ckpt.meta = resume, meta
    with pytest.raises(ValueError, match="training state cannot be resumed") as err:
        make_run(steps=4, resume=ckpt)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------- run state and interrupts


def test_the_run_state_is_the_checkpoints_meta_and_an_older_meta_still_resumes(tmp_path):
    """meta is RunState.to_dict() plus the RNG state; a meta without the keys later versions added (window,
    val_chars, ...) and with keys this version does not know still resumes, to the same weights."""
    kw = dict(steps=9, eval_every=4, dropout=0.25, layers=2)
    straight = run_to_end(make_run(**kw))
    first = make_run(**kw)
    for s in first.steps():
        if s.step == 6:
            break
    ckpt = first.checkpoint()
    assert ckpt.meta == dict(first.meta.to_dict(), rng=first.rng.bit_generator.state)
    assert train.RunState.from_dict(ckpt.meta) == first.meta
    later = ("val_chars", "corpus_chars", "window_sum", "window_n", "curve", "curve_every", "curve_sum", "curve_n",
             "history_every", "validations")
    older = {k: v for k, v in ckpt.meta.items() if k not in later}
    ckpt.meta = dict(older, window=[first.meta.window_sum], some_future_key=1)  # a list of losses, as before
    resumed = run_to_end(make_run(**kw, resume=ckpt))
    assert_params_equal(resumed.params, straight.params)


@pytest.mark.parametrize("bad", [{"step": -1}, {"cursor": "3"}, {"history": {}}, {"cursor": 10**6}])
def test_a_meta_with_impossible_counts_cannot_be_resumed(bad):
    ckpt = run_to_end(make_run(steps=2)).checkpoint()
    ckpt.meta = dict(ckpt.meta, **bad)
    with pytest.raises(ValueError, match="training state cannot be resumed"):
        make_run(steps=4, resume=ckpt)


@pytest.mark.parametrize("at, validated", [(4, False), (3, True)])
def test_an_interrupt_ends_the_run_after_the_step_which_validates_only_on_its_schedule(at, validated):
    """An interrupted step validates if it is an --eval-every step (as in the run it will be resumed into), but
    not for being the last."""
    run = make_run(steps=100, eval_every=3)
    got = list(run.steps(lambda: run.meta.step == at))
    assert [s.step for s in got] == list(range(1, at + 1)) and got[-1].stop == "interrupt"
    assert (got[-1].val_loss is not None) == validated and [h["step"] for h in run.meta.history] == [3]


def test_fitted_batch_on_resume_is_the_batch_the_run_uses():
    from charrnn.launch import fitted_batch

    for text in (TEXT, TEXT[:200], "hello world, hello there\n" * 3):
        run = make_run(text, batch=32, seq=8)
        assert fitted_batch(32, len(text), run.tc) == run.tc.batch


@pytest.mark.parametrize("given, schedule", [
    ({"max_time": 60.0}, "cosine"),  # a time budget alone: decay over it
    ({"max_time": 60.0, "steps": 10}, "constant"),  # a step bound: k steps + --resume to N stay exact
    ({"max_time": 60.0, "epochs": 1.0}, "constant"),
    ({}, "constant"),
    ({"max_time": 60.0, "schedule": "step"}, "step"),  # a schedule given is kept
])
def test_a_new_run_bounded_by_time_alone_decays_over_it(tmp_path, given, schedule):
    from charrnn.corpus import Corpus
    from charrnn.launch import plan

    p = plan(dict(given, seed=1), Corpus.from_text("abc" * 50), tmp_path / "m.npz", resume=False)
    assert p.tc.schedule == schedule
