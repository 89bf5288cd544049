"""`charrnn eval` and `charrnn info` through Typer's CliRunner: output, options, and every bad input README.md names."""

import json
import math
import random
import shutil
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from charrnn import checkpoint, config, data
from charrnn.checkpoint import load
from charrnn.cli import app
from charrnn.train import evaluate

WORDS = "the cat sat on a mat , and a dog ran to the cat . then they slept".split()
TEXT = " ".join(random.Random(2).choices(WORDS, k=180)) + "\n"
EVAL_KEYS = {"nats_per_char", "bits_per_char", "perplexity", "chars", "streams"}


def cli(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny LSTM trained for 25 steps, validating every step (so its curve has more than 20 entries)."""
    tmp = tmp_path_factory.mktemp("model")
    (tmp / "corpus.txt").write_text(TEXT)
    out = tmp / "m.npz"
    result = cli("train", tmp / "corpus.txt", "-o", out, "--hidden", "8", "--layers", "2", "--embed", "4",
                 "--batch", "4", "--seq", "8", "--seed", "5", "--steps", "25", "--eval-every", "1", "--lr", "0.02")
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return path


def error_line(result, code) -> str:
    assert result.exit_code == code and result.stdout == ""
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: "), result.stderr
    return lines[0]


# ------------------------------------------------------------------------------------------------------- eval


def test_eval_json_matches_the_training_evaluation(ckpt, text_file):
    result = cli("eval", text_file, "-c", ckpt, "--json")
    assert result.exit_code == 0 and result.stderr == ""
    report = json.loads(result.stdout)
    assert EVAL_KEYS <= set(report)
    c = load(ckpt)
    want = evaluate(c.params, c.model_config, data.Vocab(c.vocab).encode(TEXT), 32)
    assert report["nats_per_char"] == want.nats_per_char
    assert report["bits_per_char"] == pytest.approx(want.nats_per_char / math.log(2))
    assert report["perplexity"] == pytest.approx(math.exp(want.nats_per_char))
    assert (report["chars"], report["streams"]) == (want.chars, 1) == (len(TEXT) - 1, 1)  # under 2,000: one stream
    assert report["nats_per_char"] < math.log(len(c.vocab))


@pytest.mark.parametrize("batch", [1, 3])
def test_eval_batch_sets_the_streams(ckpt, tmp_path, batch):
    text = TEXT * 5  # 3,000 characters and more: room for three streams of 1,000
    (tmp_path / "t.txt").write_text(text)
    report = json.loads(cli("eval", tmp_path / "t.txt", "-c", ckpt, "--json", "--batch", batch).stdout)
    assert report["streams"] == batch and report["chars"] == batch * (len(text) // batch - 1)


@pytest.mark.parametrize("n, streams", [(87, 1), (1999, 1), (2000, 2), (5_000, 5), (1_000_000, 32)])
def test_eval_cuts_no_stream_shorter_than_1000_characters(ckpt, tmp_path, n, streams):
    """A short text is one stream (scored as the model reads it, from its start); a longer one gets a stream per
    1,000 characters, up to --batch 32; `streams` and `chars` say what was scored."""
    text = (TEXT * (n // len(TEXT) + 1))[:n]
    (tmp_path / "t.txt").write_text(text)
    result = cli("eval", tmp_path / "t.txt", "-c", ckpt, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["streams"], report["chars"]) == (streams, streams * (n // streams - 1))
    if n < 5_000:
        c = load(ckpt)
        one = evaluate(c.params, c.model_config, data.Vocab(c.vocab).encode(text), batch=1)
        assert streams > 1 or report["nats_per_char"] == one.nats_per_char


def test_eval_table_and_stdin(ckpt, text_file):
    table = cli("eval", "-", "-c", ckpt, input=TEXT)
    assert table.exit_code == 0
    report = json.loads(cli("eval", text_file, "-c", ckpt, "--json").stdout)
    for header in ("nats/char", "bits/char", "perplexity", "chars", "streams"):
        assert header in table.stdout
    assert f"{report['nats_per_char']:.4f}" in table.stdout and f"{report['chars']:,}" in table.stdout


def test_eval_finds_the_default_checkpoint(ckpt, text_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(ckpt, tmp_path / config.DEFAULT_CHECKPOINT)
    result = cli("eval", text_file, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == json.loads(
        cli("eval", text_file, "-c", ckpt, "--json").stdout)


def test_eval_without_any_checkpoint_says_how_to_train_one(text_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("charrnn.cli.common.BUNDLED", tmp_path / "no-bundled-model.npz")
    line = error_line(cli("eval", text_file), 1)
    assert "charrnn train" in line and config.DEFAULT_CHECKPOINT in line


def test_eval_with_a_missing_checkpoint_file_is_a_usage_error(text_file, tmp_path):
    assert "does not exist" in error_line(cli("eval", text_file, "-c", tmp_path / "nope.npz"), 2)


def test_eval_with_a_missing_text_or_an_empty_folder_is_a_usage_error(ckpt, tmp_path):
    result = cli("eval", tmp_path / "nope.txt", "-c", ckpt)
    assert result.exit_code == 2 and "Usage:" in result.stderr
    (tmp_path / "empty").mkdir()
    assert "holds no files" in error_line(cli("eval", tmp_path / "empty", "-c", ckpt), 2)


def test_eval_of_characters_outside_the_vocabulary_names_them(ckpt, tmp_path):
    (tmp_path / "t.txt").write_text("the cat \u00e9t\u00e9 Zz")
    line = error_line(cli("eval", tmp_path / "t.txt", "-c", ckpt), 1)
    assert ": 'Z', 'z', '\u00e9';" in line and "3 character(s)" in line and "4 times" in line  # quoted
    assert "--unknown skip" in line


def test_eval_of_a_text_with_a_byte_order_mark_scores_the_text_without_it(ckpt, text_file, tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + text_file.read_bytes())
    with_bom = cli("eval", tmp_path / "bom.txt", "-c", ckpt, "--json")
    without = cli("eval", text_file, "-c", ckpt, "--json")
    assert with_bom.exit_code == 0, with_bom.stderr
    assert json.loads(with_bom.stdout) == json.loads(without.stdout)


@pytest.mark.parametrize("content, message", [("", "at least 2"), ("t", "at least 2")])
def test_eval_of_too_short_a_text_exits_1(ckpt, tmp_path, content, message):
    (tmp_path / "t.txt").write_text(content)
    assert message in error_line(cli("eval", tmp_path / "t.txt", "-c", ckpt), 1)


def test_eval_of_invalid_utf8_names_the_byte(ckpt, tmp_path):
    (tmp_path / "t.txt").write_bytes(b"the cat\xc3(")
    line = error_line(cli("eval", tmp_path / "t.txt", "-c", ckpt), 1)
    assert "not valid UTF-8" in line and "byte 7" in line


# ------------------------------------------------------------------------------------------- bad checkpoints


def bad_checkpoints(good, tmp_path):
    """name -> path of a file that is not a usable checkpoint."""
    raw = good.read_bytes()
    files = {"text": b"just some text\n", "empty": b"", "truncated": raw[: len(raw) // 2], "zip-end-cut": raw[:-10]}
    with zipfile.ZipFile(good) as z:  # flip one byte inside the data of an array: the CRC check catches it
        info = z.getinfo("decoder.weight.npy")
    flipped = bytearray(raw)
    flipped[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2] ^= 0xFF
    files["flipped-byte"] = bytes(flipped)
    paths = {name: tmp_path / f"{name}.npz" for name in files}
    for name, content in files.items():
        paths[name].write_bytes(content)
    np.save(tmp_path / "array.npy", np.zeros(3))
    paths["npy"] = tmp_path / "array.npy"
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    paths["other-npz"] = tmp_path / "other.npz"
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["decoder.bias"] = arrays["decoder.bias"][:-1]
    with open(tmp_path / "wrong-shape.npz", "wb") as f:
        np.savez(f, **arrays)
    paths["wrong-shape"] = tmp_path / "wrong-shape.npz"
    return paths


@pytest.mark.parametrize("command", ["eval", "info"])
def test_a_file_that_is_not_a_checkpoint_exits_1_in_one_line(ckpt, text_file, tmp_path, command):
    for name, path in bad_checkpoints(ckpt, tmp_path).items():
        args = ("eval", text_file) if command == "eval" else ("info",)
        line = error_line(cli(*args, "-c", path), 1)
        assert str(path) in line and ("charrnn train" in line or "-c PATH" in line), (name, line)


def test_a_directory_given_as_checkpoint_exits_1(text_file, tmp_path):
    assert "directory" in error_line(cli("info", "-c", tmp_path), 1)


# ------------------------------------------------------------------------------------------------------- info


def test_info_json_describes_the_checkpoint(ckpt):
    result = cli("info", "-c", ckpt, "--json")
    assert result.exit_code == 0 and result.stderr == ""
    got = json.loads(result.stdout)
    c = load(ckpt)
    mc = config.ModelConfig(cell="lstm", vocab_size=len(c.vocab), embed=4, hidden=8, layers=2)
    assert {k: got[k] for k in ("format_version", "cell", "embed", "hidden", "layers", "vocab_size", "dtype")} == {
        "format_version": checkpoint.FORMAT_VERSION, "cell": "lstm", "embed": 4, "hidden": 8, "layers": 2,
        "vocab_size": len(set(TEXT)), "dtype": "float32"}
    assert got["parameters"] == sum(math.prod(s) for s in config.param_shapes(mc).values())
    assert (got["steps"], got["seed"]) == (25, 5)
    assert got["best_val_loss"] == c.meta["best_val_loss"] == min(h["val_loss"] for h in got["history"])
    assert [h["step"] for h in got["history"]] == list(range(1, 26))
    assert set(got["history"][0]) >= {"step", "epoch", "chars", "elapsed", "loss", "val_loss", "lr"}


def test_info_tables(ckpt):
    result = cli("info", "-c", ckpt)
    assert result.exit_code == 0
    for text in ("format version", "lstm", "parameters", "vocab size", "best val loss", "loss curves", "seed  "):
        assert text in result.stdout, text


def test_info_without_validation_has_no_best_loss(tmp_path, text_file):
    out = tmp_path / "m.npz"
    assert cli("train", text_file, "-o", out, "--hidden", "4", "--layers", "1", "--embed", "2", "--seq", "8",
               "--steps", "2", "--val-frac", "0", "--seed", "1", "--cell", "gru").exit_code == 0
    got = json.loads(cli("info", "-c", out, "--json").stdout)
    assert got["best_val_loss"] is None and got["cell"] == "gru" and got["steps"] == 2
    assert [(h["step"], h["val_loss"]) for h in got["history"]] == [(2, None)]  # the end of a run is recorded
