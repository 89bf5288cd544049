"""Vocabulary, encoding and batch streams."""

import numpy as np
from hypothesis import given, settings, strategies as st

from charrnn import data


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1))
def test_encode_decode_round_trips_any_text(text):
    vocab = data.Vocab.from_text(text)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert vocab.codes.dtype == np.uint32
    assert np.all(np.diff(vocab.codes.astype(np.int64)) > 0)


def test_nul_newline_and_emoji_survive():
    text = "a\x00b\nc\U0001f600\u00e9\t"
    vocab = data.Vocab.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.codes[0] == 0


def test_ids_use_the_smallest_dtype():
    assert data.Vocab.from_text("abc").encode("cab").dtype == np.uint8
    wide = "".join(chr(0x4E00 + i) for i in range(300))
    assert data.Vocab.from_text(wide).encode(wide).dtype == np.uint16
    assert data.id_dtype(2**16 + 1) == np.uint32


def test_missing_characters_are_named():
    vocab = data.Vocab.from_text("abc")
    assert vocab.missing("abxcyx") == ["x", "y"]
    try:
        vocab.encode("abz")
    except KeyError as e:
        assert "z" in str(e)
    else:
        raise AssertionError("encode accepted a character outside the vocabulary")


def test_batches_continue_each_stream():
    ids = np.arange(103)
    streams = data.streams(ids, 4)  # (4, 25)
    assert streams.shape == (4, 25)
    assert data.batches_per_epoch(streams, 6) == 4
    x0, y0 = data.get_batch(streams, 0, 6)
    x1, _ = data.get_batch(streams, 1, 6)
    np.testing.assert_array_equal(y0[:, :-1], x0[:, 1:])
    np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)  # batch k+1 starts where batch k stopped
    np.testing.assert_array_equal(x0[:, 0], [0, 25, 50, 75])


def test_split_takes_the_tail_for_validation():
    train, val = data.split(np.arange(100), 0.1)
    assert len(train) == 90 and list(val) == list(range(90, 100))
    train, val = data.split(np.arange(100), 0.0)
    assert len(train) == 100 and len(val) == 0
