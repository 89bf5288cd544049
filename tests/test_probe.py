"""charrnn.probe (what `charrnn inspect` computes): the cells' activation accessors against the reference cells,
the features character by character, streaming Pearson r and saturation against direct computation, and one
carried stream in chunks equal to one forward over the whole text."""

import math

import numpy as np
import pytest

from charrnn import model, probe
from charrnn.cells import CELLS, init_params
from charrnn.cells.reference import REFERENCE
from charrnn.config import ModelConfig
from charrnn.data import Vocab
from charrnn.probe import features, units
from charrnn.probe.stats import Correlation, Saturation
from charrnn.surprisal import surprisal_bits

N, T, D, H = 2, 3, 4, 5
GATE_NAMES = {"rnn": "", "lstm": "ifgo", "gru": "rzn"}
TEXT = ('def f(a, b):\n    return "don\'t" + \'x\'  # it\'s [1]\n\tx = {(2)}\nSay "hi" to O\'Neil, \'tis 42.\n') * 6


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_activations_accessor_gives_the_reference_cells_states_and_gates(cell):
    """The accessor reads h, c and the gates out of the fast cell's cache; they must be what the equations give."""
    rng = np.random.default_rng(0)
    p = {k: rng.normal(0, 0.7, v.shape) for k, v in init_params(rng, D, H, CELLS[cell].gates, np.float64).items()}
    x = rng.normal(size=(T, N, D))
    state = tuple(rng.normal(size=(N, H)) for _ in range(CELLS[cell].states))
    _, _, cache = CELLS[cell].forward(x, state, p)
    acts = CELLS[cell].activations(cache)
    _, _, ref = REFERENCE[cell].forward(x, state, p)
    expected = {"h": ref[1][1:]}
    if cell == "lstm":
        expected["c"] = ref[2][1:]
    for g, name in enumerate(GATE_NAMES[cell]):
        expected[name] = np.stack([step[g] for step in ref[-2]])  # (T,N,H)
    assert set(acts) == set(expected)
    for name, a in expected.items():
        assert acts[name].shape == (T, N, H), name
        np.testing.assert_allclose(acts[name], a, rtol=0, atol=1e-12, err_msg=name)


def column(name, text):
    return "".join(str(int(v))[-1] for v in features.features(text)[name])


@pytest.mark.parametrize("name, text, expected", [
    ("position_in_line", "ab\ncd\n\nx", "12012001"),
    ("bracket_depth", "f([a]{b})) (", "012212210001"),
    ("indentation", "  a b\n\tx\n \tz\n", "1222208801880"),
    ("inside_quotes", '"ab" c', "111000"),
    ("inside_quotes", "don't 'x' o'er", "00000011000000"),  # apostrophes between letters are no quotes
    ("inside_quotes", "'tis a \"b\" c", "000000011000"),  # an opening mark with no partner on its line opens nothing
    ("inside_quotes", "\"it's\"", "111110"),  # the other kind inside is literal
    ("inside_quotes", "\"a'b c\" 'd\"e'", "1111110011110"),
    ("inside_quotes", r'"a\"b" c', "11111000"),  # an escaped mark neither opens nor closes
    ("inside_quotes", r'"a\\"b"', "1111000"),  # an escaped backslash does not escape the mark
    ("inside_quotes", '"ab\ncd"', "0000000"),  # marks match within a line
    ("inside_quotes", '"""doc"""', "111111000"),  # a triple mark is one mark
    ("inside_quotes", "''' '''' x", "1111000000"),
    ("inside_quotes", '"""a\nb"""', "000000000"),
    ("inside_word", "don't x_1, ok", "1111101110011"),
    ("word_start", "don't x_1, ok", "1000001000010"),
    ("uppercase", "aB C1", "01010"),
    ("digit", "a1 ²", "0101"),
    ("whitespace", "a b\n\tc", "010110"),
])
def test_features_character_by_character(name, text, expected):
    assert column(name, text) == expected


def test_every_feature_has_one_float_per_character():
    f = features.features(TEXT)
    assert tuple(f) == features.NAMES
    assert all(v.shape == (len(TEXT),) and v.dtype == np.float64 for v in f.values())
    assert all(v.shape == (0,) for v in features.features("").values())


def test_streaming_correlation_equals_corrcoef_and_is_zero_for_constants():
    rng = np.random.default_rng(1)
    L = 700
    y = np.stack([rng.normal(size=L), (rng.random(L) < 0.3), np.full(L, 4.0)], axis=1)  # (L,3), one constant
    x = rng.normal(size=(L, 6)).astype(np.float32)
    x[:, 1] = 0.25  # a constant unit
    x[:, 2] = 1000.0 + 1e-3 * y[:, 0]  # a large mean, a small spread: follows feature 0 exactly
    x[:, 3] = -x[:, 4] + 0.5 * y[:, 1]
    corr = Correlation(y, 6)
    for start in range(0, L, 64):
        corr.add(x[start : start + 64])
    r = corr.r()
    assert np.isfinite(r).all()
    for u in (0, 2, 3, 4, 5):
        for f in (0, 1):
            expected = np.corrcoef(x[:, u].astype(np.float64), y[:, f])[0, 1]
            assert r[u, f] == pytest.approx(expected, abs=2e-5), (u, f)
    assert r[2, 0] > 0.999  # (float32 rounds the spread of 1e-3 at 1000 a little)
    assert (r[1] == 0).all() and (r[:, 2] == 0).all()
    assert corr.constant_features().tolist() == [False, False, True]


def test_saturation_counts_the_time_below_and_above_the_thresholds():
    rng = np.random.default_rng(2)
    a = rng.random((300, 4))
    sat = Saturation()
    sat.add(0, "i", a[:100])
    sat.add(0, "i", a[100:])
    left, right = sat.fractions(300)[(0, "i")]
    np.testing.assert_allclose(left, (a < 0.1).mean(axis=0))
    np.testing.assert_allclose(right, (a > 0.9).mean(axis=0))


def test_unit_names_columns_and_parsing():
    lstm, gru = ModelConfig("lstm", 7, 3, 4, 2), ModelConfig("gru", 7, 3, 4, 2)
    assert units.count(lstm) == 16 and units.count(gru) == 8
    for mc in (lstm, gru):
        assert [units.column(units.at(c, mc), mc) for c in range(units.count(mc))] == list(range(units.count(mc)))
    assert units.column(units.parse("1:2:c", lstm), lstm) == 14 and str(units.parse(" 1:3 ", lstm)) == "1:3"
    assert units.parse("0:1:h", lstm) == units.Unit(0, 1, "h")
    for spec, why in [("2:0", "layer"), ("0:4", "units"), ("0:1:c", "no cell state"), ("x", "not a unit"),
                      ("0:-1", "not a unit"), ("0:1:q", "not a unit"), ("", "not a unit")]:
        with pytest.raises(ValueError, match=why):
            units.parse(spec, gru if why == "no cell state" else lstm)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_inspect_is_one_carried_stream_through_the_models_forward(cell, monkeypatch):
    """Chunks with the state carried equal one forward call over the whole text: the recorded units, the kept
    head, the surprisal (eval --show's), the correlations and the top guesses."""
    vocab = Vocab.from_text(TEXT)
    mc = ModelConfig(cell, len(vocab), 6, 8, 2)
    params = model.init_params(mc, np.random.default_rng(3), np.float64)
    ids = vocab.encode(TEXT)
    L = len(ids)
    every = [units.at(c, mc) for c in range(units.count(mc))]
    monkeypatch.setattr(probe, "CHUNK", 37)  # several chunks, the last one short
    assert L > 5 * 37 and L % 37 != 0
    result = probe.inspect(params, mc, ids, TEXT, record=every, head=50, guesses=3)
    logits, _, cache = model.forward(params, mc, ids[None], model.init_state(mc, 1, np.float64))
    acts = [CELLS[cell].activations(c) for c in cache.layers]
    for u in every:
        np.testing.assert_allclose(result.recorded[u], acts[u.layer][u.state][:, 0, u.index], rtol=0, atol=1e-5)
    full = np.stack([result.recorded[u] for u in every], axis=1)  # (L,U)
    np.testing.assert_allclose(result.head, full[:50].astype(np.float16))
    np.testing.assert_allclose(result.bits, surprisal_bits(params, mc, ids), rtol=1e-6, equal_nan=True)
    f = features.features(TEXT)
    for i, name in enumerate(features.NAMES):
        for c in (0, 5, len(every) - 1):
            expected = np.corrcoef(full[:, c].astype(np.float64), f[name])[0, 1]
            assert result.r[c, i] == pytest.approx(expected, abs=1e-4), (name, c)
    p = np.exp(logits[:, 0] - logits[:, 0].max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)  # (L,V)
    top_ids, top_p = result.guesses
    assert (top_ids[0] == 0).all() and (top_p[0] == 0).all()  # nothing predicted the first character
    np.testing.assert_array_equal(top_ids[1:], np.argsort(-p[:-1], axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(top_p[1:], np.sort(p[:-1], axis=1)[:, ::-1][:, :3], rtol=1e-5)
    gates = {(k, g) for k in range(2) for g in probe.SIGMOID_GATES[cell]}
    assert set(result.saturation) == gates


def test_ranking_is_by_absolute_r_best_first_and_skips_constant_features():
    vocab = Vocab.from_text(TEXT)
    mc = ModelConfig("lstm", len(vocab), 6, 8, 2)
    params = model.init_params(mc, np.random.default_rng(4))
    result = probe.inspect(params, mc, vocab.encode(TEXT), TEXT)
    ranked = result.ranked(mc, top=0)
    for name, best in ranked.items():
        assert len(best) == units.count(mc)
        rs = [abs(r) for _, r in best]
        assert rs == sorted(rs, reverse=True) and all(math.isfinite(r) for r in rs)
    flat = "abc abc\n" * 20
    fv = Vocab.from_text(flat)
    mc = ModelConfig("gru", len(fv), 6, 8, 1)
    result = probe.inspect(model.init_params(mc, np.random.default_rng(4)), mc, fv.encode(flat), flat)
    ranked = result.ranked(mc, 3)
    assert ranked["digit"] == [] and ranked["bracket_depth"] == [] and len(ranked["inside_word"]) == 3
    assert np.isfinite(result.r).all()
