"""Real processes and unlucky runs. kill -9 at random moments of `charrnn train` processes that save after every
step: the checkpoint always loads, the run never goes back, and no temp file of a killed save survives the next
run. Then SIGTERM, closed standard streams, an unwritable or symlinked --out, and options checked at parse time.

The processes are forked from one helper process that has already imported charrnn (a fresh interpreter per kill
would spend most of the test importing numpy); each child runs the real CLI entry point, writes real files and is
ended by a real SIGKILL, so no clean-up code of its own can run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

FORK_SERVER = r"""
import json, os, random, signal, sys, time

from charrnn.__main__ import main
from charrnn.checkpoint import load
import charrnn.cli, charrnn.cli.progress, charrnn.train, charrnn.launch  # everything a child needs, imported once

corpus, out, kills, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng, folder = random.Random(seed), os.path.dirname(out)
TRAIN = ["train", corpus, "-o", out, "--hidden", "8", "--embed", "4", "--layers", "1", "--seq", "8", "--batch", "2",
         "--val-frac", "0", "--checkpoint-every", "0.001s", "--seed", "1"]


def child(args):
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        sys.argv = ["charrnn", *args]
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        os._exit(code)
    return pid


def temps():
    return sorted(n for n in os.listdir(folder) if n.endswith(".tmp"))


report = {"steps": [], "kills_with_temp": 0}
for _ in range(kills):
    resume = ["--resume"] if os.path.exists(out) else []
    pid = child(TRAIN + resume + ["--steps", "1000000"])
    deadline = time.monotonic() + 60
    while not os.path.exists(out) and time.monotonic() < deadline:  # the first run: kill it after its first save
        time.sleep(0.001)
    time.sleep(rng.uniform(0.0, 0.2))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    report["kills_with_temp"] += bool(temps())
    if os.path.exists(out):
        report["steps"].append(load(out).meta["step"])  # raises (and fails the test) on a damaged file
last = report["steps"][-1] if report["steps"] else 0
pid = child(TRAIN + (["--resume"] if os.path.exists(out) else []) + ["--steps", str(last + 2)])
report["final_exit"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
report["final_step"] = load(out).meta["step"]
report["temps_left"] = temps()
print(json.dumps(report))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_9_at_random_moments_never_loses_the_checkpoint_or_leaves_temp_files(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    out = tmp_path / "run" / "model.npz"
    out.parent.mkdir()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # no BLAS threads across fork()
    done = subprocess.run([sys.executable, "-c", FORK_SERVER, str(corpus), str(out), "20", "12"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    steps = report["steps"]
    assert len(steps) == 20, report  # every kill came after the first save, and the checkpoint loaded every time
    assert steps == sorted(steps), report  # a resumed run never goes back
    assert report["final_exit"] == 0 and report["final_step"] == (steps[-1] if steps else 0) + 2, report
    assert report["temps_left"] == [], report
    assert sorted(os.listdir(out.parent)) == ["model.npz"]


# ------------------------------------------------------------------------ SIGTERM, closed streams, checked early

CORPUS = "the quick brown fox jumps over the lazy dog\n" * 40
TINY = ["--hidden", "8", "--embed", "4", "--layers", "1", "--seq", "8", "--batch", "2", "--val-frac", "0",
        "--seed", "1"]


def charrnn(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_sigterm_saves_a_resumable_checkpoint_and_exits_143(tmp_path):
    import signal
    import time

    from charrnn.checkpoint import load

    (tmp_path / "c.txt").write_text(CORPUS)
    out = tmp_path / "m.npz"
    p = subprocess.Popen([sys.executable, "-m", "charrnn", "train", tmp_path / "c.txt", "-o", out, *TINY,
                          "--steps", "1000000", "--checkpoint-every", "1h"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while "step " not in (p.stderr.readline() or "step ") and time.monotonic() < deadline:
        pass  # wait for the first progress line: training has started
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 143, stderr
    assert "SIGTERM" in stderr and "Traceback" not in stderr and "saved a resumable checkpoint" in stderr
    step = load(out).meta["step"]
    assert step >= 1
    again = charrnn("train", tmp_path / "c.txt", "-o", out, "--resume", "--steps", step + 1)
    assert again.returncode == 0, again.stderr
    assert load(out).meta["step"] == step + 1


def test_closed_streams_never_give_a_traceback(tmp_path):
    (tmp_path / "c.txt").write_text(CORPUS)
    out = tmp_path / "m.npz"
    py = f"{sys.executable} -m charrnn"
    done = subprocess.run(["bash", "-c", f"{py} train {tmp_path / 'c.txt'} -o {out} {' '.join(TINY)} --steps 3 2>&-"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == f"{out}\n" and out.exists()  # trained and saved
    done = subprocess.run(["bash", "-c", f"{py} sample -c {tmp_path / 'nope.npz'} 2>&-"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""  # the error is dropped, never moved to stdout
    for command, code in ((f"sample -c {out} -n 20 --seed 1 >&-", 0), (f"train - -o {tmp_path / 'x.npz'} <&-", 1)):
        done = subprocess.run(["bash", "-c", f"{py} {command}"], capture_output=True, text=True, timeout=120)
        assert done.returncode == code and "Traceback" not in done.stderr, (command, done.stderr)


def test_an_unwritable_out_fails_before_training_and_a_symlink_stays_a_link(tmp_path):
    from charrnn.checkpoint import load

    (tmp_path / "c.txt").write_text(CORPUS)
    (tmp_path / "file").write_text("x")
    done = charrnn("train", tmp_path / "c.txt", "-o", tmp_path / "file" / "m.npz", *TINY, "--steps", "3")
    assert done.returncode == 1 and "cannot write" in done.stderr and "step " not in done.stderr, done.stderr
    real, link = tmp_path / "real.npz", tmp_path / "link.npz"
    assert charrnn("train", tmp_path / "c.txt", "-o", real, *TINY, "--steps", "2").returncode == 0
    link.symlink_to(real)
    done = charrnn("train", tmp_path / "c.txt", "-o", link, "--resume", "--steps", "4")
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and load(real).meta["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "file", "link.npz", "real.npz"]


@pytest.mark.parametrize("option, value", [("--dropout", "nan"), ("--val-frac", "nan"), ("--clip", "nan"),
                                           ("--weight-decay", "inf"), ("--momentum", "nan"), ("--lr", "nan"),
                                           ("--layers", "1000000000"), ("--hidden", "1000000000"),
                                           ("--batch", "1000000000"), ("--max-time", "9" * 400)])
def test_hostile_train_options_are_usage_errors(tmp_path, option, value):
    from typer.testing import CliRunner

    from charrnn.cli import app

    (tmp_path / "c.txt").write_text(CORPUS)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "c.txt"), "-o", str(tmp_path / "m.npz"), *TINY,
                                      option, value])
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("args", [["--temperature", "nan"], ["--temperature", "inf"], ["--beam", "1000000"],
                                  ["--beam", "1000", "-n", "100000"], ["-n", str(2**41)]])
def test_hostile_sample_options_are_usage_errors(args):
    from typer.testing import CliRunner

    from charrnn.cli import app

    result = CliRunner().invoke(app, ["sample", *args])
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output


def test_a_batch_far_beyond_the_corpus_is_fitted_at_once(tmp_path):
    from typer.testing import CliRunner

    from charrnn.cli import app

    (tmp_path / "c.txt").write_text(CORPUS)  # 1,760 characters
    result = CliRunner().invoke(app, ["train", str(tmp_path / "c.txt"), "-o", str(tmp_path / "m.npz"), *TINY,
                                      "--batch", "65536", "--steps", "1"])
    assert result.exit_code == 0 and "using --batch" in result.stderr, result.output
