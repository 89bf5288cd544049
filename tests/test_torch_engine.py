"""The torch engine against the NumPy engine: equal losses and weights (float64, every cell and optimizer, dropout,
clip, schedule), cross-engine resume both ways, a torch-trained checkpoint sampled by the NumPy core, DDP under a
real torchrun equal to one process, the API (checkpoint <-> nn.Module), and the one-line errors (no torch, a device
that is not there, a batch that does not split over the ranks). Skipped with a reason where torch is missing,
except the no-torch error, which is simulated."""

import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from charrnn import checkpoint, data, model
from charrnn.checkpoint.lock import Locked, OutLock
from charrnn.cli import app
from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus import Corpus
from charrnn.train import Run

WORDS = "the cat sat on a mat , and a dog ran to the cat . then they slept".split()
TEXT = " ".join(random.Random(0).choices(WORDS, k=180)) + "\n"  # ~680 characters, 19 distinct
DEVICE = os.environ.get("CHARRNN_TEST_DEVICE", "cpu")  # where the torch side runs (gpu_check.sh: cuda)
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
TINY = ("--hidden", "8", "--layers", "2", "--embed", "4", "--batch", "4", "--seq", "8", "--seed", "1",
        "--dtype", "float64", "--dropout", "0.3", "--lr", "0.01", "--eval-every", "5")


def needs_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed: the torch engine is not checked")
    torch.set_num_threads(1)
    return torch


def make_run(engine, resume=None, **kw):
    """A tiny float64 run (H 8, 2 layers, D 4, B 4, T 8) on either engine; keywords override either config."""
    vocab = data.Vocab.from_text(TEXT)
    model_kw = {k: kw.pop(k) for k in ("cell", "hidden", "layers", "embed", "dropout") if k in kw}
    mc = ModelConfig(**{"hidden": 8, "layers": 2, "embed": 4, **model_kw}, vocab_size=len(vocab))
    tc = TrainConfig(**{"batch": 4, "seq": 8, "seed": 0, "val_frac": 0.1, "eval_every": 5, "dtype": "float64",
                        **kw})
    corpus = Corpus(vocab.encode(TEXT), vocab.codes, "corpus-hash")
    return Run(mc, tc, corpus, resume=resume, engine=engine, device=DEVICE if engine == "torch" else "cpu")


def assert_close(a: dict, b: dict, tol=1e-8):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=tol, err_msg=k)


def assert_same_training_state(a: Run, b: Run, tol=1e-8):
    ca, cb = a.checkpoint(), b.checkpoint()
    assert_close(ca.params, cb.params, tol)
    assert_close(ca.resume, cb.resume, tol)  # latest weights, optimizer moments (one layout), carried state
    keys = ("step", "cursor", "epochs_done", "chars", "best_step", "bad_evals", "rng")
    assert {k: ca.meta[k] for k in keys} == {k: cb.meta[k] for k in keys}


OPTIMIZERS = [("adam", {}), ("adam", {"weight_decay": 0.01}), ("rmsprop", {"momentum": 0.5}), ("adagrad", {}),
              ("sgd", {"momentum": 0.9})]


@pytest.mark.parametrize("opt, extra", OPTIMIZERS, ids=["adam", "adamw", "rmsprop", "adagrad", "sgd"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_both_engines_give_the_same_losses_and_weights(cell, opt, extra):
    """30 steps with dropout, a clip that bites, a cosine schedule with warm-up, validation and an epoch wrap."""
    needs_torch()
    kw = dict(cell=cell, optimizer=opt, dropout=0.3, clip=0.1, schedule="cosine", warmup=3, steps=30, lr=0.01,
              **extra)
    a, b = make_run("numpy", **kw), make_run("torch", **kw)
    sa, sb = list(a.steps()), list(b.steps())
    assert a.meta.epochs_done >= 1 and any(s.grad_norm > 0.1 for s in sa)  # wrapped, and clipped
    np.testing.assert_allclose([s.loss for s in sa], [s.loss for s in sb], rtol=0, atol=1e-9)
    np.testing.assert_allclose([s.grad_norm for s in sa], [s.grad_norm for s in sb], rtol=1e-9)
    assert [s.val_loss is None for s in sa] == [s.val_loss is None for s in sb]
    vals = [(s.val_loss, t.val_loss) for s, t in zip(sa, sb) if s.val_loss is not None]
    assert len(vals) == 6  # every 5 steps
    np.testing.assert_allclose(*zip(*vals), rtol=0, atol=1e-9)
    assert_same_training_state(a, b)


@pytest.mark.parametrize("opt, extra", OPTIMIZERS[1:], ids=["adamw", "rmsprop", "adagrad", "sgd"])
@pytest.mark.parametrize("first, second", [("numpy", "torch"), ("torch", "numpy")])
def test_a_run_resumes_on_the_other_engine(tmp_path, first, second, opt, extra):
    """k steps on one engine + a resume on the other to N == N steps straight (optimizer moments, dropout, carried
    state and RNG all cross the seam in one layout)."""
    needs_torch()
    kw = dict(cell="lstm", dropout=0.3, steps=20, schedule="cosine", warmup=4, eval_every=3, optimizer=opt,
              **extra)
    straight = make_run("numpy", **kw)
    list(straight.steps())
    run = make_run(first, **kw)
    for s in run.steps():
        if s.step == 7:
            break
    checkpoint.save(tmp_path / "m.npz", run.checkpoint())
    resumed = make_run(second, resume=checkpoint.load(tmp_path / "m.npz"), **kw)
    list(resumed.steps())
    assert resumed.meta.step == 20 and resumed.meta.epochs_done >= 1
    assert_same_training_state(resumed, straight)


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_a_torch_checkpoint_samples_byte_identically_with_the_numpy_core(tmp_path):
    needs_torch()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    for engine in ("numpy", "torch"):
        device = DEVICE if engine == "torch" else "cpu"
        result = cli("train", corpus, "-o", tmp_path / f"{engine}.npz", *TINY, "--steps", "40", "--engine", engine,
                     "--device", device)
        assert result.exit_code == 0, result.stderr
    samples = [cli("sample", "-c", tmp_path / f"{e}.npz", "-t", "0", "-n", "200", "--prefix", "the ")
               for e in ("numpy", "torch")]
    assert samples[0].exit_code == 0 and len(samples[0].stdout) > 200
    assert samples[0].stdout == samples[1].stdout


def test_the_api_loads_a_checkpoint_as_a_module_and_writes_one_back(tmp_path):
    torch = needs_torch()
    from charrnn.torch_engine import load_module, save_module

    run = make_run("numpy", cell="gru", steps=5, val_frac=0.0)
    list(run.steps())
    checkpoint.save(tmp_path / "m.npz", run.checkpoint())
    net = load_module(tmp_path / "m.npz")
    assert net.config == run.mc and np.array_equal(net.vocab, run.vocab) and not net.training
    ids = np.random.default_rng(1).integers(0, run.mc.vocab_size, (3, 7))
    logits, _, _ = model.forward(run.params, run.mc, ids, model.init_state(run.mc, 3, np.float64), need_cache=False)
    with torch.no_grad():
        tlogits, _ = net(torch.from_numpy(ids))
    np.testing.assert_allclose(tlogits.numpy(), logits.transpose(1, 0, 2), rtol=0, atol=1e-12)
    save_module(tmp_path / "back.npz", net, net.vocab)
    back = checkpoint.load(tmp_path / "back.npz")
    assert back.model_config == run.mc and back.resume == {}
    assert_close(back.params, run.params, 0.0)
    sampled = cli("sample", "-c", tmp_path / "back.npz", "-t", "0", "-n", "30")
    assert sampled.exit_code == 0 and sampled.stdout == cli("sample", "-c", tmp_path / "m.npz", "-t", "0",
                                                           "-n", "30").stdout


def test_the_torch_engine_validates_in_torch(monkeypatch):
    """Validation runs where the weights are: the NumPy model's loss is never called on the torch engine."""
    needs_torch()

    def numpy_loss(*args, **kwargs):
        raise AssertionError("validation went through model.loss")

    monkeypatch.setattr(model, "loss", numpy_loss)
    got = [s.val_loss for s in make_run("torch", steps=4, eval_every=2).steps()]
    assert got[1] is not None and got[3] is not None
    with pytest.raises(AssertionError, match="model.loss"):
        list(make_run("numpy", steps=4, eval_every=2).steps())


def test_a_batch_that_does_not_split_over_the_ranks_is_a_one_line_error():
    torch = needs_torch()
    from charrnn.torch_engine import TorchEngine

    class TwoRanks:  # what TorchEngine reads of a Distributed context, without a process group
        device, world, rank = torch.device("cpu"), 2, 0

    mc = ModelConfig(cell="rnn", vocab_size=5, embed=2, hidden=3, layers=1)
    with pytest.raises(ValueError, match=r"^--batch 3 does not split evenly over 2 processes; give a multiple of 2"):
        TorchEngine(mc, TrainConfig(batch=3), model.init_params(mc, np.random.default_rng(0)), dist=TwoRanks())


@pytest.mark.parametrize("device", ["cuda:7", "tpu"])
def test_a_device_that_is_not_there_is_one_line_and_exit_2(tmp_path, device):
    torch = needs_torch()
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 CUDA devices")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    result = cli("train", corpus, "-o", tmp_path / "m.npz", *TINY, "--engine", "torch", "--device", device)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"--device {device}" in result.stderr or f"--device '{device}'" in result.stderr
    assert not (tmp_path / "m.npz").exists()


def test_a_device_needs_the_torch_engine(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    result = cli("train", corpus, "-o", tmp_path / "m.npz", *TINY, "--device", "cuda")
    assert result.exit_code == 2 and "--engine torch" in result.stderr


def test_without_torch_engine_torch_is_one_line_saying_how_to_install_it(tmp_path):
    """`import torch` fails in this process (sys.modules['torch'] = None), as on a plain install."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    code = ("import sys\nsys.modules['torch'] = None\nfrom charrnn.cli import main\n"
            f"sys.argv = ['charrnn', 'train', {str(corpus)!r}, '-o', {str(tmp_path / 'm.npz')!r}, '--engine', "
            "'torch']\nmain()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'charrnn[torch]'" in lines[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "m.npz").exists()


def arrays(path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_ddp_on_two_gloo_ranks_equals_one_process_and_sigterm_stops_every_rank_with_a_save(tmp_path):
    """A real torchrun with 2 CPU ranks (B 4: two streams each), float64, dropout, validation, stopped by SIGTERM
    (as a scheduler stops a job; torchrun passes it on to every rank). Every rank stops at the same step k and
    rank 0 alone writes: a checkpoint equal, to 1e-8, to k steps of the NumPy engine in one process with the whole
    batch; and resumed there to k + 6 it equals k + 6 steps straight, so the gathered carried state and the RNG
    stayed in lockstep."""
    needs_torch()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    two = tmp_path / "two.npz"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--monitor-interval", "0.1", "-m", "charrnn", "train", str(corpus), "-o", str(two), *TINY,
           "--steps", "1000000", "--engine", "torch"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=ENV, cwd=tmp_path)
    try:
        seen = []
        for line in p.stderr:  # rank 0's plain progress lines: one at step 5, when it validates
            seen.append(line)
            if line.startswith("step 5/"):
                break
        else:
            raise AssertionError("".join(seen))
        with pytest.raises(Locked):  # the job holds the lock on its --out (rank 0 for all)
            OutLock(two).acquire()
        p.send_signal(signal.SIGTERM)
        stdout, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    err = "".join(seen) + err
    assert stdout == ""  # stopped by a signal: no path on stdout, from any rank
    assert err.count("stopped by      SIGTERM") == 1 and err.count("saved a resumable checkpoint") == 1, err
    assert "2 processes" in err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["corpus.txt", "two.npz"]  # no stray temporary files
    k = checkpoint.load(two).meta["step"]
    assert k >= 5
    one = tmp_path / "one.npz"  # the same k steps in one process (it validates at its last step; two did not)
    assert cli("train", corpus, "-o", one, *TINY, "--steps", k).exit_code == 0
    assert_same_files(one, two, ("step", "cursor", "epochs_done", "chars", "rng"), only="resume/")
    straight = tmp_path / "straight.npz"
    assert cli("train", corpus, "-o", straight, *TINY, "--steps", k + 6).exit_code == 0
    assert cli("train", corpus, "-o", two, "--resume", "--steps", k + 6).exit_code == 0
    assert_same_files(straight, two, ("step", "cursor", "epochs_done", "chars", "best_step", "rng"))


def assert_same_files(one, two, meta_keys, only=""):
    a, b = arrays(one), arrays(two)
    assert sorted(a) == sorted(b)
    for k in a:
        if a[k].dtype.kind == "f" and k.startswith(only):
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-8, err_msg=k)
    ma, mb = json.loads(str(a["meta"][()])), json.loads(str(b["meta"][()]))
    for k in meta_keys:
        assert ma[k] == mb[k], k


def test_float32_runs_on_both_engines_to_rounding():
    """The default precision: the same run, equal to float32 rounding (the checkpoint keeps float32)."""
    needs_torch()
    kw = dict(cell="lstm", dropout=0.3, steps=10, dtype="float32")
    a, b = make_run("numpy", **kw), make_run("torch", **kw)
    la, lb = [s.loss for s in a.steps()], [s.loss for s in b.steps()]
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    ca, cb = a.checkpoint(), b.checkpoint()
    assert all(v.dtype == np.float32 for v in {**cb.params, **{k: v for k, v in cb.resume.items()
                                                                if k != "optim/t"}}.values())
    assert_close(ca.params, cb.params, 1e-4)


def test_under_torchrun_the_numpy_engine_is_a_usage_error(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    result = CliRunner().invoke(app, ["train", str(corpus), "-o", str(tmp_path / "m.npz"), *TINY],
                                env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert result.exit_code == 2 and "needs --engine torch" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_cli_offers_exactly_the_registered_engines():
    from charrnn.config import DEFAULT_ENGINE, ENGINE_NAMES
    from charrnn.engine import ENGINES

    assert tuple(ENGINES) == ENGINE_NAMES and DEFAULT_ENGINE == "numpy"


def test_torch_is_imported_by_one_module_only_and_lazily():
    """charrnn/torch_engine.py alone names torch in an import, and only inside functions, so importing it (as the
    engine registry does) works without torch."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "charrnn"
    importers = {}
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "torch" or n.startswith("torch.") for n in names):
                importers.setdefault(path.name, []).append(any(node is top for top in tree.body))
    assert set(importers) == {"torch_engine.py"}
    assert not any(importers["torch_engine.py"])  # none at the top level
