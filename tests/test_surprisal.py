"""Per-character surprisal is evaluation's own numbers, one character at a time."""

import math

import numpy as np
import pytest

from charrnn import model
from charrnn.config import ModelConfig
from charrnn.surprisal import surprisal_bits
from charrnn.train import evaluate


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_surprisal_sums_to_the_one_stream_evaluation(cell):
    mc = ModelConfig(cell=cell, vocab_size=7, embed=3, hidden=5, layers=2)
    params = model.init_params(mc, np.random.default_rng(0), np.float64)
    ids = np.random.default_rng(1).integers(0, 7, size=23)
    bits = surprisal_bits(params, mc, ids, seq=4)  # chunks of 4: the state is carried across 6 of them
    assert bits.shape == (23,) and math.isnan(bits[0]) and np.all(bits[1:] > 0)
    want = evaluate(params, mc, ids, batch=1).nats_per_char
    assert bits[1:].mean() * math.log(2) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(surprisal_bits(params, mc, ids, seq=64), bits, rtol=1e-12)


def test_each_entry_is_the_models_probability_of_that_character():
    mc = ModelConfig(cell="lstm", vocab_size=5, embed=2, hidden=3, layers=1)
    params = model.init_params(mc, np.random.default_rng(2), np.float64)
    ids = np.array([1, 4, 0, 2])
    bits = surprisal_bits(params, mc, ids)
    logits, _, _ = model.forward(params, mc, ids[None, :-1], model.init_state(mc, 1, np.float64), need_cache=False)
    p = np.exp(logits[:, 0]) / np.exp(logits[:, 0]).sum(axis=1, keepdims=True)  # (3,V)
    np.testing.assert_allclose(bits[1:], -np.log2(p[np.arange(3), ids[1:]]), rtol=1e-10)
