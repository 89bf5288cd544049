"""The streaming corpus pipeline: chunked decoding and encoding, the on-disk cache, stdin spooling."""

import io
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from charrnn import corpus, corpus_cache, data, stream
from charrnn.corpus import Corpus, CorpusError, prepare


def chunked(raw: bytes, size: int) -> list[bytes]:
    return [raw[i:i + size] for i in range(0, len(raw), size)]


def one_shot_error(raw: bytes, name: str) -> str | None:
    """How the message for invalid UTF-8 begins, placed as a whole-file decode places it (None if the text is
    valid); a hint follows (convert it, or the --encoding it looks like)."""
    bom = 3 if raw.startswith(stream.BOM) else 0
    try:
        raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = bom + e.start
        return f"{name} is not valid UTF-8 (byte {at}: {raw[at:at + 1]!r}); "
    return None


def assert_same(a: Corpus, b: Corpus) -> None:
    assert a.sha256 == b.sha256
    assert a.ids.dtype == b.ids.dtype
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.vocab, b.vocab)
    np.testing.assert_array_equal(a.counts, b.counts)


texts = st.text(st.characters(codec="utf-8"), min_size=0, max_size=60).map(
    lambda t: t.lstrip("\ufeff")) | st.sampled_from(["\x00", "a\U0001f600b\U00010348", "日本語\x00Ж✓\ufeff"])


@settings(max_examples=200, deadline=None)
@given(texts, st.booleans(), st.integers(1, 9))
def test_chunked_scan_and_encode_equal_the_one_shot_ones(text, bom, size):
    raw = (stream.BOM if bom else b"") + text.encode()
    chunks = chunked(raw, size)  # boundaries inside multi-byte characters and inside the BOM
    s = stream.scan(chunks, "t")
    if not text:
        assert s.chars == 0 and len(s.vocab) == 0
        return
    want = Corpus.from_text(text)
    assert (s.sha256, s.chars) == (want.sha256, len(text))
    np.testing.assert_array_equal(s.vocab, want.vocab)
    np.testing.assert_array_equal(s.counts, want.counts)
    ids = np.concatenate(list(stream.encode(chunks, "t", s.vocab, data.id_dtype(len(s.vocab)))))
    assert ids.dtype == want.ids.dtype
    np.testing.assert_array_equal(ids, want.ids)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.lists(st.sampled_from([b"a", b"\xc3\xa9", b"\xe2\x9c\x93", b"\xf0\x9f\x98\x80",
                                                           b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xf0\x9f", b"\x80",
                                                           b"\xed\xa0\x80"]), max_size=12).map(b"".join),
       st.integers(1, 7))
def test_invalid_utf8_is_reported_at_the_byte_the_one_shot_decoder_names(raw, size):
    want = one_shot_error(raw, "f.txt")
    try:
        stream.scan(chunked(raw, size), "f.txt")
    except CorpusError as e:
        assert str(e).startswith(want) and "\n" not in str(e)
    else:
        assert want is None


def test_invalid_byte_right_after_a_chunk_boundary():
    raw = b"\xef\xbb\xbfab\xc3" + b"(cd"  # BOM, then a 2-byte lead cut by the boundary, then no continuation
    with pytest.raises(CorpusError, match=r"byte 5: b'\\xc3'"):
        stream.scan(chunked(raw, 6), "x")
    with pytest.raises(CorpusError, match=r"byte 3: b'\\xe2'"):  # truncated at the very end
        stream.scan([b"abc\xe2", b"\x9c"], "x")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write(path, text):
    path.write_bytes(text.encode())
    return path


TEXT = "First Citizen:\nBefore we proceed any further, hear me speak. Жж 日本 \U0001f600\n" * 20


def entry_files(cache):
    return sorted(p.name for p in (cache / "corpora").iterdir())


def test_a_large_corpus_is_cached_memory_mapped_and_equal_to_the_in_memory_one(tmp_path, cache):
    path = write(tmp_path / "c.txt", TEXT)
    small = prepare(path, chunk_size=5)
    assert isinstance(small.ids, np.ndarray) and not isinstance(small.ids, np.memmap)
    assert not cache.exists()  # a small corpus leaves nothing on disk
    big = prepare(path, chunk_size=5, in_memory_below=0)
    assert isinstance(big.ids, np.memmap) and not big.ids.flags.writeable
    assert_same(big, small)
    assert_same(big, Corpus.from_text(TEXT))
    for val_frac, batch, seq in [(0.1, 4, 7), (0.0, 3, 5)]:  # the same streams, batches and validation split
        (ta, va), (tb, vb) = data.split(big.ids, val_frac), data.split(small.ids, val_frac)
        np.testing.assert_array_equal(va, vb)
        sa, sb = data.streams(ta, batch), data.streams(tb, batch)
        for k in range(data.batches_per_epoch(sa, seq)):
            for a, b in zip(data.get_batch(sa, k, seq), data.get_batch(sb, k, seq)):
                np.testing.assert_array_equal(a, b)


def test_the_cache_is_reused_without_reading_the_file_again(tmp_path, cache, monkeypatch):
    path = write(tmp_path / "c.txt", TEXT)
    first = prepare(path, chunk_size=64, in_memory_below=0)
    npy = cache / "corpora" / f"{first.sha256}.npy"
    before = os.stat(npy)
    scans = []
    monkeypatch.setattr(corpus, "scan_files", lambda *a: scans.append(1) or stream.scan_files(*a))
    again = prepare(path, chunk_size=64, in_memory_below=0)
    assert scans == []  # the (path, size, mtime, inode) record gave the hash: no second read of the text
    assert (os.stat(npy).st_ino, os.stat(npy).st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert_same(again, first)
    copy = write(tmp_path / "copy.txt", TEXT)  # the same content under another name: hashed, entry reused
    assert_same(prepare(copy, chunk_size=64, in_memory_below=0), first)
    assert scans == [1] and os.stat(npy).st_ino == before.st_ino


def test_a_changed_corpus_is_prepared_again(tmp_path, cache):
    path = write(tmp_path / "c.txt", TEXT)
    first = prepare(path, chunk_size=64, in_memory_below=0)
    write(path, TEXT.replace("speak", "speak!"))
    second = prepare(path, chunk_size=64, in_memory_below=0)
    assert second.sha256 != first.sha256
    assert_same(second, Corpus.from_text(TEXT.replace("speak", "speak!")))


@pytest.mark.parametrize("damage", ["truncate", "flip", "json", "delete-json", "header"])
def test_a_damaged_cache_entry_is_never_trusted(tmp_path, cache, damage):
    path = write(tmp_path / "c.txt", TEXT)
    good = prepare(path, chunk_size=64, in_memory_below=0)
    npy, meta = cache / "corpora" / f"{good.sha256}.npy", cache / "corpora" / f"{good.sha256}.json"
    raw = npy.read_bytes()
    if damage == "truncate":
        npy.write_bytes(raw[:-10])
    elif damage == "flip":  # same size, one id changed to another valid id
        npy.write_bytes(raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:])
    elif damage == "json":
        meta.write_text(meta.read_text().replace('"chars": ', '"chars": 1'))
    elif damage == "delete-json":
        meta.unlink()
    else:
        npy.write_bytes(raw.replace(b"'|u1'", b"'<u2'", 1))
    assert corpus_cache.load(cache, good.sha256) is None
    again = prepare(path, chunk_size=64, in_memory_below=0)
    assert_same(again, Corpus.from_text(TEXT))
    assert npy.read_bytes() == raw and corpus_cache.load(cache, good.sha256) is not None  # rebuilt


def test_a_killed_preparation_leaves_no_entry_and_no_temporary_file(tmp_path, cache, monkeypatch):
    path = write(tmp_path / "c.txt", TEXT)

    def dies(files, *args):
        yield from list(stream.encode_files(files, *args))[:2]
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(corpus, "encode_files", dies)
        with pytest.raises(KeyboardInterrupt):
            prepare(path, chunk_size=64, in_memory_below=0)
    assert entry_files(cache) == []
    stale = cache / "corpora" / ".tmp-999999999-dead.npy"  # what a SIGKILLed process would leave
    stale.write_bytes(b"x")
    prepare(path, chunk_size=64, in_memory_below=0)
    assert not stale.exists() and sorted(p.suffix for p in (cache / "corpora").iterdir()) == [".json", ".npy"]


def test_stdin_is_spooled_through_the_cache_and_the_spool_removed(cache):
    raw = ("\ufeff" + TEXT).encode()
    r, w = os.pipe()
    feeder = threading.Thread(target=lambda: (os.write(w, raw), os.close(w)))
    feeder.start()
    with os.fdopen(r, "rb") as pipe:
        got = prepare(pipe, chunk_size=7, in_memory_below=100)
    feeder.join()
    assert_same(got, Corpus.from_text(TEXT))
    assert isinstance(got.ids, np.memmap)
    assert entry_files(cache) == [f"{got.sha256}.json", f"{got.sha256}.npy"]  # the spool is gone
    assert_same(prepare(io.BytesIO(raw), chunk_size=7), got)  # a short stream stays in memory


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "x"))
    assert corpus_cache.default_dir() == tmp_path / "x"
    monkeypatch.delenv("CHARRNN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpus_cache.default_dir() == tmp_path / "xdg" / "charrnn"


def test_a_named_pipe_is_read_once_like_stdin(tmp_path, cache):
    fifo = tmp_path / "corpus.fifo"
    os.mkfifo(fifo)
    feeder = threading.Thread(target=lambda: fifo.write_bytes(TEXT.encode()))
    feeder.start()
    got = prepare(fifo, chunk_size=7, in_memory_below=100)  # its size says 0: it must not be read whole
    feeder.join()
    assert_same(got, Corpus.from_text(TEXT))
    assert isinstance(got.ids, np.memmap)


def test_bounded_evaluation_scores_the_head_of_every_stream_and_maps_ids_per_chunk(tmp_path, cache):
    from charrnn import model
    from charrnn.config import ModelConfig
    from charrnn.train import evaluate

    own = prepare(write(tmp_path / "c.txt", TEXT), chunk_size=64, in_memory_below=0)  # memory-mapped ids
    codes = np.union1d(own.vocab, np.array([7, 0x2603], np.uint32))  # a model with two characters more
    lut, missing, _ = corpus.to_vocab(own, codes)
    assert missing == [] and not np.array_equal(lut, np.arange(len(lut)))
    mc = ModelConfig(cell="gru", vocab_size=len(codes), embed=3, hidden=5, layers=1)
    params = model.init_params(mc, np.random.default_rng(0), np.dtype(np.float64))
    ids = lut[np.asarray(own.ids)]  # (L,) the model's ids, in memory
    B, bound = 4, 200
    head = data.streams(ids, B)[:, :bound // B]  # (B, 50) what a bounded validation scores
    want = evaluate(params, mc, head.ravel(), B, seq=7, min_stream=2)
    for got in (evaluate(params, mc, ids, B, seq=7, max_chars=bound, min_stream=2),
                evaluate(params, mc, own.ids, B, seq=7, max_chars=bound, lut=lut, min_stream=2)):
        assert (got.chars, got.streams) == (B * (bound // B - 1), B)
        assert got.nats_per_char == pytest.approx(want.nats_per_char, rel=1e-12)
    whole = evaluate(params, mc, own.ids, B, seq=7, lut=lut, min_stream=2)
    assert whole.chars == B * (len(ids) // B - 1)
    straight = evaluate(params, mc, ids, B, seq=7, min_stream=2)
    assert whole.nats_per_char == pytest.approx(straight.nats_per_char, rel=1e-12)


def test_a_file_changed_during_preparation_leaves_no_entry(tmp_path, cache, monkeypatch):
    path = write(tmp_path / "c.txt", TEXT)

    def touching(files, *args):  # the file changes between the two passes, keeping its vocabulary and length
        write(path, TEXT.replace("First", "Tsrif"))
        yield from stream.encode_files(files, *args)

    monkeypatch.setattr(corpus, "encode_files", touching)
    with pytest.raises(CorpusError, match="changed while it was being read"):
        prepare(path, chunk_size=64, in_memory_below=0)
    assert entry_files(cache) == []


@pytest.mark.parametrize("text", ["abcab", "abcé", "ab" * 200])
@pytest.mark.parametrize("size", [1, 3, 1000])
def test_encoding_a_character_the_scan_did_not_see_is_an_error(text, size):
    vocab = stream.scan([text.encode()], "t").vocab
    for stranger in ("z", "\x00", "ж"):
        raw = (text + stranger + text).encode()
        with pytest.raises(CorpusError, match="changed while it was being read"):
            list(stream.encode(chunked(raw, size), "t", vocab, data.id_dtype(len(vocab))))


def test_byte_counts_equal_bincount():
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 7, 1000, 1001):
        b = rng.integers(0, 256, n).astype(np.uint8)
        np.testing.assert_array_equal(stream.byte_counts(b), np.bincount(b, minlength=256))
