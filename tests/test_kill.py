"""kill -9 at random moments of real `charrnn train` processes that save after every step: the checkpoint always
loads, the run never goes back, and no temp file of a killed save survives the next run.

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
    time.sleep(rng.uniform(0.005, 0.2))
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
    assert len(steps) >= 15, report  # nearly every kill lands after the first save
    assert steps == sorted(steps), report  # a resumed run never goes back
    assert report["final_exit"] == 0 and report["final_step"] == (steps[-1] if steps else 0) + 2, report
    assert report["temps_left"] == [], report
    assert sorted(os.listdir(out.parent)) == ["model.npz"]
