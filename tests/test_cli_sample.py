"""`charrnn sample` end to end: every option through CliRunner; stdin, pipes, bytes and Ctrl-C in real processes."""

import signal
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from charrnn import checkpoint, model
from charrnn.checkpoint import Checkpoint
from charrnn.cli import app
from charrnn.config import ModelConfig, SampleConfig, TrainConfig
from charrnn.data import Vocab
from charrnn.optim import Adam
from charrnn.sample import beam_search, generate

TEXT = "hello world\nhello there\nthe café is here\nback\\slash\n"
OPTIONS = ("--checkpoint", "--prefix", "--length", "--temperature", "--top-k", "--top-p", "--seed", "--stop",
           "--num-samples", "--sep", "--beam")


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    """A small float32 LSTM trained a few dozen Adam steps on TEXT, saved as a real checkpoint."""
    vocab = Vocab.from_text(TEXT)
    mc = ModelConfig(cell="lstm", vocab_size=len(vocab), embed=8, hidden=24, layers=2)
    params = model.init_params(mc, np.random.default_rng(0))
    opt, ids = Adam(params), vocab.encode("\n" + TEXT)  # sampling reads a prefix as if after a line break
    for _ in range(60):
        _, grads, _ = model.loss_and_grads(params, mc, ids[None, :-1], ids[None, 1:], model.init_state(mc, 1))
        opt.step(params, grads, 2e-2)
    path = tmp_path_factory.mktemp("ckpt") / "model.npz"
    checkpoint.save(path, Checkpoint(mc, TrainConfig(), vocab.codes, params))
    return path


def cli(ckpt_path, *args, input=None):
    return CliRunner().invoke(app, ["sample", "-c", str(ckpt_path), *args], input=input)


def expected(ckpt_path, prefix="", seed=0, **kw) -> str:
    """What the library generates for these settings, written the way the CLI writes one sample."""
    ck = checkpoint.load(ckpt_path)
    cfg = SampleConfig(**kw)
    text = prefix + "".join(generate(ck.params, ck.model_config, ck.vocab, prefix, cfg, np.random.default_rng(seed)))
    return text if text.endswith("\n") else text + "\n"


def run(ckpt_path, *args, input=None, cwd=None):
    """The real command in a fresh process: (exit code, stdout bytes, stderr text)."""
    p = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(ckpt_path), *args], input=input,
                       capture_output=True, cwd=cwd, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode()


# ------------------------------------------------------------------------------------------------ CliRunner


def test_help_documents_every_option():
    result = CliRunner().invoke(app, ["sample", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in OPTIONS:
        assert option in result.stdout
    assert "raw probabilities" in result.stdout and "finished" in result.stdout  # beam: what it does with --stop


def test_stdout_is_exactly_the_library_text(ckpt_path):
    result = cli(ckpt_path, "--prefix", "hel", "-n", "40", "--seed", "3")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout == expected(ckpt_path, "hel", seed=3, length=40)


def test_defaults_come_from_sample_config(ckpt_path):
    result = cli(ckpt_path, "-t", "0")
    continuation = result.stdout[:-1] if len(result.stdout) > SampleConfig().length else result.stdout
    assert result.exit_code == 0 and len(continuation) == SampleConfig().length
    result = cli(ckpt_path, "--seed", "4", "-n", "60")
    assert result.stdout == expected(ckpt_path, seed=4, length=60)  # temperature, top-k, top-p: the defaults


def test_prefix_escapes_and_length(ckpt_path):
    result = cli(ckpt_path, "--prefix", "hello\\nthe c", "--length", "7", "--seed", "1")
    assert result.exit_code == 0
    assert result.stdout.startswith("hello\nthe c") and len(result.stdout.rstrip("\n")) >= len("hello\nthe c") + 6
    assert result.stdout == expected(ckpt_path, "hello\nthe c", seed=1, length=7)


def test_temperature_zero_top_k_1_and_tiny_top_p_are_all_argmax(ckpt_path):
    greedy = cli(ckpt_path, "--prefix", "the", "-n", "30", "--temperature", "0").stdout
    assert greedy == expected(ckpt_path, "the", temperature=0.0, length=30)
    assert cli(ckpt_path, "--prefix", "the", "-n", "30", "--top-k", "1", "--seed", "8").stdout == greedy
    assert cli(ckpt_path, "--prefix", "the", "-n", "30", "--top-p", "1e-9", "--seed", "9").stdout == greedy


def test_top_k_and_top_p_reach_the_library(ckpt_path):
    args = ("-n", "50", "-t", "1.5", "--top-k", "3", "--top-p", "0.9", "--seed", "2")
    assert cli(ckpt_path, *args).stdout == expected(ckpt_path, seed=2, length=50, temperature=1.5, top_k=3,
                                                   top_p=0.9)


def test_seed_same_output_and_no_seed_differs(ckpt_path):
    args = ("-n", "200", "-t", "3")
    assert cli(ckpt_path, *args, "--seed", "7").stdout == cli(ckpt_path, *args, "--seed", "7").stdout
    assert cli(ckpt_path, *args, "--seed", "7").stdout != cli(ckpt_path, *args, "--seed", "8").stdout
    assert cli(ckpt_path, *args).stdout != cli(ckpt_path, *args).stdout


def test_stop_ends_the_sample_and_is_printed(ckpt_path):
    result = cli(ckpt_path, "--prefix", "hel", "-t", "0", "--stop", "\\n", "-n", "100")
    assert result.stdout == "hello world\n"
    result = cli(ckpt_path, "--prefix", "hel", "-t", "0", "--stop", "wo", "-n", "100")
    assert result.stdout == "hello wo\n"  # a newline is added to a sample that lacks one


def test_num_samples_and_separators(ckpt_path):
    result = cli(ckpt_path, "--prefix", "hel", "-t", "0", "--stop", "\\n", "--num-samples", "3")
    assert result.stdout == "hello world\n\nhello world\n\nhello world\n"  # default: an empty line between
    result = cli(ckpt_path, "--prefix", "hel", "-t", "0", "-n", "2", "--num-samples", "2", "--sep", "--\\t\\\\\\n")
    assert result.stdout == "hello\n--\t\\\nhello\n"
    result = cli(ckpt_path, "-n", "30", "--seed", "5", "--num-samples", "4", "--sep", "")
    parts = result.stdout.split("\n")
    assert result.exit_code == 0 and len(set(parts)) > 2  # samples differ: the rng runs on


def test_beam_is_the_library_beam_search(ckpt_path):
    ck = checkpoint.load(ckpt_path)
    text, _ = beam_search(ck.params, ck.model_config, ck.vocab, "the", 4, 25, "\n")
    result = cli(ckpt_path, "--prefix", "the", "--beam", "4", "-n", "25", "--stop", "\\n")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout == "the" + text + ("" if text.endswith("\n") else "\n")


def test_beam_notes_ignored_options_and_identical_samples(ckpt_path):
    result = cli(ckpt_path, "--beam", "2", "-n", "10", "-t", "0.5", "--seed", "3", "--num-samples", "2")
    assert result.exit_code == 0
    assert "ignoring --temperature, --seed" in result.stderr and "identical" in result.stderr
    first, second = result.stdout.split("\n\n")
    assert first + "\n" == second


def test_stop_the_model_cannot_generate_gets_a_note_and_changes_nothing(ckpt_path):
    result = cli(ckpt_path, "--stop", "Q", "-n", "20", "--seed", "1")
    assert result.exit_code == 0 and "'Q'" in result.stderr
    assert result.stdout == expected(ckpt_path, seed=1, length=20)  # all 20 characters, as without --stop


@pytest.mark.parametrize("args", [["-n", "-1"], ["-t", "-0.5"], ["--top-p", "0"], ["--top-p", "1.5"],
                                  ["--top-k", "-1"], ["--num-samples", "0"], ["--beam", "-1"], ["--seed", "-3"],
                                  ["-n", "many"], ["--bogus"]])
def test_bad_values_are_usage_errors(ckpt_path, args):
    result = cli(ckpt_path, *args)
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr


def test_missing_checkpoint_file_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["sample", "-c", str(tmp_path / "nope.npz")])
    assert result.exit_code == 2 and "nope.npz" in result.stderr


def test_missing_default_checkpoint_says_how_to_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("charrnn.cli.common.BUNDLED", tmp_path / "no-bundled-model.npz")
    result = CliRunner().invoke(app, ["sample"])
    assert result.exit_code == 1 and "charrnn train" in result.stderr and result.stdout == ""


def test_unknown_prefix_characters_exit_1_naming_them(ckpt_path):
    result = cli(ckpt_path, "--prefix", "hello QZ", "--stop", "Q", "--beam", "2", "-t", "0")  # no notes first
    assert result.exit_code == 1 and result.stdout == ""
    assert ": 'Q', 'Z';" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("prefix, named", [
    ('said "hi"', """: '"';"""), ("it's", """: "'";"""), ("a\u00a0b\tc", ": U+0009 (tab), U+00A0 (no-break space);"),
    ("here\u200bwhere", ": U+200B (zero width space);"), ("a\u0085b", ": U+0085;")])
def test_unknown_prefix_characters_are_quoted_or_named_so_a_quote_or_a_space_reads(ckpt_path, prefix, named):
    result = cli(ckpt_path, "--prefix", prefix)
    assert result.exit_code == 1 and result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert named in result.stderr, result.stderr


def test_prefix_dash_reads_stdin_in_cli_runner(ckpt_path):
    result = cli(ckpt_path, "--prefix", "-", "-t", "0", "-n", "5", input="back\\the")  # as is: no escapes
    assert result.exit_code == 0 and result.stdout.startswith("back\\the")
    assert cli(ckpt_path, "--prefix", "-", input="a\\nQ").exit_code == 1


# ------------------------------------------------------------------------------------------- real processes


def test_prefix_dash_reads_stdin(ckpt_path):
    code, out, err = run(ckpt_path, "--prefix", "-", "-n", "12", "--seed", "6", input="the café\nhel".encode())
    assert code == 0 and err == ""
    assert out.decode() == expected(ckpt_path, "the café\nhel", seed=6, length=12)


def test_stdout_is_only_the_text_and_same_seed_gives_the_same_bytes(ckpt_path):
    args = ("--prefix", "the c", "-n", "80", "--seed", "11", "-t", "1.2", "--num-samples", "2")
    first, second = run(ckpt_path, *args), run(ckpt_path, *args)
    assert first == second and first[0] == 0 and first[2] == ""
    ck = checkpoint.load(ckpt_path)
    rng, cfg = np.random.default_rng(11), SampleConfig(length=80, temperature=1.2)
    samples = ["the c" + "".join(generate(ck.params, ck.model_config, ck.vocab, "the c", cfg, rng)) for _ in "ab"]
    assert first[1] == "\n".join(s if s.endswith("\n") else s + "\n" for s in samples).encode()


def test_stop_newline_with_empty_sep_prints_exactly_k_lines(ckpt_path):
    code, out, err = run(ckpt_path, "--stop", "\\n", "--num-samples", "5", "--sep", "", "-n", "60", "-t", "2",
                         "--seed", "3")
    assert code == 0 and err == ""
    assert out.count(b"\n") == 5 and out.endswith(b"\n")


def test_closed_pipe_ends_quietly_with_exit_0(ckpt_path):
    p = subprocess.Popen([sys.executable, "-m", "charrnn", "sample", "-c", str(ckpt_path), "-n", "100000",
                          "--seed", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0
    assert len(head) == 10 and "Traceback" not in err and "Exception ignored" not in err and err == ""


def test_pipe_into_head_in_a_shell(ckpt_path):
    script = (f"set -o pipefail; '{sys.executable}' -m charrnn sample -c '{ckpt_path}' -n 100000 --seed 1 2>err.txt "
              f"| head -c 10 > out.txt")
    p = subprocess.run(["bash", "-c", script], cwd=ckpt_path.parent, timeout=60)
    assert p.returncode == 0  # pipefail: charrnn's own exit status counts
    assert len((ckpt_path.parent / "out.txt").read_bytes()) == 10
    assert (ckpt_path.parent / "err.txt").read_text() == ""


def test_ctrl_c_exits_130_without_a_traceback(ckpt_path):
    p = subprocess.Popen([sys.executable, "-m", "charrnn", "sample", "-c", str(ckpt_path), "-n", "10000000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(p.stdout.read(5)) == 5  # it is sampling now
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err.decode()


def test_missing_default_checkpoint_falls_back_to_the_bundled_model(ckpt_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("charrnn.cli.common.BUNDLED", Path(ckpt_path))
    result = CliRunner().invoke(app, ["sample", "-t", "0", "-n", "20", "--prefix", "hello"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == CliRunner().invoke(app, ["sample", "-c", str(ckpt_path), "-t", "0", "-n", "20",
                                                     "--prefix", "hello"]).stdout
    notice = result.stderr.strip().splitlines()
    assert len(notice) == 1 and "bundled" in notice[0]


def test_an_empty_stop_string_is_a_usage_error(ckpt_path):
    result = cli(ckpt_path, "--stop", "")
    assert result.exit_code == 2 and "--stop" in result.stderr and result.stdout == ""
