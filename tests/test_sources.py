"""Corpora the way people keep them: several files and folders (sorted path order, hidden entries, --include),
gzip/bzip2/xz archives inflated while streaming, other encodings, and the hints for text that is not UTF-8."""

import bz2
import gzip
import lzma
import os
import tracemalloc

import numpy as np
import pytest

from charrnn import corpus, sources, stream
from charrnn.corpus import Corpus, CorpusError, SourceError, prepare

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak. Жж 日本 \U0001f600\n" * 20
COMPRESS = {"gzip": (gzip.compress, ".gz"), "bzip2": (bz2.compress, ".bz2"), "xz": (lzma.compress, ".xz")}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tree(root, files: dict[str, bytes | str]):
    """Write {relative path: content} under root; returns root."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def names(found, root) -> list[str]:
    return [os.path.relpath(s.path, root) for s in found]


def assert_same(a: Corpus, b: Corpus) -> None:
    assert a.sha256 == b.sha256
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.vocab, b.vocab)
    np.testing.assert_array_equal(a.counts, b.counts)


def test_a_folder_is_walked_in_sorted_path_order_skipping_hidden_entries(tmp_path):
    d = tree(tmp_path / "d", {"b.txt": "b", "a.txt": "a", "a-b.txt": "ab", "a/z.txt": "z", "a/y/x.txt": "x",
                              "B.txt": "B", ".hidden/h.txt": "h", "a/.h.txt": "h", "n.md": "n", "é.txt": "e"})
    assert names(sources.collect([d]), d) == ["B.txt", "a/y/x.txt", "a/z.txt", "a-b.txt", "a.txt", "b.txt",
                                              "n.md", "é.txt"]  # by components, byte by byte: "a" < "a-b.txt"
    assert names(sources.collect([d], ["*.txt"]), d) == ["B.txt", "a/y/x.txt", "a/z.txt", "a-b.txt", "a.txt",
                                                         "b.txt", "é.txt"]
    assert names(sources.collect([d], ["*.md", "?.txt"]), d) == ["B.txt", "a/y/x.txt", "a/z.txt", "a.txt", "b.txt",
                                                                 "n.md", "é.txt"]  # (? is one character)
    both = sources.collect([d / "n.md", d / "a", d / ".hidden" / "h.txt"], ["*.txt"])  # named files always count
    assert names(both, d) == ["n.md", "a/y/x.txt", "a/z.txt", ".hidden/h.txt"]


def test_paths_that_hold_no_text_are_source_errors(tmp_path):
    tree(tmp_path / "hidden", {".a.txt": "a", ".git/b.txt": "b"})
    (tmp_path / "empty").mkdir()
    tree(tmp_path / "md", {"x.md": "x"})
    for args, include in [([tmp_path / "hidden"], ()), ([tmp_path / "empty"], ()), ([tmp_path / "md"], ["*.txt"])]:
        with pytest.raises(SourceError, match="holds no files"):
            sources.collect(args, include)
    with pytest.raises(SourceError, match="only PATH"):
        sources.collect(["-", tmp_path / "md" / "x.md"])
    with pytest.raises(FileNotFoundError):
        sources.collect([tmp_path / "nope"])


def test_links_are_followed_but_a_loop_is_not(tmp_path):
    d = tree(tmp_path / "d", {"a.txt": "a", "sub/b.txt": "b"})
    (d / "sub" / "up").symlink_to(d)  # a loop
    (d / "c.txt").symlink_to(d / "a.txt")
    (d / "dangling.txt").symlink_to(d / "nothing")
    os.mkfifo(d / "pipe.txt")  # neither file nor folder: skipped, never opened
    assert names(sources.collect([d]), d) == ["a.txt", "c.txt", "sub/b.txt"]


@pytest.mark.parametrize("in_memory_below", [None, 0])
def test_a_folder_is_the_concatenation_of_its_files(tmp_path, cache, in_memory_below):
    parts = {"1.txt": "hello\n", "2/a.txt": "\ufeffworld é\n", "2/b.txt": "", "3.txt": "\ufeff\ufeffdouble\n"}
    d = tree(tmp_path / "d", parts)
    got = prepare([tmp_path / "d"], chunk_size=3, in_memory_below=in_memory_below)
    # each file's own leading byte-order mark is dropped (a second one is a character)
    want = Corpus.from_text("hello\n" + "world é\n" + "" + "\ufeffdouble\n")
    assert_same(got, want)
    assert got.files == 4 and isinstance(got.ids, np.memmap) == (in_memory_below == 0)
    first = tree(tmp_path, {"first.txt": "top\n"}) / "first.txt"
    assert_same(prepare([first, d, first], chunk_size=5, in_memory_below=in_memory_below),
                Corpus.from_text("top\n" + "hello\nworld é\n\ufeffdouble\n" + "top\n"))


def test_a_file_that_does_not_decode_is_named_with_its_own_offset(tmp_path, cache):
    d = tree(tmp_path / "d", {"a.txt": "x" * 100, "b.txt": b"\xef\xbb\xbfok \xff"})
    for below in (None, 0):
        with pytest.raises(CorpusError, match=rf"{d / 'b.txt'} is not valid UTF-8 \(byte 6: b'\\xff'\)"):
            prepare(d, chunk_size=4, in_memory_below=below)
    # a character cut at the end of a file is not completed by the next one
    tree(d, {"a.txt": b"caf\xc3", "b.txt": b"\xa9"})
    with pytest.raises(CorpusError, match=r"a.txt is not valid UTF-8 \(byte 3"):
        prepare(d)


@pytest.mark.parametrize("fmt", list(COMPRESS))
def test_each_archive_format_is_the_same_corpus_and_cache_entry_as_its_text(tmp_path, cache, fmt):
    squeeze, suffix = COMPRESS[fmt]
    raw = ("\ufeff" + TEXT).encode()
    plain = tree(tmp_path, {"plain.txt": raw}) / "plain.txt"
    packed = tree(tmp_path, {"c" + suffix: squeeze(raw), "c.bin": squeeze(raw)})
    want = prepare(plain, chunk_size=7, in_memory_below=0)
    for path in (packed / ("c" + suffix), packed / "c.bin"):  # by suffix, or by content alone
        assert_same(prepare(path, chunk_size=7), want)
        assert_same(prepare(path, chunk_size=7, in_memory_below=0), want)
    assert sorted(p.name for p in (cache / "corpora").iterdir()) == [f"{want.sha256}.json", f"{want.sha256}.npy"]
    two = squeeze(b"abc") + squeeze("d\u00e9f".encode())  # several members / streams in one file
    assert_same(prepare(tree(tmp_path, {"two" + suffix: two}) / ("two" + suffix)), Corpus.from_text("abcdéf"))


@pytest.mark.parametrize("fmt", list(COMPRESS))
@pytest.mark.parametrize("damage", ["truncated", "corrupt", "not an archive"])
def test_a_damaged_archive_is_one_line_naming_the_file(tmp_path, cache, fmt, damage):
    squeeze, suffix = COMPRESS[fmt]
    good = squeeze(TEXT.encode() * 50)
    bad = {"truncated": good[:len(good) // 2], "corrupt": good[:40] + bytes(b ^ 0x55 for b in good[40:80])
           + good[80:], "not an archive": TEXT.encode()}[damage]
    path = tree(tmp_path, {"c" + suffix: bad}) / ("c" + suffix)
    for below in (None, 0):
        with pytest.raises(CorpusError) as e:
            prepare(path, chunk_size=1000, in_memory_below=below)
        assert str(e.value).startswith(f"{path} is not a valid {fmt} file (") and "\n" not in str(e.value)
    assert not cache.exists() or not [p for p in (cache / "corpora").iterdir()]  # no entry, no spool


def test_a_text_that_starts_like_a_bzip2_header_is_text(tmp_path):
    path = tree(tmp_path, {"t.txt": "BZh9 is not an archive\n"}) / "t.txt"
    assert sources.compression_of(sources.Source(str(path), None)) is None
    assert_same(prepare(path), Corpus.from_text("BZh9 is not an archive\n"))


def test_the_cache_remembers_archives_and_folders_by_their_files(tmp_path, cache, monkeypatch):
    d = tree(tmp_path / "d", {"a.txt": TEXT, "b.txt.gz": gzip.compress(TEXT[::-1].encode())})
    first = prepare(d, in_memory_below=0)
    assert first.files == 2
    reads = []
    real = sources.chunks
    monkeypatch.setattr(sources, "chunks", lambda *a: reads.append(a[0].path) or real(*a))
    monkeypatch.setattr(corpus, "scan_files", lambda *a: reads.append("scan") or stream.scan_files(*a))
    assert_same(prepare(d, in_memory_below=0), first)
    assert reads == []  # neither inflated nor hashed again: the files' identities gave the hash
    assert prepare(d, in_memory_below=0, encoding="latin-1").sha256 != first.sha256  # another encoding, another text
    reads.clear()
    tree(d, {"c.txt": "more"})  # a file added: another corpus
    assert prepare(d, in_memory_below=0).sha256 == Corpus.from_text(TEXT + TEXT[::-1] + "more").sha256
    assert "scan" in reads
    again = prepare([d / "a.txt", d / "b.txt.gz"], in_memory_below=0)  # the same text from two paths: same entry
    assert_same(again, first)


@pytest.mark.parametrize("encoding, data", [
    ("latin-1", "café crème brûlée ÿ\n".encode("latin-1")),
    ("cp1252", "“smart” quotes — and €\n".encode("cp1252")),
    ("utf-16", "héllo wörld \U0001f600\n".encode("utf-16")),  # a byte-order mark, dropped
    ("utf-16-be", "\ufeffhéllo wörld\n".encode("utf-16-be")),  # the mark as a character: dropped too
    ("UTF8", "\ufeffplain é\n".encode()),
    ("shift_jis", "日本語のテキスト\n".encode("shift_jis")),
])
@pytest.mark.parametrize("in_memory_below", [None, 0])
def test_any_text_encoding_python_knows(tmp_path, cache, encoding, data, in_memory_below):
    path = tree(tmp_path, {"t.txt": data * 30}) / "t.txt"
    want = Corpus.from_text((data * 30).decode(encoding).removeprefix("\ufeff"))
    assert_same(prepare(path, chunk_size=5, encoding=encoding, in_memory_below=in_memory_below), want)
    packed = tree(tmp_path, {"t.gz": gzip.compress(data * 30)}) / "t.gz"
    assert_same(prepare(packed, chunk_size=5, encoding=encoding, in_memory_below=in_memory_below), want)


def test_bad_bytes_in_another_encoding_name_their_offset(tmp_path):
    path = tree(tmp_path, {"t.txt": b"abc\x81def"}) / "t.txt"
    with pytest.raises(CorpusError, match=r"t.txt is not valid cp1252 \(byte 3: b'\\x81'\)"):
        prepare(path, chunk_size=2, encoding="cp1252")
    odd = tree(tmp_path, {"u.txt": "ab".encode("utf-16-le") + b"c"}) / "u.txt"  # a half character at the end
    with pytest.raises(CorpusError, match=r"u.txt is not valid utf-16-le \(byte 4: b'c'\)"):
        prepare(odd, chunk_size=3, encoding="utf-16-le")
    for name in ("no-such-codec", "base64", "rot13", "zlib"):
        with pytest.raises(LookupError):
            prepare(path, encoding=name)


@pytest.mark.parametrize("text, encoding, guess", [
    ("héllo", "utf-16", "utf-16"),
    ("plain ascii, then é and more ascii", "utf-16-le", "utf-16-le"),
    ("it's a café", "utf-16-be", "utf-16-be"),
    ("ab" * 3000 + "x and then é", "utf-16-le", "utf-16-le"),  # the bad byte far from the start, at an odd offset
    ("xyz" * 3000 + "x and then é", "utf-16-be", "utf-16-be"),
    ("café crème", "latin-1", "cp1252"),
    ("“quoted”", "cp1252", "cp1252"),
    ("x\x81 \xa0 brûlée", "latin-1", "latin-1"),  # a byte cp1252 lacks: Latin-1
    ("\x00\x01\x02\x03\xff\xfe\x00\x10\x11" * 20, "latin-1", None),  # binary: no guess
])
def test_the_utf8_error_suggests_an_encoding_when_the_bytes_look_like_one(tmp_path, text, encoding, guess):
    import re

    path = tree(tmp_path, {"t.txt": text.encode(encoding)}) / "t.txt"
    with pytest.raises(CorpusError) as e:
        prepare(path, chunk_size=1000)
    message = str(e.value)
    if guess is None:
        assert "it looks like" not in message and "iconv -t UTF-8" in message
        return
    assert "it looks like" in message and re.search(r"pass --encoding (\S+),", message).group(1) == guess
    assert_same(prepare(path, encoding=guess), Corpus.from_text(text))  # the advice works


def test_utf16_without_a_byte_order_mark_needs_its_byte_order(tmp_path):
    path = tree(tmp_path, {"t.txt": "abc".encode("utf-16-le")}) / "t.txt"
    with pytest.raises(CorpusError, match="no|not start with a byte-order mark.*--encoding utf-16-le or utf-16-be"):
        prepare(path, encoding="utf-16")


def test_an_archive_is_inflated_a_chunk_at_a_time(tmp_path, cache):
    """A small archive that inflates to far more (a bomb, in miniature) costs a few chunks of memory."""
    size = 32 << 20
    with gzip.open(tmp_path / "bomb.gz", "wb", compresslevel=9) as f:
        line = b"all work and no play makes jack a dull boy\n"
        for _ in range(size // (1 << 20)):
            f.write(line * ((1 << 20) // len(line)))
    assert (tmp_path / "bomb.gz").stat().st_size < size // 100
    tracemalloc.start()
    try:
        got = prepare(tmp_path / "bomb.gz", chunk_size=1 << 20, in_memory_below=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(got.ids, np.memmap) and len(got) > 30 << 20
    assert peak < 12 << 20, f"{peak / 2**20:.1f} MiB traced while inflating {size >> 20} MiB"
    assert not [p for p in (cache / "corpora").iterdir() if p.name.startswith(".tmp")]  # the spool is gone


def test_stdin_may_be_an_archive_too(cache):
    import io

    assert_same(prepare(io.BytesIO(gzip.compress(TEXT.encode())), chunk_size=3), Corpus.from_text(TEXT))
    assert_same(prepare(io.BytesIO("\ufeffé".encode("utf-16")), encoding="utf-16"), Corpus.from_text("é"))
