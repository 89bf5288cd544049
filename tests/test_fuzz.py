"""Fuzzing (hypothesis): hostile checkpoints through load() and everything that uses a loaded checkpoint, hostile
option values through the CLI, and a few hostile files through the real CLI in subprocesses.

What must hold for any input: a CheckpointError (one line) or a usable checkpoint; exit 0, 1 or 2 and never a
traceback; bounded time and memory; an existing checkpoint byte-identical afterwards. The examples are drawn from
a fixed seed here (the suite stays fast and repeatable); tests/benchmarks/fuzz_campaign.py draws many more.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
import hostile  # noqa: E402

from charrnn.checkpoint import CheckpointError, describe, load  # noqa: E402
from charrnn.config import SampleConfig  # noqa: E402

FAST = settings(max_examples=int(os.environ.get("CHARRNN_FUZZ_EXAMPLES", 120)), deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck), database=None)

VALID, CORPUS = hostile.valid_checkpoint()
MEMBERS = hostile.members_of(VALID)
NAMES = sorted(MEMBERS)
ODD_NAMES = ["format_version.npy", "meta.npy", "vocab.npy", "rnn.weight_ih_l9.npy", "resume/optim/t.npy",
             "resume/params/decoder.weight.npy", "resume/state/0/1.npy", "resume/state/7/0.npy", "resume/x.npy",
             "resume/optim/m/nope.npy", "format_version", "meta", "notes.txt", "../evil.npy", "", "a/b/c"]
DTYPES = ["<f4", "<f8", ">f8", "<f2", "<i8", "<u4", ">u4", "|b1", "|u1", "<U3", "|S3", "<c16", "|V8", "|O",
          [("a", "<f4")], ("<f4", (2,))]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@st.composite
def member_bytes(draw) -> bytes:
    """The content of one member: a small .npy of a random dtype and shape, a header claiming a (possibly huge)
    shape with little data, or raw bytes."""
    kind = draw(st.sampled_from(["array", "header", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    descr = draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 6) if kind == "array" else st.integers(0, 2**40), max_size=3))
    if kind == "array":
        try:
            dtype = np.dtype(descr if not isinstance(descr, list) else [tuple(x) for x in descr])
            if dtype.hasobject:
                raise TypeError
        except TypeError:
            return hostile.npy_header(descr, shape) + draw(st.binary(max_size=64))
        n = math.prod(shape) * dtype.itemsize
        return hostile.npy_header(dtype.descr if dtype.names else dtype.str, shape) + draw(
            st.binary(min_size=n, max_size=n))
    return hostile.npy_header(descr, shape, draw(st.booleans())) + draw(st.binary(max_size=64))


@st.composite
def text_member(draw) -> tuple[str, bytes]:
    """A JSON text member: random JSON, the real one with a field set to random JSON, or deep nesting."""
    key = draw(st.sampled_from(["model_config", "train_config", "meta"]))
    kind = draw(st.sampled_from(["random", "field", "field", "deep"]))
    if kind == "deep":
        return f"{key}.npy", hostile.nested(draw(st.integers(20, 5000)))
    if kind == "random":
        return f"{key}.npy", hostile.text(draw(json_values))
    obj = json.loads(str(np.load(__import__("io").BytesIO(MEMBERS[f"{key}.npy"]))))
    field = draw(st.sampled_from(sorted(obj) + ["history", "cursor", "rng", "unknown"]))
    obj[field] = draw(json_values | st.integers(-1, 3) | st.sampled_from([0, -1, 10**9, 2**64, "7", 1e308]))
    return f"{key}.npy", hostile.text(obj)


@st.composite
def hostile_files(draw) -> bytes:
    """A real checkpoint, changed by one to three mutations, zipped (maybe deflated), maybe truncated or flipped."""
    members = dict(MEMBERS)
    for _ in range(draw(st.integers(1, 2))):
        what = draw(st.sampled_from(["text"] * 5 + ["member"] * 3 + ["drop", "bomb", "rename"]))
        if what == "member":
            name = draw(st.sampled_from(NAMES + NAMES + ODD_NAMES) | st.text(min_size=1, max_size=10))
            members[name] = draw(member_bytes())
        elif what == "text":
            name, content = draw(text_member())
            members[name] = content
        elif what == "drop" and members:
            members.pop(draw(st.sampled_from(sorted(members))))
        elif what == "bomb":
            members[draw(st.sampled_from(NAMES + ODD_NAMES))] = hostile.zeros(draw(st.integers(2**16, 2**22)))
        elif what == "rename" and members:
            name = draw(st.sampled_from(sorted(members)))
            members[name[:-4] if name.endswith(".npy") else name + "x"] = members.pop(name)
    data = hostile.build(members, deflate=draw(st.booleans()))
    truncate = draw(st.floats(0, 1)) if draw(st.integers(0, 9)) == 0 else None
    flips = draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3)) if draw(
        st.integers(0, 9)) == 0 else []
    return hostile.damage(data, truncate, tuple(flips))


def use(ckpt) -> None:
    """What the commands do with a loaded checkpoint: describe it, sample from it, resume its run for a step."""
    from charrnn.sample import as_vocab, generate
    from charrnn.train import Diverged, Run

    json.dumps(describe(ckpt))
    rng = np.random.default_rng(0)
    text = "".join(generate(ckpt.params, ckpt.model_config, as_vocab(ckpt.vocab), "", SampleConfig(length=3), rng))
    text.encode("utf-8")
    try:
        run = Run(ckpt.model_config, ckpt.train_config, CORPUS, resume=ckpt)
        with np.errstate(all="ignore"):
            next(iter(run.steps()), None)
    except (ValueError, Diverged):
        pass


@FAST
@given(data=hostile_files())
def test_hostile_checkpoints_load_or_fail_in_one_line_in_bounded_time_and_memory(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "h.npz"
    path.write_bytes(data)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        ckpt = load(path)
    except CheckpointError as e:
        assert "\n" not in str(e) and str(e)
        ckpt = None
    finally:
        took = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= 20 * len(data) + 2**24, f"load() took {peak:,} bytes for a {len(data):,}-byte file"
    assert took < 5.0, f"load() took {took:.1f} s"
    if ckpt is not None:
        use(ckpt)


# ----------------------------------------------------------------------------------------- fit_batch


def brute_fit_batch(n_chars: int, batch: int, seq: int) -> int:
    """fit_batch as first written: a search over every B in 1..batch."""
    from charrnn.train import trained_chars

    covered = [trained_chars(n_chars, B, seq) for B in range(1, batch + 1)]
    return max(B for B in range(1, batch + 1) if covered[B - 1] >= 0.95 * max(covered))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(n=st.integers(2, 5000), seq=st.integers(1, 80), batch=st.integers(1, 400))
def test_fit_batch_equals_the_search_over_every_batch(n, seq, batch):
    from charrnn.train import fit_batch

    seq = min(seq, n - 1)
    assert fit_batch(n, batch, seq) == brute_fit_batch(n, batch, seq)


def test_fit_batch_is_bounded_for_absurd_batches():
    from charrnn.train import fit_batch

    tracemalloc.start()
    assert fit_batch(4000, 10**9, 64) == fit_batch(4000, 100_000, 64) == brute_fit_batch(4000, 100, 64)
    assert fit_batch(10**9, 10**9, 1) > 0  # O(√n) candidates: ~63,000 here, not 10**9
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**23


# ------------------------------------------------------------------------------------ options, CliRunner

HOSTILE_NUMBERS = ["0", "-1", "nan", "inf", "-inf", "1e400", "10000000000", "99999999999999999999999", "abc", "",
                   "1.5", "0x10", "-0", "1e-400"]
TRAIN_OPTIONS = ["--hidden", "--layers", "--embed", "--batch", "--seq", "--lr", "--momentum", "--weight-decay",
                 "--clip", "--warmup", "--steps", "--epochs", "--max-time", "--val-frac", "--eval-every",
                 "--patience", "--checkpoint-every", "--seed", "--dropout", "--threads"]
SAMPLE_OPTIONS = ["-n", "-t", "--top-k", "--top-p", "--seed", "--num-samples", "--beam"]
EVAL_OPTIONS = ["--batch"]
TINY = ["--hidden", "4", "--embed", "3", "--layers", "1", "--seq", "8", "--batch", "2", "--steps", "2",
        "--val-frac", "0", "--seed", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from charrnn.checkpoint import save

    d = tmp_path_factory.mktemp("cli")
    (d / "corpus.txt").write_text(hostile.CORPUS)
    save(d / "model.npz", VALID)
    return d


def _no_traceback(result) -> None:
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(choice=st.lists(st.tuples(st.sampled_from(TRAIN_OPTIONS), st.sampled_from(HOSTILE_NUMBERS)), min_size=1,
                       max_size=3))
def test_hostile_train_options_exit_0_1_or_2(files, tmp_path_factory, choice):
    from typer.testing import CliRunner

    from charrnn.cli import app

    out = tmp_path_factory.mktemp("out") / "m.npz"
    args = ["train", str(files / "corpus.txt"), "-o", str(out), *TINY]
    for option, value in choice:  # later options win: each hostile value replaces the tiny one
        args += [option, value]
    if any(o in ("--hidden", "--layers", "--embed", "--batch", "--seq", "--steps") for o, _ in choice):
        args += ["--max-time", "1s"]  # a valid but large value must not make this test slow
    _no_traceback(CliRunner().invoke(app, args))


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(choice=st.lists(st.tuples(st.sampled_from(SAMPLE_OPTIONS + EVAL_OPTIONS), st.sampled_from(HOSTILE_NUMBERS)),
                       min_size=1, max_size=3))
def test_hostile_sample_and_eval_options_exit_0_1_or_2(files, choice):
    from typer.testing import CliRunner

    from charrnn.cli import app

    long = ("-n", "--num-samples")  # a valid huge length is a legitimate endless stream: not drawn for these
    sample = [x for o, v in choice if o in SAMPLE_OPTIONS and not (o in long and v == "10000000000")
              for x in (o, v)]
    if sample:
        large = {"-n": "20", "--num-samples": "2"}  # bounds for valid but long runs
        args = ["sample", "-c", str(files / "model.npz"), *sample]
        args += [x for o, v in large.items() if o not in sample for x in (o, v)]
        _no_traceback(CliRunner().invoke(app, args))
    batch = [x for o, v in choice if o in EVAL_OPTIONS for x in (o, v)]
    if batch:
        _no_traceback(CliRunner().invoke(app, ["eval", str(files / "corpus.txt"), "-c", str(files / "model.npz"),
                                               *batch]))


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(corpus=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
       seq=st.sampled_from(["1", "8", "400"]), val_frac=st.sampled_from(["0", "0.1", "0.5"]))
def test_hostile_corpora_exit_0_1_or_2(tmp_path_factory, corpus, seq, val_frac):
    """Any bytes as a corpus (empty, one character, invalid UTF-8, lone surrogates, NUL, a byte-order mark)."""
    from typer.testing import CliRunner

    from charrnn.cli import app

    d = tmp_path_factory.mktemp("corpus")
    (d / "c.txt").write_bytes(corpus)
    args = ["train", str(d / "c.txt"), "-o", str(d / "m.npz"), *TINY, "--seq", seq, "--val-frac", val_frac]
    _no_traceback(CliRunner().invoke(app, args))


ARCHIVES = {".gz": __import__("gzip").compress, ".bz2": __import__("bz2").compress, ".xz": __import__("lzma").compress}


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(suffix=st.sampled_from(sorted(ARCHIVES)), text=st.binary(max_size=200),
       damage=st.sampled_from(["none", "cut", "flip", "raw", "tail"]), at=st.integers(0, 10_000),
       encoding=st.sampled_from([None, "utf-16", "latin-1"]))
def test_hostile_archives_exit_0_1_or_2_in_one_line(tmp_path_factory, suffix, text, damage, at, encoding):
    """Archives of any bytes, cut short, with a flipped byte, with garbage after them or not archives at all."""
    from typer.testing import CliRunner

    from charrnn.cli import app

    packed = ARCHIVES[suffix](text)
    at %= len(packed)
    packed = {"none": packed, "cut": packed[:at], "flip": packed[:at] + bytes([packed[at] ^ 0x5A]) + packed[at + 1:],
              "raw": text, "tail": packed + text}[damage]
    d = tmp_path_factory.mktemp("archive")
    (d / ("c.txt" + suffix)).write_bytes(packed)
    args = ["train", str(d / ("c.txt" + suffix)), "-o", str(d / "m.npz"), *TINY, "--seq", "4"]
    result = CliRunner().invoke(app, args + (["--encoding", encoding] if encoding else []))
    _no_traceback(result)
    if result.exit_code:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# ------------------------------------------------------------------------------ the real CLI, subprocesses

FIXED_HOSTILE = {
    "deep_meta": lambda m: m.update({"meta.npy": hostile.nested(5000)}),
    "format_version_not_npy": lambda m: m.update({"format_version": b"x"}) or m.pop("format_version.npy"),
    "surrogate_vocab": lambda m: m.update({"vocab.npy": hostile.npy(np.array(
        sorted(set(np.load(__import__("io").BytesIO(m["vocab.npy"])).tolist()) - {97} | {0xD800}), np.uint32))}),
    "resume_bomb": lambda m: m.update({"resume/optim/t.npy": hostile.zeros(2**22)}),
    "history_string": lambda m: m.update({"meta.npy": hostile.text(
        {**json.loads(str(np.load(__import__("io").BytesIO(m["meta.npy"])))), "history": "x"})}),
}
CASES = [("deep_meta", "sample"), ("format_version_not_npy", "info"), ("resume_bomb", "eval"),
         ("history_string", "train")]  # (the in-process cases above cover the rest of the list)


@pytest.mark.parametrize("name, command", CASES)
def test_hostile_files_through_the_real_cli(files, tmp_path, name, command):
    members = dict(MEMBERS)
    FIXED_HOSTILE[name](members)
    path = tmp_path / "h.npz"
    path.write_bytes(hostile.build(members, deflate=name == "resume_bomb"))
    before = path.read_bytes()
    corpus = str(files / "corpus.txt")
    args = {"sample": ["sample", "-c", path, "-n", "5"], "info": ["info", "-c", path],
            "eval": ["eval", corpus, "-c", path], "train": ["train", corpus, "-o", path, "--resume", "--steps", "9"]}
    done = subprocess.run([sys.executable, "-m", "charrnn", *map(str, args[command])], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert path.read_bytes() == before


def test_a_fifo_as_checkpoint_is_an_error_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "fifo.npz")
    done = subprocess.run([sys.executable, "-m", "charrnn", "info", "-c", str(tmp_path / "fifo.npz")],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and "FIFO" in done.stderr and "Traceback" not in done.stderr
