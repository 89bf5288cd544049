"""`charrnn train` through Typer's CliRunner: every option README.md's "train" section lists, the errors and exit
codes, resume (conflicts, options from the checkpoint, bitwise equivalence), best weights and divergence. Tiny
models only."""

import json
import math
import random
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from charrnn import config, data
from charrnn.cli import app
from charrnn.optim import learning_rate
from charrnn.train import evaluate

WORDS = "the cat sat on a mat , and a dog ran to the cat . then they slept".split()
TEXT = " ".join(random.Random(1).choices(WORDS, k=180)) + "\n"  # ~680 characters
TINY = ("--hidden", "8", "--layers", "1", "--embed", "4", "--batch", "4", "--seq", "8", "--seed", "1")


@pytest.fixture(autouse=True)
def _restore_blas_env(monkeypatch):
    """--threads writes these into os.environ; keep them from leaking into other tests."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def cli(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def train(corpus, out, *args, tiny=True, code=0):
    """Run `charrnn train`, check the exit code and that no exception escaped; return the result."""
    result = cli("train", corpus, "-o", out, *(TINY if tiny else ()), *args)
    assert result.exit_code == code, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def jsonof(path, key):
    return json.loads(str(arrays(path)[key][()]))


def error_line(result, alone=True) -> str:
    """The one line an error leaves on stderr: the only line, or (alone=False) the last after progress lines."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or not alone, result.stderr
    assert lines[-1].startswith("charrnn: error: ") and "Traceback" not in result.stderr, result.stderr
    assert "Warning" not in result.stderr and sum("error" in line for line in lines) == 1, result.stderr
    return lines[-1]


# ------------------------------------------------------------------------------------------ output and --out


def test_stdout_is_the_checkpoint_path_and_parents_are_created(corpus, tmp_path):
    out = tmp_path / "a" / "b" / "model.npz"
    result = train(corpus, out, "--steps", "3")
    assert result.stdout == f"{out}\n"
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["model.npz"]
    assert "stopped by" in result.stderr and "step limit" in result.stderr


def test_default_out_is_checkpoints_model_npz(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("train", corpus, *TINY, "--steps", "2")
    assert result.exit_code == 0 and result.stdout == f"{config.DEFAULT_CHECKPOINT}\n"
    assert (tmp_path / config.DEFAULT_CHECKPOINT).is_file()


def test_stdin_corpus(tmp_path):
    out = tmp_path / "m.npz"
    result = cli("train", "-", "-o", out, *TINY, "--steps", "2", input=TEXT)
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(arrays(out)["vocab"], data.Vocab.from_text(TEXT).codes)


def test_an_existing_out_is_never_overwritten_without_force_or_resume(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "2")
    before = out.read_bytes()
    result = train(corpus, out, "--steps", "2", code=1)
    line = error_line(result)
    assert str(out) in line and "--resume" in line and "--force" in line
    assert out.read_bytes() == before and result.stdout == ""


def test_force_starts_a_new_run_over_it(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "4")
    train(corpus, out, "--steps", "2", "--force", "--cell", "gru")
    assert jsonof(out, "meta")["step"] == 2 and jsonof(out, "model_config")["cell"] == "gru"


def test_force_and_resume_together_exit_1(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "2")
    before = out.read_bytes()
    assert "--force" in error_line(train(corpus, out, "--force", "--resume", code=1))
    assert out.read_bytes() == before


def test_out_that_is_a_directory_exits_1(corpus, tmp_path):
    assert "directory" in error_line(train(corpus, tmp_path, "--steps", "2", code=1))


# ------------------------------------------------------------------------------------------- model options


@pytest.mark.parametrize("cell", config.CELL_NAMES)
def test_cell_and_sizes_shape_the_checkpoint(corpus, tmp_path, cell):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "2", "--cell", cell, "--hidden", "6", "--layers", "2", "--embed", "5", tiny=False)
    mc = config.from_dict(config.ModelConfig, jsonof(out, "model_config"))
    assert (mc.cell, mc.hidden, mc.layers, mc.embed) == (cell, 6, 2, 5)
    got = arrays(out)
    for name, shape in config.param_shapes(mc).items():
        assert got[name].shape == shape and got[name].dtype == np.float32
        assert got["resume/params/" + name].shape == shape


def test_dtype_float64(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "2", "--dtype", "float64")
    got = arrays(out)
    assert got["decoder.weight"].dtype == np.float64 and got["resume/optim/m/decoder.weight"].dtype == np.float64


def test_dropout_is_stored_and_changes_training(corpus, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    train(corpus, a, "--steps", "3", "--layers", "2", "--val-frac", "0")
    train(corpus, b, "--steps", "3", "--layers", "2", "--val-frac", "0", "--dropout", "0.5")
    assert jsonof(b, "model_config")["dropout"] == 0.5
    assert not np.array_equal(arrays(a)["decoder.weight"], arrays(b)["decoder.weight"])


# ------------------------------------------------------------------------------------------- train options


def test_batch_and_seq_are_used(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "2", "--batch", "3", "--seq", "5", "--val-frac", "0")
    tc = jsonof(out, "train_config")
    assert (tc["batch"], tc["seq"]) == (3, 5)
    assert jsonof(out, "meta")["chars"] == 2 * 3 * 5 and arrays(out)["resume/state/0/0"].shape == (3, 8)


def test_a_short_corpus_shrinks_the_batch_with_a_notice(tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("hello world, hello there\n")  # 25 characters
    out = tmp_path / "m.npz"
    result = train(corpus, out, "--steps", "2", "--batch", "32", "--seq", "4", "--val-frac", "0", tiny=False)
    # one stream of 25 trains on 24 characters an epoch; 5 streams of 5 (the most that fit) on only 20
    assert "using --batch 1 instead of 32" in result.stderr and jsonof(out, "train_config")["batch"] == 1


def test_a_corpus_shorter_than_one_sequence_says_how_long_it_must_be(tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("hello world")
    line = error_line(train(corpus, tmp_path / "m.npz", "--seq", "64", "--val-frac", "0", "--seed", "1", code=1,
                            tiny=False))
    assert "11 characters" in line and "(65)" in line and "--seq" in line
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("args, buffers", [
    (["--optimizer", "adam"], {"m", "v"}),
    (["--optimizer", "rmsprop"], {"v"}),
    (["--optimizer", "rmsprop", "--momentum", "0.5"], {"v", "m"}),
    (["--optimizer", "adagrad"], {"v"}),
    (["--optimizer", "sgd"], set()),
    (["--optimizer", "sgd", "--momentum", "0.9"], {"m"}),
])
def test_optimizer_and_momentum_reach_the_optimizer_state(corpus, tmp_path, args, buffers):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "3", *args)
    keys = [k for k in arrays(out) if k.startswith("resume/optim/")]
    assert {k.split("/")[2] for k in keys if k != "resume/optim/t"} == buffers
    assert int(arrays(out)["resume/optim/t"]) == 3
    assert jsonof(out, "train_config")["optimizer"] == args[1]


def test_momentum_with_adam_is_a_one_line_error(corpus, tmp_path):
    line = error_line(train(corpus, tmp_path / "m.npz", "--momentum", "0.9", code=1))
    assert "momentum" in line and "adam" in line
    assert not (tmp_path / "m.npz").exists()


def test_lr_clip_and_weight_decay_are_stored_and_used(corpus, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    train(corpus, a, "--steps", "3", "--lr", "0.01", "--clip", "0")
    train(corpus, b, "--steps", "3", "--lr", "0.01", "--clip", "0.05", "--weight-decay", "0.1")
    ta, tb = jsonof(a, "train_config"), jsonof(b, "train_config")
    assert (ta["lr"], ta["clip"], tb["clip"], tb["weight_decay"]) == (0.01, 0.0, 0.05, 0.1)
    assert not np.array_equal(arrays(a)["decoder.bias"], arrays(b)["decoder.bias"])


@pytest.mark.parametrize("schedule", config.SCHEDULE_NAMES)
def test_schedule_and_warmup_set_each_steps_learning_rate(corpus, tmp_path, schedule):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "8", "--eval-every", "1", "--lr", "0.01", "--schedule", schedule, "--warmup", "3")
    got = [h["lr"] for h in jsonof(out, "meta")["history"]]
    assert got == [learning_rate(0.01, schedule, k / 8, k, 3) for k in range(8)]


def test_steps_epochs_and_max_time_bound_the_run(corpus, tmp_path):
    out = tmp_path / "m.npz"
    result = train(corpus, out, "--epochs", "1", "--val-frac", "0")
    meta = jsonof(out, "meta")
    assert meta["epochs_done"] == 1 and meta["cursor"] == 0 and "epoch limit" in result.stderr
    result = train(corpus, out, "--force", "--max-time", "1h30m", "--steps", "3")
    assert jsonof(out, "train_config")["max_time"] == 5400.0 and jsonof(out, "meta")["step"] == 3
    assert "step limit" in result.stderr


def test_val_frac_eval_every_and_the_curve(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "9", "--eval-every", "4", "--val-frac", "0.2")
    meta = jsonof(out, "meta")
    assert [h["step"] for h in meta["history"]] == [4, 8, 9]  # and at the end
    assert all(h["val_loss"] is not None for h in meta["history"])
    assert meta["best_val_loss"] == min(h["val_loss"] for h in meta["history"])
    assert jsonof(out, "train_config")["val_frac"] == 0.2
    train(corpus, out, "--force", "--steps", "4", "--eval-every", "2", "--val-frac", "0")
    meta = jsonof(out, "meta")
    assert meta["best_val_loss"] is None and [h["val_loss"] for h in meta["history"]] == [None, None]
    got = arrays(out)
    for name in config.param_shapes(config.from_dict(config.ModelConfig, jsonof(out, "model_config"))):
        assert np.array_equal(got[name], got["resume/params/" + name])  # no validation: the latest weights


def test_patience_stops_the_run_and_exits_0(tmp_path):
    corpus = tmp_path / "ab.txt"
    corpus.write_text("a" * 300 + "b" * 34)  # learns a's, validates on b's: validation only gets worse
    out = tmp_path / "m.npz"
    result = train(corpus, out, "--steps", "100", "--eval-every", "2", "--patience", "3", "--val-frac", "0.1",
                   "--lr", "0.05")
    assert re.search(r"stopped by\s+patience", result.stderr)
    meta = jsonof(out, "meta")
    assert meta["step"] == 8 and meta["best_step"] == 2 and meta["bad_evals"] == 3
    assert result.stdout == f"{out}\n"


def test_a_val_frac_that_holds_out_under_2_characters_says_so(corpus, tmp_path):
    # ~680 characters: 0.001 holds out 1, which validation cannot score
    result = train(corpus, tmp_path / "m.npz", "--steps", "4", "--eval-every", "2", "--val-frac", "0.001")
    assert "training without validation" in result.stderr and jsonof(tmp_path / "m.npz", "meta")["step"] == 4
    line = error_line(train(corpus, tmp_path / "p.npz", "--val-frac", "0.001", "--patience", "2", code=1))
    assert "--patience" in line and "--val-frac" in line and not (tmp_path / "p.npz").exists()


def test_the_best_validation_weights_are_what_sample_and_eval_use(tmp_path):
    corpus = tmp_path / "ab.txt"
    corpus.write_text("a" * 300 + "b" * 34)
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "10", "--eval-every", "1", "--val-frac", "0.1", "--lr", "0.05")
    meta, got = jsonof(out, "meta"), arrays(out)
    assert meta["best_step"] == 1 < meta["step"]
    mc = config.from_dict(config.ModelConfig, jsonof(out, "model_config"))
    best = {k: got[k] for k in config.param_shapes(mc)}
    latest = {k: got["resume/params/" + k] for k in config.param_shapes(mc)}
    val = data.Vocab(got["vocab"]).encode("b" * 33)
    batch = jsonof(out, "train_config")["batch"]
    assert evaluate(best, mc, val, batch).nats_per_char == meta["best_val_loss"]
    assert evaluate(latest, mc, val, batch).nats_per_char == meta["history"][-1]["val_loss"] > meta["best_val_loss"]


def test_seed_given_repeats_the_run_and_a_drawn_seed_is_printed_and_stored(corpus, tmp_path):
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    train(corpus, a, "--steps", "3", "--dropout", "0.2", "--layers", "2")
    train(corpus, b, "--steps", "3", "--dropout", "0.2", "--layers", "2")
    ga, gb = arrays(a), arrays(b)
    assert all(np.array_equal(ga[k], gb[k]) for k in ga if k != "meta")
    result = cli("train", corpus, "-o", c, "--hidden", "8", "--layers", "1", "--embed", "4", "--steps", "2")
    seed = int(re.search(r"seed (\d+) \(pass --seed \1 to repeat this run\)", result.stderr).group(1))
    assert jsonof(c, "train_config")["seed"] == seed == jsonof(c, "meta")["seed"]


# A real `charrnn train` process that reports the BLAS thread variables as they were when numpy was first imported:
# the BLAS reads them then and never again, so a --threads that is set any later has no effect.
WATCH_NUMPY_IMPORT = """
import os, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not seen:
            seen.append([os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")])
sys.meta_path.insert(0, Watch())
sys.argv = ["charrnn", *sys.argv[1:]]
try:
    from charrnn.__main__ import main
    main()
finally:
    sys.stderr.write(f"\\nthreads when numpy was imported: {seen[0] if seen else 'never imported'}\\n")
"""


def test_threads_is_set_before_the_blas_is_loaded(corpus, tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                              "MKL_NUM_THREADS")}
    args = ["train", corpus, "-o", tmp_path / "m.npz", *TINY, "--steps", "1", "--threads", "1"]
    p = subprocess.run([sys.executable, "-c", WATCH_NUMPY_IMPORT, *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines()[-1] == "threads when numpy was imported: ['1', '1', '1']", p.stderr


def test_checkpoint_every_saves_during_the_run_and_is_stored(corpus, tmp_path, monkeypatch):
    """Every save ends in os.replace onto --out: count them. Without validation, a save before the end of the run
    can only come from --checkpoint-every."""
    import os

    out, replace, saves = tmp_path / "m.npz", os.replace, []

    def counting_replace(src, dst, *args, **kwargs):
        saves.append(os.path.realpath(dst) == os.path.realpath(out))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", counting_replace)
    train(corpus, out, "--steps", "4", "--val-frac", "0", "--checkpoint-every", "1h")
    assert sum(saves) == 1  # only the final save
    saves.clear()
    train(corpus, out, "--steps", "4", "--val-frac", "0", "--checkpoint-every", "0.000001s", "--force")
    assert sum(saves) == 4  # every step is due
    assert jsonof(out, "train_config")["checkpoint_every"] == 1e-6


def test_help_lists_every_option_of_the_contract():
    result = cli("train", "--help")
    assert result.exit_code == 0
    for option in ("--out", "--force", "--cell", "--hidden", "--layers", "--embed", "--batch", "--seq", "--lr",
                   "--optimizer", "--clip", "--momentum", "--schedule", "--warmup", "--dropout", "--steps",
                   "--epochs", "--max-time", "--val-frac", "--eval-every", "--patience", "--seed", "--resume",
                   "--dtype", "--threads", "--engine", "--device"):
        assert option in result.stdout, option
    assert "not bit-reproducible" in " ".join(result.stdout.replace("│", " ").split())  # words wrapped in a panel


# ------------------------------------------------------------------------------------------------- bad usage


@pytest.mark.parametrize("args", [
    ["--hidden", "-1"], ["--hidden", "0"], ["--layers", "0"], ["--embed", "-3"], ["--batch", "0"],
    ["--seq", "-1"], ["--lr", "0"], ["--lr", "-0.1"], ["--dropout", "1"], ["--dropout", "-0.1"],
    ["--momentum", "1"], ["--val-frac", "0.9"], ["--eval-every", "0"], ["--patience", "0"], ["--steps", "0"],
    ["--epochs", "0"], ["--epochs", "nan"], ["--epochs", "inf"], ["--lr", "nan"], ["--lr", "inf"],
    ["--max-time", "bad"], ["--max-time", "0s"], ["--max-time", "-5"], ["--max-time", "10x"],
    ["--max-time", ""], ["--checkpoint-every", "soon"], ["--cell", "transformer"], ["--optimizer", "lion"],
    ["--dtype", "float16"], ["--schedule", "linear"], ["--warmup", "-1"], ["--clip", "-1"], ["--seed", "-1"],
    ["--no-such-option"], ["--hidden", "many"],
])
def test_bad_option_values_are_usage_errors(corpus, tmp_path, args):
    result = cli("train", corpus, "-o", tmp_path / "m.npz", *args)
    assert result.exit_code == 2 and "Usage:" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == "" and not (tmp_path / "m.npz").exists()


def test_a_missing_corpus_or_an_empty_folder_is_a_usage_error(tmp_path):
    result = cli("train", tmp_path / "nope.txt", "-o", tmp_path / "m.npz")
    assert result.exit_code == 2 and "Usage:" in result.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden.txt").write_text("not read")
    assert "the folder" in error_line(train(tmp_path / "empty", tmp_path / "m.npz", code=2))


def test_an_empty_corpus_exits_1(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    assert "empty" in error_line(train(tmp_path / "empty.txt", tmp_path / "m.npz", code=1))
    assert "stdin is empty" in error_line(cli("train", "-", "-o", tmp_path / "m.npz", input=""))


def test_a_corpus_that_is_not_utf8_names_the_byte_offset(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait".encode("latin-1"))
    line = error_line(train(tmp_path / "latin1.txt", tmp_path / "m.npz", code=1))
    assert "not valid UTF-8" in line and "byte 3" in line
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + "caf\u00e9 au lait".encode("latin-1"))
    line = error_line(train(tmp_path / "bom.txt", tmp_path / "m.npz", code=1))
    assert "not valid UTF-8" in line and "byte 6" in line


def test_a_leading_byte_order_mark_is_not_part_of_the_corpus(corpus, tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + open(corpus, "rb").read())
    train(bom, tmp_path / "bom.npz")
    train(corpus, tmp_path / "plain.npz")
    assert np.array_equal(arrays(tmp_path / "bom.npz")["vocab"], arrays(tmp_path / "plain.npz")["vocab"])


# ------------------------------------------------------------------------------------------------- resume


@pytest.mark.parametrize("flag, value", [
    ("--cell", "gru"), ("--hidden", "9"), ("--layers", "2"), ("--embed", "5"), ("--dropout", "0.1"),
    ("--seq", "6"), ("--batch", "3"), ("--dtype", "float64"), ("--optimizer", "sgd"), ("--seed", "2"),
    ("--val-frac", "0.2"), ("--momentum", "0.5"),
])
def test_a_conflicting_option_on_resume_exits_1_naming_it(corpus, tmp_path, flag, value):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "2")
    before = out.read_bytes()
    line = error_line(train(corpus, out, "--resume", "--steps", "4", flag, value, tiny=False, code=1))
    assert f"{flag} {value} conflicts" in line
    assert out.read_bytes() == before


def test_another_corpus_on_resume_exits_1(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "2")
    other = tmp_path / "other.txt"
    other.write_text(TEXT + "more")
    assert "not the one" in error_line(train(other, out, "--resume", "--steps", "4", tiny=False, code=1))


def test_resume_without_an_existing_out_exits_1(corpus, tmp_path):
    line = error_line(train(corpus, tmp_path / "m.npz", "--resume", code=1))
    assert "nothing to resume" in line


def test_resume_of_a_file_that_is_not_a_checkpoint_exits_1(corpus, tmp_path):
    out = tmp_path / "m.npz"
    out.write_text("not a checkpoint")
    assert "not a readable .npz" in error_line(train(corpus, out, "--resume", tiny=False, code=1))
    assert out.read_text() == "not a checkpoint"


def test_resume_of_a_checkpoint_with_damaged_training_state_exits_1(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "2")
    got = arrays(out)
    del got["resume/params/decoder.bias"]
    with open(out, "wb") as f:
        np.savez(f, **got)
    line = error_line(train(corpus, out, "--resume", "--steps", "4", tiny=False, code=1))
    assert "cannot be resumed" in line and "params/decoder.bias" in line and "--force" in line


def test_options_not_given_on_resume_come_from_the_checkpoint(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "2", "--cell", "rnn", "--lr", "0.01", "--optimizer", "rmsprop", "--clip", "1",
          "--eval-every", "3", "--schedule", "step")
    before = jsonof(out, "train_config")
    train(corpus, out, "--resume", "--steps", "5", tiny=False)
    after = jsonof(out, "train_config")
    assert after == dict(before, steps=5) and jsonof(out, "model_config")["cell"] == "rnn"
    assert jsonof(out, "meta")["step"] == 5


def test_the_same_command_line_with_resume_continues(tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("hello world, hello there\n" * 3)
    out = tmp_path / "m.npz"
    args = ("--batch", "32", "--seq", "8", "--hidden", "8", "--layers", "1", "--seed", "3", "--lr", "0.01")
    train(corpus, out, *args, "--steps", "2", tiny=False)  # a short corpus: --batch shrinks
    train(corpus, out, *args, "--steps", "4", "--resume", tiny=False)
    assert jsonof(out, "meta")["step"] == 4


def test_a_resume_with_nothing_left_to_do_says_so(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "3")
    result = train(corpus, out, "--resume", tiny=False)
    assert "nothing to train" in result.stderr and "--steps" in result.stderr
    assert jsonof(out, "meta")["step"] == 3 and result.stdout == f"{out}\n"


def checkpoint_arrays_equal(a, b):
    """Every array of two checkpoints but `meta` (which holds wall-clock times) is bitwise equal."""
    ga, gb = arrays(a), arrays(b)
    assert sorted(ga) == sorted(gb)
    for k in ga:
        if k != "meta":
            assert ga[k].dtype == gb[k].dtype and np.array_equal(ga[k], gb[k]), k
    ma, mb = jsonof(a, "meta"), jsonof(b, "meta")
    for k in ("step", "cursor", "epochs_done", "chars", "best_val_loss", "best_step", "rng", "curve", "curve_sum",
              "curve_every", "window_sum", "history_every"):
        assert ma[k] == mb[k], k


@pytest.mark.parametrize("dtype", config.DTYPE_NAMES)
@pytest.mark.parametrize("opt", [("adam",), ("rmsprop",), ("adagrad",), ("sgd", "--momentum", "0.9")],
                         ids=lambda o: o[0])
def test_resume_is_bitwise_equal_to_a_straight_run(corpus, tmp_path, opt, dtype):
    """N steps straight == k steps + --resume --steps N, across an epoch wrap (--batch 8 asked for)."""
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    args = ("--optimizer", *opt, "--dtype", dtype, "--lr", "0.01", "--eval-every", "4", "--layers", "2",
            "--batch", "8")
    train(corpus, a, *args, "--steps", "15")
    assert jsonof(a, "meta")["epochs_done"] >= 1
    train(corpus, b, *args, "--steps", "6")
    train(corpus, b, "--resume", "--steps", "15", tiny=False)
    checkpoint_arrays_equal(a, b)
    assert jsonof(b, "train_config")["batch"] == jsonof(a, "train_config")["batch"]  # the batch the corpus gives


@pytest.mark.parametrize("cell", config.CELL_NAMES)
def test_resume_with_dropout_is_bitwise_equal(corpus, tmp_path, cell):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    args = ("--cell", cell, "--layers", "2", "--dropout", "0.3", "--eval-every", "5")
    train(corpus, a, *args, "--steps", "20")
    train(corpus, b, *args, "--steps", "7")
    train(corpus, b, "--resume", "--steps", "13", tiny=False)
    train(corpus, b, "--resume", "--steps", "20", tiny=False)  # and a second resume
    checkpoint_arrays_equal(a, b)


# ------------------------------------------------------------------------------------------------- divergence


def test_divergence_exits_1_and_keeps_the_previous_checkpoint(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "3", "--optimizer", "sgd", "--val-frac", "0")
    before = out.read_bytes()
    result = train(corpus, out, "--resume", "--steps", "50", "--lr", "1e30", "--clip", "0", tiny=False, code=1)
    line = error_line(result, alone=False)
    assert "diverged" in line and "--lr" in line and line.endswith(f"{out} is untouched")
    assert out.read_bytes() == before and result.stdout == ""


def test_divergence_at_a_validation_step_keeps_the_previous_checkpoint(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "3", "--optimizer", "sgd")
    before = out.read_bytes()
    result = train(corpus, out, "--resume", "--steps", "50", "--lr", "1e30", "--clip", "0", "--eval-every", "1",
                   tiny=False, code=1)
    assert "validation loss" in error_line(result, alone=False) and out.read_bytes() == before


def test_divergence_after_a_save_in_this_run_says_which_step_the_file_holds(corpus, tmp_path, monkeypatch):
    from charrnn.train import Diverged, Run

    steps = Run.steps

    def diverge_after_two(self, *args):
        for s in steps(self, *args):
            yield s
            if s.step == 2:
                raise Diverged("training diverged at step 3 (loss nan, gradient norm nan); lower --lr")

    monkeypatch.setattr(Run, "steps", diverge_after_two)
    out = tmp_path / "m.npz"
    line = error_line(train(corpus, out, "--steps", "9", "--eval-every", "2", code=1), alone=False)
    assert line.endswith(f"{out} holds this run's last save, at step 2")
    assert json.loads(str(np.load(out)["meta"][()]))["step"] == 2


def test_a_forced_run_that_diverges_leaves_the_old_file(corpus, tmp_path):
    out = tmp_path / "m.npz"
    out.write_bytes(b"old contents")
    result = train(corpus, out, "--force", "--steps", "50", "--lr", "1e300", "--clip", "0", "--optimizer", "sgd",
                   "--eval-every", "100", code=1)
    assert "diverged" in error_line(result, alone=False) and out.read_bytes() == b"old contents"


def test_loss_of_a_trained_model_is_below_ln_v(corpus, tmp_path):
    out = tmp_path / "m.npz"
    train(corpus, out, "--steps", "40", "--lr", "0.02", "--val-frac", "0")
    got = arrays(out)
    mc = config.from_dict(config.ModelConfig, jsonof(out, "model_config"))
    params = {k: got[k] for k in config.param_shapes(mc)}
    loss = evaluate(params, mc, data.Vocab(got["vocab"]).encode(TEXT)).nats_per_char
    assert loss < math.log(len(got["vocab"])) - 0.3


# ------------------------------------------------------------------------------------------ progress and Ctrl-C


def a_step(step, elapsed, total=100, **kw):
    from charrnn.train import Step

    return Step(step=step, epoch=0.5, loss=2.0, lr=0.002, grad_norm=1.0, chars_per_sec=1000.0, elapsed=elapsed,
                total_steps=total, **kw)


def test_plain_progress_lines_and_the_eta_of_a_resumed_run(capsys):
    from charrnn.cli.progress import Progress

    progress = Progress(100, 90, None)  # resumed at step 90 of 100
    progress.update(a_step(95, 5.0, val_loss=1.5))  # 5 steps in 5 s: 5 more take 5 s
    progress.close()
    line = capsys.readouterr().err.strip()
    assert line.startswith("step 95/100 ") and "val 1.5000" in line and line.endswith("eta 5s")


def test_a_terminal_gets_a_bar(monkeypatch):
    import io

    from charrnn.cli.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Terminal())
    progress = Progress(10, 0, None)
    for k in range(1, 4):
        progress.update(a_step(k, 0.1 * k, total=10, val_loss=1.25 if k == 2 else None))
    progress.close()
    shown = __import__("sys").stderr.getvalue()
    assert "\r" in shown and "3/10" in shown and "loss 2.000 val 1.250" in shown and "chars/s" in shown


def test_the_ctrl_c_handler_survives_a_signal_inside_a_print_to_stderr(monkeypatch, capfd):
    """print is not reentrant: a handler that printed to stderr raised RuntimeError inside the interrupted print."""
    import io
    import signal
    import sys

    from charrnn.cli import train_cmd

    class Raw(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            if not handler.requested:
                handler(signal.SIGINT, None)  # the signal lands in the middle of this write
            return len(b)

    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(io.BufferedWriter(Raw()), line_buffering=True))
    handler = train_cmd._Interrupt()
    try:
        print("step 1/10", file=sys.stderr)
    finally:
        handler.restore()
    assert handler.requested and "interrupted" in capfd.readouterr().err


def test_out_without_an_npz_suffix_is_written_exactly_there(corpus, tmp_path):
    out = tmp_path / "model.ckpt"
    train(corpus, out, "--steps", "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "model.ckpt"]
    train(corpus, out, "--steps", "3", "--resume", tiny=False)
    assert jsonof(out, "meta")["step"] == 3


def test_plain_lines_come_every_few_seconds_and_on_validation_and_at_the_end(monkeypatch, capsys):
    from charrnn.cli import progress as progress_module

    now = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    progress = progress_module.Progress(100, 0, None)
    for k in range(1, 13):  # one step a second
        progress.update(a_step(k, float(k), val_loss=2.5 if k == 8 else None, stop="steps" if k == 12 else None))
        now[0] += 1.0
    shown = [int(line.split()[1].split("/")[0]) for line in capsys.readouterr().err.splitlines()]
    assert shown == [1, 6, 8, 12]  # the first step, 5 s later, a validation, the last step
