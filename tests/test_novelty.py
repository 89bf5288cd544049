"""New, distinct samples: `sample --exclude FILE` and `--unique`, their comparison rule and their bound."""

import numpy as np
import pytest
from typer.testing import CliRunner

from charrnn import checkpoint, model, novelty
from charrnn.checkpoint import Checkpoint
from charrnn.cli import app
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data import Vocab
from charrnn.optim import Adam

TEXT = "hello world\nhello there\nthe cafe is here\nback home\n"
ONE_LINE = ("--stop", "\\n", "--sep", "", "-n", "20")


def test_novel_keeps_new_distinct_items_and_gives_up_with_what_it_found():
    draws = iter(["anna\n", "bob\n", "anna\n", "carl", "bob\r\n", "dora\n", "eve\n"])
    got = list(novelty.novel(draws.__next__, 3, exclude={"carl"}, unique=True))
    assert got == ["anna\n", "bob\n", "dora\n"]  # carl is listed, the second anna and bob are repeats
    draws = iter(["x\n"] * 1000)
    found = []
    with pytest.raises(novelty.GaveUp, match=r"gave up after 160 samples: 1 of the 3 asked for were distinct"):
        for text in novelty.novel(draws.__next__, 3, unique=True):
            found.append(text)
    assert found == ["x\n"] and novelty.max_tries(3) == 160
    assert next(draws) == "x\n"  # exactly 160 were drawn: the bound is the work done
    prefixed = list(novelty.novel(iter(["mma\n", "nna\n"]).__next__, 1, prefix="E", exclude={"Emma"}))
    assert prefixed == ["nna\n"]  # the prefix is part of what is compared


def test_read_lines(tmp_path):
    (tmp_path / "l.txt").write_bytes(b"\xef\xbb\xbfanna\r\nbob\n\nc\xc3\xa9line")
    assert novelty.read_lines(tmp_path / "l.txt") == {"anna", "bob", "", "céline"}
    (tmp_path / "bad.txt").write_bytes(b"ok\nno \xff here\n")
    with pytest.raises(ValueError, match=r"bad.txt is not valid UTF-8 \(byte 6: b'\\xff'\)"):
        novelty.read_lines(tmp_path / "bad.txt")


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    """A small LSTM trained to repeat the four lines of TEXT."""
    vocab = Vocab.from_text(TEXT)
    mc = ModelConfig(cell="lstm", vocab_size=len(vocab), embed=8, hidden=24, layers=1)
    params = model.init_params(mc, np.random.default_rng(0))
    opt, ids = Adam(params), vocab.encode("\n" + TEXT)
    for _ in range(80):
        _, grads, _ = model.loss_and_grads(params, mc, ids[None, :-1], ids[None, 1:], model.init_state(mc, 1))
        opt.step(params, grads, 2e-2)
    path = tmp_path_factory.mktemp("ckpt") / "model.npz"
    checkpoint.save(path, Checkpoint(mc, TrainConfig(), vocab.codes, params))
    return path


def sample(ckpt_path, *args):
    result = CliRunner().invoke(app, ["sample", "-c", str(ckpt_path), *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_unique_and_exclude_print_the_first_new_distinct_samples(ckpt_path, tmp_path):
    plain = sample(ckpt_path, *ONE_LINE, "--num-samples", "300", "--seed", "3", "-t", "1.5")
    assert plain.exit_code == 0
    lines = plain.stdout.splitlines()
    listed = TEXT.splitlines()[:2]
    (tmp_path / "list.txt").write_text("\n".join(listed) + "\n")
    want = []
    for line in lines:
        if line not in listed and line not in want:
            want.append(line)
    assert len(want) >= 5 and len(set(lines)) < len(lines)  # the plain run repeats itself and the list
    got = sample(ckpt_path, *ONE_LINE, "--num-samples", "5", "--seed", "3", "-t", "1.5", "--unique",
                 "--exclude", tmp_path / "list.txt")
    assert got.exit_code == 0, got.stderr
    assert got.stdout.splitlines() == want[:5]  # the same draws, the listed and repeated ones left out
    only_unique = sample(ckpt_path, *ONE_LINE, "--num-samples", "4", "--seed", "3", "-t", "1.5", "--unique")
    assert only_unique.stdout.splitlines() == list(dict.fromkeys(lines))[:4]


def test_a_model_that_only_repeats_gives_up_with_what_it_found(ckpt_path, tmp_path):
    argmax = sample(ckpt_path, *ONE_LINE, "-t", "0").stdout  # the one sample argmax can give
    got = sample(ckpt_path, *ONE_LINE, "-t", "0", "--num-samples", "3", "--unique")
    assert got.exit_code == 1 and got.stdout == argmax
    assert got.stderr.strip() == ("charrnn: error: gave up after 160 samples: 1 of the 3 asked for were distinct "
                                  "(the others repeated an earlier sample); try a higher --temperature or fewer "
                                  "--num-samples")
    (tmp_path / "list.txt").write_text(argmax)
    listed = sample(ckpt_path, *ONE_LINE, "-t", "0", "--exclude", tmp_path / "list.txt")
    assert listed.exit_code == 1 and listed.stdout == "" and "were new (the others repeated a line of" in listed.stderr


def test_exclude_and_unique_usage(ckpt_path, tmp_path):
    missing = sample(ckpt_path, "--exclude", tmp_path / "nope.txt")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    (tmp_path / "bad.txt").write_bytes(b"\xff\n")
    bad = sample(ckpt_path, "--exclude", tmp_path / "bad.txt")
    assert bad.exit_code == 1 and "not valid UTF-8 (byte 0" in bad.stderr
    beam = sample(ckpt_path, "--beam", "2", "--unique", "-n", "5")
    assert beam.exit_code == 2 and "deterministic" in beam.stderr
