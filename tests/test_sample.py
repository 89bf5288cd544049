"""Sampling and beam search: the filtered distribution, argmax limits, beam optimality and score, stop, seeds."""

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from charrnn import model, sample
from charrnn.config import ModelConfig, SampleConfig
from charrnn.data import Vocab
from charrnn.optim import Adam
from charrnn.sample import beam_search, condition, draw, filter_probs, generate

TEXT = "hello world\nhello there\nthe world is here\n"


def cfg(**kw) -> SampleConfig:
    return SampleConfig(**{"length": 30, **kw})


def run(params, mc, vocab, prefix="", seed=0, **kw) -> str:
    return "".join(generate(params, mc, vocab, prefix, cfg(**kw), np.random.default_rng(seed)))


@pytest.fixture(scope="module")
def trained():
    """A 2-layer LSTM trained a few dozen Adam steps on TEXT (float64): peaked, but not one-hot, predictions."""
    vocab = Vocab.from_text(TEXT)
    mc = ModelConfig(cell="lstm", vocab_size=len(vocab), embed=8, hidden=24, layers=2)
    params = model.init_params(mc, np.random.default_rng(0), np.float64)
    opt, ids = Adam(params), vocab.encode(TEXT)
    x, y = ids[None, :-1], ids[None, 1:]
    for _ in range(80):
        _, grads, _ = model.loss_and_grads(params, mc, x, y, model.init_state(mc, 1, np.float64))
        opt.step(params, grads, 2e-2)
    return params, mc, vocab


def random_model(cell="gru", V=3, seed=0, scale=1.0):
    """A tiny random model whose predictions are far from uniform; vocabulary "\\n", a, b, ... of size V."""
    vocab = Vocab.from_text("\nabcdefgh"[:V])
    mc = ModelConfig(cell=cell, vocab_size=V, embed=3, hidden=5, layers=2)
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0, scale, v.shape) for k, v in model.init_params(mc, rng, np.float64).items()}
    return params, mc, vocab


def teacher_forced_logprob(params, mc, vocab, prefix, text) -> float:
    """log p(text | prefix) from ONE forward over "\\n" + prefix + text from the zero state."""
    context = "\n" + prefix
    ids = vocab.encode(context + text)
    logits, _, _ = model.forward(params, mc, ids[None, :-1], model.init_state(mc, 1, np.float64))  # (L-1,1,V)
    return -float(model.nll(logits[:, 0], ids[1:])[len(context) - 1:].sum())


# ---------------------------------------------------------------------------------------- filter_probs, draw

P = np.array([0.1, 0.4, 0.2, 0.3])
LOGITS = np.log(P) + 1.7  # any shift gives the same distribution


@pytest.mark.parametrize("top_k, top_p, kept", [
    (0, 1.0, [0, 1, 2, 3]),
    (0, 0.35, [1]),  # 0.4 >= 0.35
    (0, 0.5, [1, 3]),  # 0.4 < 0.5 <= 0.7
    (0, 0.75, [1, 3, 2]),  # 0.7 < 0.75 <= 0.9
    (0, 0.95, [0, 1, 2, 3]),
    (0, 1e-9, [1]),  # always at least one
    (2, 1.0, [1, 3]),
    (3, 1.0, [1, 3, 2]),
    (9, 1.0, [0, 1, 2, 3]),  # K > V keeps all
    (1, 0.99, [1]),
    (3, 0.75, [1, 3]),  # top-p measures the renormalised top-3: 0.4/0.9 + 0.3/0.9 = 0.78 >= 0.75
])
def test_filter_probs_keeps_the_smallest_most_likely_set(top_k, top_p, kept):
    want = np.zeros(4)
    want[kept] = P[kept] / P[kept].sum()
    np.testing.assert_allclose(filter_probs(LOGITS, 1.0, top_k, top_p), want, rtol=1e-12, atol=1e-15)


def test_filter_probs_temperature_divides_the_logits():
    want = np.sqrt(P) / np.sqrt(P).sum()  # softmax(log p / 2) ∝ p^(1/2)
    np.testing.assert_allclose(filter_probs(LOGITS, 2.0), want, rtol=1e-12)
    want = P**4 / (P**4).sum()
    np.testing.assert_allclose(filter_probs(LOGITS.astype(np.float32), 0.25), want, rtol=1e-6)


def test_filter_probs_breaks_ties_by_lowest_id_and_hits_exact_mass():
    flat = np.zeros(4)  # probabilities exactly 1/4 each
    np.testing.assert_array_equal(filter_probs(flat, 1.0, top_p=0.5), [0.5, 0.5, 0, 0])  # mass exactly 0.5
    np.testing.assert_array_equal(filter_probs(flat, 1.0, top_k=3), [1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_array_equal(filter_probs([1.0, 3.0, 3.0, 0.0], 0.0), [0, 1, 0, 0])


def test_zero_and_tiny_temperature_are_argmax_without_warnings():
    logits = np.array([2.0, 7.0, 7.0 - 1e-9, -1e30])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        np.testing.assert_array_equal(filter_probs(logits, 0.0), [0, 1, 0, 0])
        np.testing.assert_array_equal(filter_probs(logits, 1e-300), [0, 1, 0, 0])
        assert filter_probs(logits, 1e300).sum() == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=12), st.floats(1e-3, 1.0), st.integers(0, 14))
def test_filter_probs_top_p_is_minimal(logits, top_p, top_k):
    z = np.array(logits)
    probs = filter_probs(z, 1.0, top_k, top_p)
    full = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    order = np.argsort(-z, kind="stable")
    pool = order[: top_k or len(z)]  # what top-k keeps
    base = full[pool] / full[pool].sum()  # the renormalised top-k distribution, most likely first
    kept = np.flatnonzero(probs)
    n = len(kept)
    assert n >= 1 and set(kept) == set(pool[:n])  # the n most likely
    assert base[:n].sum() >= top_p - 1e-12  # enough mass
    assert n == 1 or base[: n - 1].sum() < top_p + 1e-12  # and no smaller set has it
    np.testing.assert_allclose(probs[kept], full[kept] / full[kept].sum(), rtol=1e-9)


def test_draw_follows_the_distribution_and_never_picks_zero_probability():
    probs = np.array([0.0, 0.5, 0.0, 0.2, 0.3, 0.0])
    rng = np.random.default_rng(0)
    counts = np.bincount([draw(probs, rng) for _ in range(20000)], minlength=6)
    assert counts[[0, 2, 5]].sum() == 0
    np.testing.assert_allclose(counts / 20000, probs, atol=0.015)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 2.0, 1e-3, 1e300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unfiltered_draw_equals_filter_probs_then_draw_for_the_same_rng_state(temperature, dtype):
    g = np.random.default_rng(0)
    for trial in range(200):
        V = int(g.integers(1, 90))
        logits = (g.standard_normal(V) * g.uniform(0.1, 30)).astype(dtype)
        a_rng, b_rng = np.random.default_rng(trial), np.random.default_rng(trial)
        got = sample._draw_unfiltered(logits, temperature, a_rng)
        assert got == draw(filter_probs(logits, temperature), b_rng)
        assert a_rng.random() == b_rng.random()  # one rng.random() each, no more


def test_next_id_takes_the_unfiltered_draw_only_without_top_k_and_top_p(monkeypatch):
    calls = []
    monkeypatch.setattr(sample, "_draw_unfiltered", lambda *a: calls.append(a) or 0)
    logits, rng = np.zeros(5), np.random.default_rng(0)
    for kw in ({}, {"top_k": 5}, {"top_k": 9}, {"temperature": 0.5}):  # top_k >= V keeps everything
        sample.next_id(logits, cfg(**kw), rng)
    for kw in ({"top_k": 4}, {"top_p": 0.9}, {"temperature": 0.0}):
        sample.next_id(logits, cfg(**kw), rng)
    assert len(calls) == 4


# ------------------------------------------------------------------------------------------------ generate


def test_argmax_equals_top_k_1_equals_low_temperature_limit(trained):
    params, mc, vocab = trained
    greedy = run(*trained, "hel", temperature=0.0)
    assert greedy == run(*trained, "hel", top_k=1, seed=1)
    assert greedy == run(*trained, "hel", temperature=1e-4, seed=2)
    assert greedy.startswith("lo ")  # the model did learn TEXT


def test_same_seed_same_output_in_every_mode(trained):
    modes = [{}, {"temperature": 0.0}, {"temperature": 1.5}, {"top_k": 3}, {"top_p": 0.8},
             {"top_k": 4, "top_p": 0.9, "temperature": 0.7}, {"beam": 3}, {"stop": "e"}]
    for kw in modes:
        a, b = run(*trained, "h", seed=5, **kw), run(*trained, "h", seed=5, **kw)
        assert a == b and len(a) > 0, kw
    draws = {run(*trained, "h", seed=s, temperature=2.0) for s in range(5)}
    assert len(draws) > 1  # different seeds do differ


def test_stop_ends_the_sample_and_is_included(trained):
    out = run(*trained, "hel", temperature=0.0, stop="\n", length=100)
    assert out == "lo world\n"
    for seed in range(5):
        out = run(*trained, "t", seed=seed, temperature=1.5, stop="e", length=100)
        assert out.endswith("e") and "e" not in out[:-1]
    out = run(*trained, "hel", temperature=0.0, stop="lo w")  # matched across several generated characters
    assert out == "lo w"
    out = run(*trained, "hello w", temperature=0.0, stop="lo w", length=5)  # the prefix alone does not count
    assert len(out) == 5


def test_length_bounds_the_sample_and_zero_gives_nothing(trained):
    assert len(run(*trained, "h", length=17, temperature=3.0)) == 17
    assert run(*trained, "h", length=0) == ""
    assert run(*trained, "h", length=0, beam=2) == ""


def test_prefix_is_one_forward_pass_then_one_per_character(trained, monkeypatch):
    calls = []
    real = model.forward

    def counting(params, mc, ids, state, rng=None, **kw):
        calls.append(ids.shape)
        return real(params, mc, ids, state, rng, **kw)

    monkeypatch.setattr(model, "forward", counting)
    out = run(*trained, "hello wor", length=12, temperature=1.0)
    assert len(out) == 12
    assert calls == [(1, 10)] + [(1, 1)] * 11  # line break + prefix in one pass; none after the last
    calls.clear()
    text, _ = beam_search(*trained, "hello", width=4, length=6)
    assert calls[0] == (1, 6) and len(calls) == 6
    assert all(T == 1 and 1 <= N <= 4 for N, T in calls[1:])  # the beams go through together


def test_sampling_and_beam_search_step_with_the_fused_weights(trained, monkeypatch):
    """generate and beam_search make the fused weights once and step with them; the text is what the plain steps
    give (float64: the rounding differences cannot move a draw here)."""
    made, real = [], model.for_stepping

    def counting(params, mc):
        made.append(mc.cell)
        return real(params, mc)

    monkeypatch.setattr(model, "for_stepping", counting)
    fused_text = run(*trained, "hello", seed=5, length=40, temperature=1.0)
    fused_beam = beam_search(*trained, "hello", width=3, length=12)
    assert made == ["lstm", "lstm"]
    monkeypatch.setattr(model, "for_stepping", lambda params, mc: params)  # the plain T = 1 step
    assert run(*trained, "hello", seed=5, length=40, temperature=1.0) == fused_text
    plain_beam = beam_search(*trained, "hello", width=3, length=12)
    assert plain_beam[0] == fused_beam[0] and abs(plain_beam[1] - fused_beam[1]) < 1e-10


def test_unknown_prefix_characters_raise_value_error_naming_them(trained):
    with pytest.raises(ValueError, match=r"'X'.*'é'") as info:
        generate(*trained, "heXlé", cfg(), np.random.default_rng(0))  # raised at the call, not on next()
    assert info.value.chars == ["X", "é"]
    with pytest.raises(ValueError, match="'Z'"):
        generate(*trained, "Z", cfg(beam=2), np.random.default_rng(0))


@pytest.mark.parametrize("bad", [{"length": -1}, {"temperature": -0.1}, {"top_k": -1}, {"top_p": 0.0},
                                 {"top_p": 1.5}, {"num_samples": 0}, {"beam": -2}])
def test_invalid_config_raises(trained, bad):
    with pytest.raises(ValueError):
        generate(*trained, "h", cfg(**bad), np.random.default_rng(0))


@pytest.mark.parametrize("prefix", ["", "h", "the w"])
def test_every_prefix_is_read_after_a_line_break(trained, prefix):
    params, mc, vocab = trained
    logits, state = condition(params, mc, vocab, prefix)
    ids = vocab.encode("\n" + prefix)[None]
    ref, ref_state, _ = model.forward(params, mc, ids, model.init_state(mc, 1, np.float64))
    np.testing.assert_array_equal(logits, ref[-1, 0])
    for a, b in zip(sum(map(tuple, state), ()), sum(map(tuple, ref_state), ())):
        np.testing.assert_array_equal(a, b)


def test_empty_prefix_without_line_break_in_vocab_starts_from_the_decoder_bias():
    vocab = Vocab.from_text("abc")
    mc = ModelConfig(cell="rnn", vocab_size=3, embed=2, hidden=3, layers=1)
    params = model.init_params(mc, np.random.default_rng(3), np.float64)
    params["decoder.bias"][:] = [0.0, 2.0, 1.0]
    text, score = beam_search(params, mc, vocab, "", width=1, length=1)
    assert text == "b" and score == pytest.approx(2.0 - np.log(1 + np.exp(2) + np.exp(1)))
    assert run(params, mc, vocab, "", length=5, temperature=0.0).startswith("b")


# --------------------------------------------------------------------------------------------- beam search


def test_beam_of_width_1_is_argmax(trained):
    for prefix in ("", "h", "the w"):
        assert beam_search(*trained, prefix, 1, 25)[0] == run(*trained, prefix, temperature=0.0, length=25)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("width, stop", [(1, None), (3, None), (7, "b"), (5, "ab")])
def test_beam_score_is_the_models_log_probability_of_its_text(cell, width, stop):
    params, mc, vocab = random_model(cell, V=4, seed=1)
    for prefix in ("", "ab\n"):
        text, score = beam_search(params, mc, vocab, prefix, width, 6, stop)
        assert 0 < len(text) <= 6 and (len(text) == 6 or text.endswith(stop))
        assert score == pytest.approx(teacher_forced_logprob(params, mc, vocab, prefix, text), rel=1e-10)


def reference_beam_search(params, mc, vocab, prefix, width, length) -> tuple[str, float]:
    """Beam search as it is defined, slowly: at every step every extension of every live text is scored from
    scratch (one forward over "\\n" + prefix + text) and the `width` best survive (ties: earlier beam, lower id)."""
    chars = [chr(c) for c in vocab.codes.tolist()]
    beams = [("", 0.0)]  # (text, log-probability), best first
    for _ in range(length):
        extensions = []
        for text, score in beams:
            ids = vocab.encode("\n" + prefix + text)
            logits, _, _ = model.forward(params, mc, ids[None], model.init_state(mc, 1, np.float64))
            z = logits[-1, 0] - logits[-1, 0].max()
            logp = z - np.log(np.exp(z).sum())  # (V,) log p(next character | prefix + text)
            extensions += [(text + ch, score + lp) for ch, lp in zip(chars, logp)]
        beams = sorted(extensions, key=lambda beam: -beam[1])[:width]  # stable: ties keep beam, then id order
    return beams[0]


def test_beam_search_keeps_the_best_extensions_at_every_step(trained):
    """Each width against the definition. (A wider beam need not score higher: it keeps more candidates at each
    step, which can crowd out the prefix of the narrower beam's result.)"""
    found = {w: beam_search(*trained, "t", w, 12) for w in (1, 2, 4, 8)}
    for w, (text, score) in found.items():
        want_text, want_score = reference_beam_search(*trained, "t", w, 12)
        assert text == want_text and score == pytest.approx(want_score, rel=1e-10), w
    assert len({text for text, _ in found.values()}) > 1  # the widths differ here, so a width ignored would fail


@pytest.mark.parametrize("seed, scale", [(21, 1.0), (10, 1.0), (8, 0.5), (3, 0.5)])  # greedy is not always optimal
@pytest.mark.parametrize("stop", [None, "a", "ab", "\n"])
def test_full_width_beam_is_the_brute_force_optimum(seed, scale, stop):
    check_brute_force(seed, scale, stop)


def check_brute_force(seed, scale, stop) -> bool:
    """A beam as wide as the search space (V=3, n=4) returns the optimum; returns whether greedy missed it."""
    params, mc, vocab = random_model("lstm", V=3, seed=seed, scale=scale)
    n, chars = 4, "\nab"
    candidates = []  # every text the search may return: length n without stop, or ending at its first stop
    for k in range(1, n + 1):
        for t in map("".join, itertools.product(chars, repeat=k)):
            first = t.find(stop) + len(stop) if stop and stop in t else None
            if (first is None and k == n) or first == k:
                candidates.append(t)
    scored = {t: teacher_forced_logprob(params, mc, vocab, "a", t) for t in candidates}
    want = max(scored, key=scored.get)
    text, score = beam_search(params, mc, vocab, "a", 3**n, n, stop)
    assert text == want and score == pytest.approx(scored[want], rel=1e-10)
    greedy = beam_search(params, mc, vocab, "a", 1, n, stop)
    assert greedy[1] <= score + 1e-12
    return greedy[0] != want


def test_the_brute_force_cases_include_ones_where_greedy_is_not_optimal():
    assert check_brute_force(21, 1.0, None) and check_brute_force(8, 0.5, "ab") and check_brute_force(8, 0.5, "\n")


def test_generate_with_beam_yields_the_search_result(trained):
    text, _ = beam_search(*trained, "he", 3, 20, "\n")
    assert run(*trained, "he", beam=3, length=20, stop="\n", temperature=5.0) == text  # temperature: unused


def test_sample_module_imports_no_cli_libraries():
    import sys
    assert sample.__name__ in sys.modules
    src = open(sample.__file__).read()
    assert "typer" not in src and "rich" not in src and "tqdm" not in src and "print(" not in src
