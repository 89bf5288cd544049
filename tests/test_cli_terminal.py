"""What a person sees: the real CLI under a pseudo-terminal at 60 and 80 columns, and the terminal-facing features
(the training bar and its ETA, info's plot, eval --show, --quiet, completion, help, command order, sample's seed
and stdin hints)."""

import fcntl
import json
import math
import os
import random
import re
import select
import struct
import subprocess
import sys
import termios
import time
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from charrnn import data
from charrnn.checkpoint import load
from charrnn.cli import app
from charrnn.cli.progress import bar_line, estimate
from charrnn.train import evaluate

WORDS = "the cat sat on a mat , and a dog ran to the cat . then they slept".split()
TEXT = " ".join(random.Random(3).choices(WORDS, k=600)) + "\n"
TINY = ("--hidden", "8", "--layers", "1", "--embed", "4", "--batch", "4", "--seq", "8")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def cli(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def ckpt(corpus):
    out = corpus.parent / "m.npz"
    result = cli("train", corpus, "-o", out, *TINY, "--seed", "4", "--steps", "60", "--eval-every", "10",
                 "--lr", "0.02")
    assert result.exit_code == 0, result.stderr
    return out


def in_terminal(args, columns, env_columns=True, typed=b"", cwd=None, timeout=60):
    """Run `charrnn ARGS` with stdin, stdout and stderr on a pseudo-terminal of `columns` columns (TIOCSWINSZ, and
    $COLUMNS when env_columns); type `typed` into it. -> (exit code, everything the terminal received, as text)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    if env_columns:
        env["COLUMNS"] = str(columns)
    p = subprocess.Popen([sys.executable, "-m", "charrnn", *map(str, args)], stdin=slave, stdout=slave,
                         stderr=slave, env=env, cwd=cwd, start_new_session=True)
    os.close(slave)
    if typed:
        os.write(master, typed)
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer is gone
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        code = p.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
    return code, out.decode("utf-8", "replace")


def screen_lines(output: str) -> list[str]:
    """Every line as drawn: escape sequences removed, split at carriage returns and newlines."""
    return re.split(r"[\r\n]", ANSI.sub("", output))


# ------------------------------------------------------------------------------------------ the training bar


@pytest.mark.parametrize("columns, env_columns, bounds", [
    (60, False, ["--max-time", "2s"]),  # the width from the terminal itself
    (80, True, ["--steps", "100000", "--max-time", "2s"]),  # time ends it long before the steps would
])
def test_the_bar_fits_the_terminal_and_shows_an_eta_under_max_time(corpus, tmp_path, columns, env_columns, bounds):
    code, shown = in_terminal(["train", corpus, "-o", "m.npz", *TINY, "--eval-every", "50", *bounds], columns,
                              env_columns, cwd=tmp_path)
    assert code == 0, shown
    lines = screen_lines(shown)
    too_wide = [line for line in lines if len(line) > columns]
    assert not too_wide, too_wide
    bars = [line for line in lines if re.match(r"\s*\d+%\|", line)]
    assert bars and all("eta " in line for line in bars), lines
    assert any(re.search(r"eta 00:0[01]", line) for line in bars), bars  # a 2 s budget, not 29:13
    assert any("/00:02" in line for line in bars) if columns >= 80 else True  # elapsed/budget
    assert "Traceback" not in shown


def test_a_step_bound_bar_counts_steps_to_100_percent(corpus, tmp_path):
    code, shown = in_terminal(["train", corpus, "-o", "m.npz", *TINY, "--steps", "40"], 80, cwd=tmp_path)
    assert code == 0, shown
    lines = screen_lines(shown)
    assert all(len(line) <= 80 for line in lines)
    last_bar = [line for line in lines if re.match(r"\s*\d+%\|", line)][-1]
    assert last_bar.startswith("100%|") and "40/40" in last_bar and "nats" in last_bar and "val" in last_bar


def a_step(step, elapsed, speed=104_056.0):
    return SimpleNamespace(step=step, elapsed=elapsed, loss=2.2123, chars_per_sec=speed)


@pytest.mark.parametrize("width", [60, 61, 67, 72, 79, 80, 100, 140, 200])
@pytest.mark.parametrize("total, first, max_time", [(400, 0, None), (None, 0, 20.0), (100_000, 0, 8.0),
                                                    (400, 100, 3600.0), (12_345_678, 12_000_000, None)])
def test_bar_lines_never_exceed_the_width_and_keep_the_eta(width, total, first, max_time):
    from tqdm import tqdm

    step = a_step(first + 233, 4.4, speed=12_345_678.9)
    fmt = bar_line(step, total, first, max_time, 2.309, width)
    line = tqdm.format_meter(n=500, total=1000, elapsed=1.0, ncols=width, bar_format=fmt)
    assert len(line) <= width and "eta " in line and "%|" in line and "val 2.309" in line
    bar = line.split("|")[1]
    assert len(bar) >= 3


def test_the_eta_follows_whichever_bound_ends_the_run_first():
    # steps: 100 of 400 in 10 s, so 300 more take 30 s
    assert estimate(a_step(100, 10.0), 400, 0, None) == (0.25, 30.0, False)
    # a time budget alone: elapsed over the budget
    assert estimate(a_step(100, 10.0), None, 0, 40.0) == (0.25, 30.0, True)
    # both: --steps 100000 would take 2.8 h, --max-time 8s ends it
    frac, left, by_time = estimate(a_step(100, 2.0), 100_000, 0, 8.0)
    assert (frac, left, by_time) == (0.25, 6.0, True)
    # both: the steps end it first (300 more steps take 30 s, the budget has an hour left)
    assert estimate(a_step(100, 10.0), 400, 0, 3600.0) == (0.25, 30.0, False)
    # a resumed run: the pace counts only the steps made in this invocation
    assert estimate(a_step(95, 5.0), 100, 90, None) == (0.95, 5.0, False)


# ----------------------------------------------------------------------------------------------------- info


def test_info_draws_the_curves_and_names_the_best_step(ckpt):
    result = cli("info", "-c", ckpt)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    got = json.loads(cli("info", "-c", ckpt, "--json").stdout)
    best, step = got["best_val_loss"], got["best_step"]
    assert step in [h["step"] for h in got["history"] if h["val_loss"] == best]
    assert f"best val loss   {best:.4f} ({best / math.log(2):.3f} bits) at step {step}" in out
    assert f"◆ best {best:.4f} at step {step}" in out
    assert re.search(r"seed +4\b", out) and "None" not in out
    assert re.search(r"training time +[\d.]+s", out)
    assert any(0x2800 < ord(c) <= 0x28FF for c in out), out  # braille: the training curve
    assert out.count("•") >= 5  # one per validation point but the best (6 validations)
    assert "◆" in out
    plot_lines = out.split("loss curves")[1].splitlines()
    assert all(len(line) <= 100 for line in plot_lines)


def test_info_without_validation_says_dash(corpus, tmp_path):
    out = tmp_path / "m.npz"
    assert cli("train", corpus, "-o", out, *TINY, "--steps", "3", "--val-frac", "0", "--seed", "1").exit_code == 0
    result = cli("info", "-c", out)
    assert result.exit_code == 0 and re.search(r"best val loss +-", result.stdout)
    assert "None" not in result.stdout and "validation" not in result.stdout.split("loss curves")[1]


# ------------------------------------------------------------------------------------------------ eval --show


def test_eval_show_off_a_terminal_is_the_plain_text(ckpt, corpus):
    result = cli("eval", corpus, "-c", ckpt, "--show", "--show-chars", "120")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == TEXT[:120] + "\n"
    summary = result.stderr.strip().splitlines()
    assert len(summary) == 1 and "bits/char" in summary[0] and "first 120 of" in summary[0]


def test_eval_show_json_carries_every_characters_bits(ckpt, corpus):
    result = cli("eval", corpus, "-c", ckpt, "--show", "--json", "--show-chars", "300")
    report = json.loads(result.stdout)
    shown = report["shown"]
    assert shown["text"] == TEXT[:300] and len(shown["bits"]) == 300 and shown["of"] == len(TEXT)
    assert shown["bits"][0] is None and all(b >= 0 for b in shown["bits"][1:])
    assert {"nats_per_char", "bits_per_char", "perplexity", "chars", "streams"} <= set(report)
    c = load(ckpt)  # the shown bits are evaluation's own numbers: one stream from the zero state
    one_stream = evaluate(c.params, c.model_config, data.Vocab(c.vocab).encode(TEXT[:300]), batch=1)
    assert sum(shown["bits"][1:]) / 299 * math.log(2) == pytest.approx(one_stream.nats_per_char, abs=1e-3)


def test_eval_show_on_a_terminal_is_coloured_with_a_legend(ckpt, corpus):
    code, shown = in_terminal(["eval", corpus, "-c", ckpt, "--show", "--show-chars", "200"], 80)
    assert code == 0, shown
    assert "surprisal, bits per character" in shown and "\x1b[" in shown
    assert ANSI.sub("", shown).replace("\r\n", "\n").count(TEXT[:40]) == 1


# ------------------------------------------------------------------------------------------ quiet, completion


def test_quiet_leaves_only_errors(corpus, tmp_path, ckpt):
    result = cli("train", corpus, "-o", tmp_path / "m.npz", *TINY, "--steps", "3", "-q")
    assert result.exit_code == 0 and result.stderr == "" and result.stdout.strip() == str(tmp_path / "m.npz")
    result = cli("sample", "-c", ckpt, "-n", "5", "--quiet")
    assert result.exit_code == 0 and result.stderr == ""
    result = cli("eval", corpus, "-c", ckpt, "-q", "--show")
    assert result.exit_code == 0 and result.stderr == ""
    result = cli("info", "-c", tmp_path / "nothing.npz", "-q")
    assert result.exit_code == 2 and "does not exist" in result.stderr  # errors still show


def test_quiet_silences_the_bundled_model_notice(tmp_path, monkeypatch, ckpt):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("charrnn.cli.common.BUNDLED", ckpt)
    loud, quiet = cli("info", "--json"), cli("info", "--json", "-q")
    assert len(loud.stderr.strip().splitlines()) == 1 and len(loud.stderr) < 100 and "bundled" in loud.stderr
    assert quiet.stderr == "" and quiet.stdout == loud.stdout


def test_every_command_has_quiet_and_the_app_has_completion():
    for command in ("train", "sample", "eval", "inspect", "info"):
        assert "--quiet" in cli(command, "--help").stdout
    top = cli("--help").stdout
    assert "--install-completion" in top and "--show-completion" in top


def test_show_completion_prints_a_bash_script():
    p = subprocess.run([sys.executable, "-m", "charrnn", "--show-completion", "bash"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "complete" in p.stdout and "_CHARRNN_COMPLETE" in p.stdout.upper()
    env = dict(os.environ, _CHARRNN_COMPLETE="complete_bash", COMP_WORDS="charrnn train x --cell ", COMP_CWORD="4")
    p = subprocess.run([sys.executable, "-m", "charrnn"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and p.stdout.split() == ["rnn", "lstm", "gru"]


# ----------------------------------------------------------------------------------------------- the commands


def test_bare_charrnn_prints_the_help_and_exits_0():
    result = cli()
    assert result.exit_code == 0 and "Usage" in result.stdout
    listed = re.findall(r"^│ (\w+) ", result.stdout.split("Commands")[1], flags=re.M)
    assert listed == ["train", "sample", "eval", "inspect", "info"]


def test_help_shows_real_defaults_metavars_and_panels():
    from charrnn.cli.layout import PANELS

    text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "80"}).stdout
    for bad in ("{corpus}", "<str>", "(none)", "[default: (", "…", "<int range>"):
        assert bad not in text, bad
    for panel in ("Model", "Training", "Run length", "Validation", "Output and checkpoints"):
        assert f"─ {panel} ─" in text, panel
    assert "Usage: charrnn train [OPTIONS] PATH..." in text and "[default: lstm]" in text
    import typer

    command = typer.main.get_command(app).commands["train"]
    loose = [p.name for p in command.params if p.name not in ("help", "quiet", "corpus")
             and p.name not in PANELS["train"]]
    assert not loose, f"options of train in no help panel (add them to layout.PANELS): {loose}"


@pytest.mark.parametrize("columns", [60, 80])
@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["eval"], ["info"]])
def test_help_is_never_cut(command, columns):
    text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(columns)}).stdout
    assert "…" not in text and all(len(line) <= columns for line in text.splitlines())


def test_a_bad_number_is_named_plainly(corpus, tmp_path):
    result = cli("train", corpus, "-o", tmp_path / "m.npz", "--hidden", "abc")
    assert result.exit_code == 2 and "not a valid whole number" in result.stderr
    result = cli("train", corpus, "-o", tmp_path / "m.npz", "--lr", "fast")
    assert result.exit_code == 2 and "not a valid number" in result.stderr


# ------------------------------------------------------------------------------------------------------ sample


def test_sample_reports_a_drawn_seed_that_repeats_the_sample(ckpt):
    first = cli("sample", "-c", ckpt, "-n", "80")
    seed = re.fullmatch(r"seed (\d+) \(pass --seed (\d+) to repeat\)\n", first.stderr)
    assert seed and seed[1] == seed[2], first.stderr
    again = cli("sample", "-c", ckpt, "-n", "80", "--seed", seed[1])
    assert again.stdout == first.stdout and again.stderr == ""
    assert cli("sample", "-c", ckpt, "-n", "8", "-t", "0").stderr == ""  # argmax draws nothing
    assert cli("sample", "-c", ckpt, "-n", "8", "--beam", "2").stderr == ""


def test_beam_0_is_a_usage_error(ckpt):
    result = cli("sample", "-c", ckpt, "--beam", "0")
    assert result.exit_code == 2 and "--beam" in result.stderr and result.stdout == ""


def run_sample(ckpt, *args, stdin):
    p = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(ckpt), "-n", "5", "--seed", "1",
                        *args], stdin=stdin, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stderr


def test_text_on_stdin_without_prefix_dash_gets_a_hint(ckpt, tmp_path):
    hint = "pass --prefix - to use it"
    (tmp_path / "in.txt").write_text("the cat")
    with open(tmp_path / "in.txt") as f:
        assert hint in run_sample(ckpt, stdin=f)  # `charrnn sample < file`
    read, write = os.pipe()
    os.write(write, b"the cat")
    os.close(write)
    try:
        assert hint in run_sample(ckpt, stdin=read)  # `echo ROMEO: | charrnn sample`
    finally:
        os.close(read)
    assert run_sample(ckpt, stdin=subprocess.DEVNULL) == ""
    (tmp_path / "empty.txt").write_text("")
    with open(tmp_path / "empty.txt") as f:
        assert run_sample(ckpt, stdin=f) == ""
    with open(tmp_path / "in.txt") as f:
        assert run_sample(ckpt, "--prefix", "-", stdin=f) == ""


def test_prefix_dash_at_a_terminal_says_how_to_end_it(ckpt):
    code, shown = in_terminal(["sample", "-c", ckpt, "-n", "5", "--seed", "1", "--prefix", "-"], 80,
                              typed=b"the cat\n\x04")
    assert code == 0, shown
    assert "end it with Ctrl-D" in shown and "the cat\r\n" in shown
