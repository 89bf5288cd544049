"""Corpora of any size through the command line: the cache in train/resume/eval, stdin, --val-chars, --unknown.

`charrnn.corpus.IN_MEMORY_BELOW` is set to 0 where a test needs the on-disk, memory-mapped path on a tiny corpus.
"""

import hashlib
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from charrnn import corpus as corpus_mod
from charrnn.checkpoint import load
from charrnn.cli import app

WORDS = "the cat sat on a mat , and a dog ran to the cat . then they slept".split()
TEXT = " ".join(random.Random(2).choices(WORDS, k=300)) + "\n"  # ~1,100 characters
TINY = ("--hidden", "8", "--layers", "1", "--embed", "4", "--batch", "4", "--seq", "8", "--seed", "1")


def cli(*args, input=None):
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def on_disk(monkeypatch):
    """Every corpus, however small, goes through the on-disk cache."""
    monkeypatch.setattr(corpus_mod, "IN_MEMORY_BELOW", 0)
    return os.environ["CHARRNN_CACHE_DIR"]


def weights(path) -> dict[str, np.ndarray]:
    ckpt = load(path)
    return {k: v for k, v in ckpt.resume.items() if k.startswith("params/")}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def test_memory_mapped_training_equals_in_memory_training(corpus, tmp_path, monkeypatch):
    assert cli("train", corpus, "-o", tmp_path / "mem.npz", *TINY, "--steps", "6", "--eval-every", "3").exit_code == 0
    monkeypatch.setattr(corpus_mod, "IN_MEMORY_BELOW", 0)
    assert cli("train", corpus, "-o", tmp_path / "map.npz", *TINY, "--steps", "6", "--eval-every", "3").exit_code == 0
    assert len(list((tmp_path.parent / os.environ["CHARRNN_CACHE_DIR"] / "corpora").glob("*.npy"))) == 1
    assert_same_weights(tmp_path / "mem.npz", tmp_path / "map.npz")
    assert load(tmp_path / "mem.npz").meta["best_val_loss"] == load(tmp_path / "map.npz").meta["best_val_loss"]


def test_a_resume_across_a_rebuilt_cache_is_exact(corpus, tmp_path, on_disk):
    straight, split = tmp_path / "straight.npz", tmp_path / "split.npz"
    assert cli("train", corpus, "-o", straight, *TINY, "--steps", "8", "--eval-every", "3").exit_code == 0
    assert cli("train", corpus, "-o", split, *TINY, "--steps", "3", "--eval-every", "3").exit_code == 0
    import shutil

    shutil.rmtree(on_disk)  # the cache is gone: the resume prepares the corpus again
    result = cli("train", corpus, "-o", split, "--resume", "--steps", "8")
    assert result.exit_code == 0, result.stderr
    assert list((tmp_path.parent / on_disk / "corpora").glob("*.npy"))  # rebuilt
    assert_same_weights(straight, split)


def test_resume_checks_the_streamed_hash(corpus, tmp_path, on_disk):
    out = tmp_path / "m.npz"
    assert cli("train", corpus, "-o", out, *TINY, "--steps", "2").exit_code == 0
    assert load(out).meta["corpus_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    corpus.write_text(TEXT.replace("cat", "cot"), encoding="utf-8")
    result = cli("train", corpus, "-o", out, "--resume", "--steps", "4")
    assert result.exit_code == 1 and "SHA-256" in result.stderr


def test_stdin_through_a_real_pipe(corpus, tmp_path):
    out = tmp_path / "m.npz"
    cmd = f"cat {corpus} | {sys.executable} -m charrnn train - -o {out} {' '.join(TINY)} --steps 2"
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{out}\n"
    assert load(out).meta["corpus_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()


def test_stdin_is_spooled_when_large_and_gives_the_same_run(corpus, tmp_path, on_disk):
    assert cli("train", corpus, "-o", tmp_path / "file.npz", *TINY, "--steps", "3").exit_code == 0
    result = cli("train", "-", "-o", tmp_path / "stdin.npz", *TINY, "--steps", "3", input=TEXT.encode())
    assert result.exit_code == 0, result.stderr
    assert_same_weights(tmp_path / "file.npz", tmp_path / "stdin.npz")
    assert not [p for p in (tmp_path.parent / on_disk / "corpora").iterdir() if p.name.startswith(".tmp")]


def test_invalid_utf8_names_the_absolute_byte(tmp_path, on_disk):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xef\xbb\xbf" + b"ab" * 100 + b"\xff" + b"cd" * 50)
    result = cli("train", path, "-o", tmp_path / "m.npz", *TINY, "--steps", "1")
    assert result.exit_code == 1
    assert f"{path} is not valid UTF-8 (byte 203: b'\\xff')" in result.stderr
    assert not (tmp_path.parent / on_disk / "corpora").exists() or not any(
        p.suffix == ".json" for p in (tmp_path.parent / on_disk / "corpora").iterdir())


def test_val_chars_bounds_validation_to_a_fixed_part_and_is_reported(corpus, tmp_path):
    out = tmp_path / "m.npz"
    result = cli("train", corpus, "-o", out, *TINY, "--steps", "4", "--eval-every", "2", "--val-frac", "0.2",
                 "--val-chars", "40")
    assert result.exit_code == 0, result.stderr
    ckpt = load(out)
    assert ckpt.train_config.val_chars == 40
    assert ckpt.meta["val_chars"] == 40 - 1  # the first 40 characters, one stream (no stream under 1,000)
    assert "val chars" in result.stderr and "39 of" in result.stderr
    info = json.loads(cli("info", "-c", out, "--json").stdout)
    assert info["val_chars"] == 39
    conflict = cli("train", corpus, "-o", out, "--resume", "--steps", "6", "--val-chars", "80")
    assert conflict.exit_code == 1 and "--val-chars" in conflict.stderr
    whole = tmp_path / "whole.npz"
    assert cli("train", corpus, "-o", whole, *TINY, "--steps", "2", "--val-frac", "0.2").exit_code == 0
    n_val = round(len(TEXT) * 0.2)
    assert load(whole).meta["val_chars"] == n_val - 1  # a small split is scored whole, in one stream


@pytest.fixture
def model(corpus, tmp_path):
    out = tmp_path / "model.npz"
    assert cli("train", corpus, "-o", out, *TINY, "--steps", "3", "--val-frac", "0").exit_code == 0
    return out


def scored(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_eval_of_a_memory_mapped_text_equals_the_in_memory_one(model, corpus, monkeypatch):
    in_memory = scored(cli("eval", corpus, "-c", model, "--json"))
    monkeypatch.setattr(corpus_mod, "IN_MEMORY_BELOW", 0)
    assert scored(cli("eval", corpus, "-c", model, "--json")) == in_memory
    assert scored(cli("eval", corpus, "-c", model, "--json")) == in_memory  # from the cache


@pytest.mark.parametrize("disk", [False, True])
def test_eval_unknown_error_and_skip(model, tmp_path, monkeypatch, disk):
    if disk:
        monkeypatch.setattr(corpus_mod, "IN_MEMORY_BELOW", 0)
    odd = tmp_path / "odd.txt"
    odd.write_text(TEXT[:300] + "é ö ✓ é" + TEXT[300:600], encoding="utf-8")
    error = cli("eval", odd, "-c", model)
    assert error.exit_code == 1 and error.stdout == ""
    assert "3 character(s)" in error.stderr and "4 times" in error.stderr and ": 'é', 'ö', '✓';" in error.stderr
    skipped = cli("eval", odd, "-c", model, "--json", "--unknown", "skip")
    assert "skipped 4 occurrence(s) of 3 character(s)" in skipped.stderr and "'é', 'ö', '✓'" in skipped.stderr
    clean = tmp_path / "clean.txt"
    clean.write_text(TEXT[:300] + "   " + TEXT[300:600], encoding="utf-8")  # what is left: the spaces stay
    assert scored(skipped) == scored(cli("eval", clean, "-c", model, "--json"))
    assert cli("eval", odd, "-c", model, "--unknown", "maybe").exit_code == 2


def test_sample_unknown_error_and_skip(model):
    error = cli("sample", "-c", model, "--prefix", "the ✓ cat é", "-n", "5", "-t", "0")
    assert error.exit_code == 1 and error.stdout == ""
    assert ": 'é', '✓';" in error.stderr and "--unknown skip" in error.stderr
    skipped = cli("sample", "-c", model, "--prefix", "the ✓ cat é", "-n", "5", "-t", "0", "--unknown", "skip")
    assert skipped.exit_code == 0, skipped.stderr
    plain = cli("sample", "-c", model, "--prefix", "the  cat ", "-n", "5", "-t", "0")
    assert skipped.stdout == plain.stdout and skipped.stdout.startswith("the  cat ")
    assert "skipped 2 occurrence(s) of 2 character(s)" in skipped.stderr


def test_preparing_a_large_corpus_off_a_terminal_writes_plain_lines(corpus, tmp_path, on_disk, monkeypatch):
    from charrnn.cli import progress

    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)
    result = cli("train", corpus, "-o", tmp_path / "m.npz", *TINY, "--steps", "1")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"reading {corpus}: ") and line.endswith(" MiB") for line in lines)
    assert any(line.startswith(f"encoding {corpus}: ") for line in lines)
    assert "\r" not in result.stderr  # no bar off a terminal
    quiet = cli("train", corpus, "-o", tmp_path / "q.npz", *TINY, "--steps", "1", "-q")
    assert quiet.exit_code == 0 and "checking" not in quiet.stderr and "reading" not in quiet.stderr


# ------------------------------------------------------------------ several files, folders, archives, encodings

def folder(tmp_path):
    """A first file and a folder: (paths to give, the files `cat` would join in that order, the text)."""
    import gzip

    cut = [0, 150, 400, 700, 900, len(TEXT)]
    part = [TEXT[a:b] for a, b in zip(cut, cut[1:])]
    d = tmp_path / "d"
    (d / "a").mkdir(parents=True)
    first = tmp_path / "first.txt"
    first.write_text(part[0])
    (d / "b.txt").write_text(part[3])
    (d / "a" / "x.txt").write_text(part[1])
    (d / "a-b.txt").write_text(part[2])
    (d / "c.txt.gz").write_bytes(gzip.compress(part[4].encode()))
    (d / ".hidden.txt").write_text("never read")
    (d / "notes.md").write_text("not a *.txt")
    plain = tmp_path / "c.txt"
    plain.write_text(part[4])
    return [first, d], [first, d / "a" / "x.txt", d / "a-b.txt", d / "b.txt", plain]


@pytest.mark.parametrize("disk", [False, True])
def test_a_folder_trains_exactly_like_cat_of_its_sorted_files(tmp_path, monkeypatch, disk):
    if disk:
        monkeypatch.setattr(corpus_mod, "IN_MEMORY_BELOW", 0)
    paths, cat = folder(tmp_path)
    args = ("-o", tmp_path / "dir.npz", *TINY, "--steps", "4", "--eval-every", "2")
    result = cli("train", *paths, "--include", "*.txt", "--include", "*.gz", *args)
    assert result.exit_code == 0, result.stderr
    piped = b"".join(p.read_bytes() for p in cat)
    assert piped.decode() == TEXT
    result = cli("train", "-", "-o", tmp_path / "cat.npz", *TINY, "--steps", "4", "--eval-every", "2", input=piped)
    assert result.exit_code == 0, result.stderr
    assert_same_weights(tmp_path / "dir.npz", tmp_path / "cat.npz")
    a, b = load(tmp_path / "dir.npz").meta, load(tmp_path / "cat.npz").meta
    assert a["corpus_sha256"] == b["corpus_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    assert (a["corpus_files"], b["corpus_files"]) == (5, 1)
    assert json.loads(cli("info", "-c", tmp_path / "dir.npz", "--json").stdout)["corpus_files"] == 5
    assert f"{len(TEXT):,} characters from 5 file(s)" in cli("info", "-c", tmp_path / "dir.npz").stdout


def test_a_folder_run_resumes_and_a_changed_folder_is_refused(tmp_path, on_disk):
    paths, _ = folder(tmp_path)
    out, straight = tmp_path / "m.npz", tmp_path / "straight.npz"
    assert cli("train", *paths, "-o", straight, *TINY, "--steps", "5").exit_code == 0
    assert cli("train", *paths, "-o", out, *TINY, "--steps", "2").exit_code == 0
    result = cli("train", *paths, "-o", out, "--resume", "--steps", "5")
    assert result.exit_code == 0, result.stderr
    assert_same_weights(out, straight)
    (paths[1] / "a" / "new.txt").write_text("a file added")
    added = cli("train", *paths, "-o", out, "--resume", "--steps", "6")
    assert added.exit_code == 1 and "read from 7 file(s), the run's from 6: a file was added" in added.stderr
    (paths[1] / "a" / "new.txt").unlink()
    (paths[1] / "b.txt").write_text((paths[1] / "b.txt").read_text().replace("cat", "cot"))
    changed = cli("train", *paths, "-o", out, "--resume", "--steps", "6")
    assert changed.exit_code == 1 and "SHA-256 differs" in changed.stderr and "a file changed" in changed.stderr


def test_text_in_other_encodings(tmp_path, model):
    latin = tmp_path / "latin.txt"
    latin.write_bytes((TEXT[:500] + "café crème\n").encode("latin-1"))
    error = cli("train", latin, "-o", tmp_path / "m.npz", *TINY, "--steps", "1")
    assert error.exit_code == 1 and len(error.stderr.strip().splitlines()) == 1
    assert f"{latin} is not valid UTF-8 (byte 503: b'\\xe9'); it looks like" in error.stderr
    assert "pass --encoding cp1252" in error.stderr
    utf16 = tmp_path / "u16.txt"
    utf16.write_bytes((TEXT[:500] + "café crème\n").encode("utf-16"))
    assert "it looks like UTF-16: pass --encoding utf-16" in cli("train", utf16, "-o", tmp_path / "m.npz").stderr
    want = hashlib.sha256((TEXT[:500] + "café crème\n").encode()).hexdigest()
    for path, encoding, out in [(latin, "latin-1", "l.npz"), (utf16, "utf-16", "u.npz")]:
        result = cli("train", path, "--encoding", encoding, "-o", tmp_path / out, *TINY, "--steps", "1")
        assert result.exit_code == 0, result.stderr
        assert load(tmp_path / out).meta["corpus_sha256"] == want
    assert_same_weights(tmp_path / "l.npz", tmp_path / "u.npz")
    unknown = cli("train", latin, "--encoding", "klingon", "-o", tmp_path / "k.npz")
    assert unknown.exit_code == 2 and "not a text encoding" in unknown.stderr
    plain = tmp_path / "plain.txt"
    plain.write_text(TEXT[:500] + "café crème\n", encoding="utf-8")
    assert scored(cli("eval", utf16, "-c", model, "--json", "--encoding", "utf-16", "--unknown", "skip")) == \
        scored(cli("eval", plain, "-c", model, "--json", "--unknown", "skip"))


def test_eval_of_a_folder_equals_eval_of_its_text(tmp_path, model):
    paths, cat = folder(tmp_path)
    joined = tmp_path / "joined.txt"
    joined.write_bytes(b"".join(p.read_bytes() for p in cat))
    want = scored(cli("eval", joined, "-c", model, "--json"))
    assert scored(cli("eval", *paths, "--include", "*.txt", "--include", "*.gz", "-c", model, "--json")) == want
    named = cli("eval", joined, "--include", "*.md", "-c", model, "--json")
    assert scored(named) == want and "--include picks among the files found in folders" in named.stderr
    everything = scored(cli("eval", *paths, "-c", model, "--json", "--unknown", "skip", "--batch", "1"))
    assert everything["chars"] == len(TEXT) + len("not a .tt") - 1  # notes.md read too (less its * and x)


def test_inspect_reads_other_encodings_through_the_same_helper(tmp_path, model):
    utf16, plain = tmp_path / "u16.txt", tmp_path / "plain.txt"
    utf16.write_bytes(TEXT[:400].encode("utf-16"))
    plain.write_text(TEXT[:400], encoding="utf-8")
    want = scored(cli("inspect", plain, "-c", model, "--json")) | {"text": None}
    assert scored(cli("inspect", utf16, "-c", model, "--json", "--encoding", "utf-16")) | {"text": None} == want
    assert "--encoding utf-16" in cli("inspect", utf16, "-c", model, "--json").stderr
