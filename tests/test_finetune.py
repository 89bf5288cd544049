"""Fine-tuning (`train --init-from`): the vocabulary grows to the union with the source's rows moved, predictions on
text the source knew barely move at step 0, the architecture comes from the source (conflicts are one line), the
source is recorded and shown, and the run is an ordinary one afterwards: exact resume without the source, both
engines, determinism, hostile source files."""

import json
import math
import random
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from charrnn import checkpoint, finetune, model
from charrnn.checkpoint import load
from charrnn.cli import app
from charrnn.config import TrainConfig
from charrnn.corpus import Corpus
from charrnn.data import Vocab
from charrnn.launch import plan
from charrnn.train import Run

WORDS = "the cat sat on a mat , and a dog ran to the cat . then they slept".split()
SOURCE_TEXT = " ".join(random.Random(1).choices(WORDS, k=200)) + "\n"  # the source's corpus
NEW_WORDS = "Zoë quick brown fox jumps over the lazy dog ; the cat sat".split()
TEXT = " ".join(random.Random(2).choices(NEW_WORDS, k=150)) + "\n"  # shares some characters, brings new ones
TINY = ("--batch", "4", "--seq", "8", "--lr", "0.01", "--eval-every", "3", "--threads", "1")


def cli(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def error_line(result, code) -> str:
    assert result.exit_code == code and result.stdout == "", (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny LSTM (H 8, D 4, 2 layers, dropout 0.1) trained for 30 steps on SOURCE_TEXT, and its corpus."""
    tmp = tmp_path_factory.mktemp("source")
    (tmp / "src.txt").write_text(SOURCE_TEXT)
    result = cli("train", tmp / "src.txt", "-o", tmp / "src.npz", "--hidden", "8", "--layers", "2", "--embed", "4",
                 "--dropout", "0.1", "--steps", "30", "--seed", "3", *TINY)
    assert result.exit_code == 0, result.stderr
    return tmp / "src.npz"


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "new.txt"
    path.write_text(TEXT)
    return path


def new_corpus(text=TEXT) -> Corpus:
    return Corpus.from_text(text)


# --------------------------------------------------------------------------------------------- the vocabulary


def test_the_vocabulary_is_the_union_and_the_source_rows_move_unchanged(source):
    src = load(source)
    init = finetune.start(str(source), {}, new_corpus().vocab, "float32")
    want = np.unique(np.concatenate([src.vocab, Vocab.from_text(TEXT).codes]))
    np.testing.assert_array_equal(init.vocab, want)  # sorted as Vocab sorts, source-only characters kept
    assert init.vocab.dtype == np.uint32 and init.mc.vocab_size == len(want)
    assert init.added == len(set(TEXT) - set(SOURCE_TEXT)) > 0 and set(SOURCE_TEXT) - set(TEXT)  # both kinds
    at = np.searchsorted(init.vocab, src.vocab)
    new = np.setdiff1d(np.arange(len(init.vocab)), at)
    for name in ("embedding.weight", "decoder.weight", "decoder.bias"):
        np.testing.assert_array_equal(init.params[name][at], src.params[name])
    for name, p in src.params.items():
        if name not in ("embedding.weight", "decoder.weight", "decoder.bias"):
            np.testing.assert_array_equal(init.params[name], p)
    np.testing.assert_allclose(init.params["embedding.weight"][new], np.broadcast_to(
        src.params["embedding.weight"].mean(axis=0), (len(new), 4)), rtol=1e-6)
    assert not init.params["decoder.weight"][new].any()
    assert len(set(init.params["decoder.bias"][new].tolist())) == 1
    assert (init.mc.cell, init.mc.hidden, init.mc.layers, init.mc.embed, init.mc.dropout) == ("lstm", 8, 2, 4, 0.1)


def log_probs(params, mc, vocab, text) -> np.ndarray:
    """(T, V) log-softmax of the model on `text` (its first character conditions, the rest are scored)."""
    ids = Vocab(vocab).encode(text)[None]
    logits, _, _ = model.forward(params, mc, ids, model.init_state(mc, 1), need_cache=False)  # (T,1,V)
    z = logits[:, 0].astype(np.float64)
    return z - (z.max(axis=1, keepdims=True) + np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1,
                                                                                                    keepdims=True)))


def test_predictions_on_text_the_source_knew_barely_move_at_step_0(source):
    src = load(source)
    init = finetune.start(str(source), {}, new_corpus().vocab, "float32")
    before = log_probs(src.params, src.model_config, src.vocab, SOURCE_TEXT)  # (T,V)
    after = log_probs(init.params, init.mc, init.vocab, SOURCE_TEXT)[:, np.searchsorted(init.vocab, src.vocab)]
    change = np.abs(after - before).max()
    assert change < 1e-3, change  # ~NEW_CHAR_MASS where the source's partition is near its probe's smallest
    new_mass = 1 - np.exp(after).sum(axis=1)  # (T,) probability the new characters hold
    assert new_mass.max() < 1e-3 and new_mass.min() > 0
    # a plain random init of the new rows (as a fresh model would have) moves them far more
    rng = np.random.default_rng(0)
    new = np.setdiff1d(np.arange(len(init.vocab)), np.searchsorted(init.vocab, src.vocab))
    naive = dict(init.params, **{k: init.params[k].copy() for k in ("decoder.weight", "decoder.bias")})
    naive["decoder.weight"][new] = rng.uniform(-1 / math.sqrt(8), 1 / math.sqrt(8), (len(new), 8))
    naive["decoder.bias"][new] = rng.uniform(-1 / math.sqrt(8), 1 / math.sqrt(8), len(new))
    moved = log_probs(naive, init.mc, init.vocab, SOURCE_TEXT)[:, np.searchsorted(init.vocab, src.vocab)]
    assert np.abs(moved - before).max() > 100 * change


def test_the_probe_is_scored_in_chunks_with_the_same_result(source, monkeypatch):
    src = load(source)
    whole = finetune.probe_log_partition(src.params, src.model_config, src.vocab)
    monkeypatch.setattr(finetune, "PROBE_LOGITS", 7 * len(src.vocab))  # 7 positions per forward
    assert finetune.probe_log_partition(src.params, src.model_config, src.vocab) == pytest.approx(whole, abs=1e-5)


def test_a_corpus_with_no_new_character_keeps_the_source_exactly(source):
    src = load(source)
    init = finetune.start(str(source), {}, new_corpus(SOURCE_TEXT[:50]).vocab, "float64")
    np.testing.assert_array_equal(init.vocab, src.vocab)
    assert init.added == 0
    for k, p in src.params.items():
        assert init.params[k].dtype == np.float64
        np.testing.assert_array_equal(init.params[k], p)


# ------------------------------------------------------------------------------------------- the CLI, conflicts


def test_a_fine_tuned_run_records_its_source_and_info_shows_it(source, corpus_file, tmp_path):
    out = tmp_path / "ft.npz"
    result = cli("train", corpus_file, "--init-from", source, "-o", out, "--steps", "6", "--seed", "1", *TINY)
    assert result.exit_code == 0, result.stderr
    assert f"starting from {source}" in result.stderr and "new in this corpus" in result.stderr
    ckpt, src = load(out), load(source)
    origin = ckpt.meta["init_from"]
    assert origin == {"path": str(source), "sha256": finetune.file_sha256(source), "steps": 30,
                      "best_val_loss": src.meta["best_val_loss"], "corpus_sha256": src.meta["corpus_sha256"]}
    assert ckpt.meta["step"] == 6 and ckpt.model_config.hidden == 8 and len(ckpt.vocab) > len(src.vocab)
    info = json.loads(cli("info", "-c", out, "--json").stdout)
    assert info["init_from"] == origin
    table = cli("info", "-c", out).stdout
    assert "fine-tuned from" in table and origin["sha256"][:12] in table and "30 steps" in table
    assert json.loads(cli("info", "-c", source, "--json").stdout)["init_from"] is None
    sample = cli("sample", "-c", out, "--length", "50", "--seed", "1", "--prefix", "Zoë")
    assert sample.exit_code == 0, sample.stderr


@pytest.mark.parametrize("option, value, stored", [("--hidden", "16", "8"), ("--layers", "1", "2"),
                                                   ("--embed", "5", "4"), ("--cell", "gru", "lstm")])
def test_a_size_that_conflicts_with_the_source_is_one_line(source, corpus_file, tmp_path, option, value, stored):
    line = error_line(cli("train", corpus_file, "--init-from", source, "-o", tmp_path / "x.npz", option, value,
                          "--steps", "2"), 1)
    assert f"{option} {value} conflicts with --init-from {source} ({option} {stored})" in line
    assert not (tmp_path / "x.npz").exists()


def test_sizes_equal_to_the_source_and_training_options_are_accepted(source, corpus_file, tmp_path):
    out = tmp_path / "x.npz"
    result = cli("train", corpus_file, "--init-from", source, "-o", out, "--hidden", "8", "--cell", "lstm",
                 "--dropout", "0.3", "--optimizer", "rmsprop", "--steps", "2", "--seed", "1", *TINY)
    assert result.exit_code == 0, result.stderr
    ckpt = load(out)
    assert ckpt.model_config.dropout == 0.3 and ckpt.train_config.optimizer == "rmsprop"
    assert ckpt.train_config.lr == 0.01 and ckpt.train_config.batch == 4  # the new run's own, not the source's


def test_init_from_with_resume_is_a_conflict_and_force_is_fine(source, corpus_file, tmp_path):
    out = tmp_path / "x.npz"
    assert cli("train", corpus_file, "-o", out, "--steps", "2", "--seed", "1", "--hidden", "4", *TINY).exit_code == 0
    line = error_line(cli("train", corpus_file, "--init-from", source, "-o", out, "--resume"), 1)
    assert "--init-from" in line and "--resume" in line
    assert "already exists" in error_line(cli("train", corpus_file, "--init-from", source, "-o", out), 1)
    result = cli("train", corpus_file, "--init-from", source, "-o", out, "--force", "--steps", "2", "--seed", "1",
                 *TINY)
    assert result.exit_code == 0 and load(out).meta["init_from"]["path"] == str(source)
    with pytest.raises(Exception, match="give only one"):
        plan({}, new_corpus(), out, True, str(source))


def test_init_from_bundled(corpus_file, tmp_path):
    out = tmp_path / "b.npz"
    result = cli("train", corpus_file, "--init-from", "bundled", "-o", out, "--steps", "1", "--seed", "1",
                 "--batch", "2", "--seq", "8", "--val-frac", "0", "--threads", "1")
    assert result.exit_code == 0, result.stderr
    bundled = load(finetune.BUNDLED)
    ckpt = load(out)
    assert ckpt.model_config.hidden == bundled.model_config.hidden and ckpt.meta["init_from"]["path"] == "bundled"
    assert ckpt.meta["init_from"]["sha256"] == finetune.file_sha256(finetune.BUNDLED)
    assert set(map(int, bundled.vocab)) <= set(map(int, ckpt.vocab))


def test_a_float16_source_works(source, corpus_file, tmp_path):
    checkpoint.package(source, tmp_path / "f16.npz", float16=True)
    out = tmp_path / "x.npz"
    result = cli("train", corpus_file, "--init-from", tmp_path / "f16.npz", "-o", out, "--steps", "2", "--seed",
                 "1", *TINY)
    assert result.exit_code == 0, result.stderr
    assert load(out).storage == "float32"


# ----------------------------------------------------------------------------------- an ordinary run afterwards


def test_resume_is_exact_and_needs_no_source(source, corpus_file, tmp_path):
    copy = tmp_path / "src.npz"
    copy.write_bytes(source.read_bytes())
    args = ("--init-from", copy, "--seed", "4", "--dropout", "0.2", *TINY)
    straight, split = tmp_path / "straight.npz", tmp_path / "split.npz"
    assert cli("train", corpus_file, "-o", straight, "--steps", "10", *args).exit_code == 0
    assert cli("train", corpus_file, "-o", split, "--steps", "4", *args).exit_code == 0
    copy.unlink()  # the resume reads only its own checkpoint
    result = cli("train", corpus_file, "-o", split, "--resume", "--steps", "10", "--threads", "1")
    assert result.exit_code == 0, result.stderr
    a, b = load(straight), load(split)
    assert a.meta["step"] == b.meta["step"] == 10 and a.meta["init_from"] == b.meta["init_from"]
    np.testing.assert_array_equal(a.vocab, b.vocab)
    for part in ("params", "resume"):
        for k, v in getattr(a, part).items():
            np.testing.assert_array_equal(v, getattr(b, part)[k], err_msg=k)
    assert (a.meta["best_val_loss"], a.meta["best_step"]) == (b.meta["best_val_loss"], b.meta["best_step"])
    vals = [{h["step"]: h["val_loss"] for h in c.meta["history"]} for c in (a, b)]
    assert all(vals[1][step] == val for step, val in vals[0].items())  # (the split run also recorded step 4)


def test_the_same_command_gives_the_same_weights(source, corpus_file, tmp_path):
    for name in ("a", "b"):
        assert cli("train", corpus_file, "--init-from", source, "-o", tmp_path / f"{name}.npz", "--steps", "5",
                   "--seed", "9", "--dropout", "0.2", *TINY).exit_code == 0
    a, b = load(tmp_path / "a.npz"), load(tmp_path / "b.npz")
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        np.testing.assert_array_equal(a.resume[f"params/{k}"], b.resume[f"params/{k}"])


def test_both_engines_fine_tune_alike(source):
    torch = pytest.importorskip("torch", reason="torch is not installed: the torch engine is not checked")
    torch.set_num_threads(1)
    corpus = new_corpus()
    tc = TrainConfig(batch=4, seq=8, lr=0.01, eval_every=3, seed=2, steps=7, dtype="float64", val_frac=0.1)
    runs = []
    for engine in ("numpy", "torch"):
        p = plan({"seed": 2, "dropout": 0.2, "batch": 4, "seq": 8, "lr": 0.01, "eval_every": 3, "steps": 7,
                  "dtype": "float64", "val_frac": 0.1}, corpus, source.parent / "unused.npz", False, str(source))
        assert p.tc == tc and p.init is not None
        run = Run(p.mc, p.tc, corpus, engine=engine, init=p.init)
        steps = list(run.steps())
        runs.append((run, [s.loss for s in steps], [s.val_loss for s in steps]))
    (a, la, va), (b, lb, vb) = runs
    np.testing.assert_allclose(la, lb, rtol=0, atol=1e-8)
    assert [v is None for v in va] == [v is None for v in vb]
    np.testing.assert_allclose([v for v in va if v is not None], [v for v in vb if v is not None], atol=1e-8)
    for k, v in a.checkpoint().params.items():
        np.testing.assert_allclose(v, b.checkpoint().params[k], rtol=0, atol=1e-8, err_msg=k)
    np.testing.assert_array_equal(a.vocab, b.vocab)


# ------------------------------------------------------------------------------------------ hostile sources


def hostile_sources(source, tmp_path) -> dict:
    whole = source.read_bytes()
    paths = {}
    for name, content in (("truncated", whole[: len(whole) // 2]), ("empty", b""), ("random", bytes(range(256)))):
        paths[name] = tmp_path / f"{name}.npz"
        paths[name].write_bytes(content)
    with np.load(source, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for name, change in (("shape", lambda a: a.update({"rnn.weight_hh_l1": np.zeros((32, 7), np.float32)})),
                         ("nan", lambda a: a["decoder.bias"].__setitem__(0, np.nan)),
                         ("origin", lambda a: a.update(meta=np.array(json.dumps(
                             {**json.loads(str(a["meta"][()])), "init_from": {"steps": -1}}))))):
        damaged = {k: v.copy() for k, v in arrays.items()}
        change(damaged)
        paths[name] = tmp_path / f"{name}.npz"
        with open(paths[name], "wb") as f:
            np.savez(f, **damaged)
    return paths


def test_a_hostile_source_is_one_line_exit_1(source, corpus_file, tmp_path):
    patterns = {"truncated": "not a readable .npz", "empty": "it is empty", "random": "not a zip archive",
                "shape": r"'rnn.weight_hh_l1' has shape \(32, 7\), expected \(32, 8\)", "nan": "holds NaN",
                "origin": r"meta.init_from.steps must be an integer"}
    for name, path in hostile_sources(source, tmp_path).items():
        line = error_line(cli("train", corpus_file, "--init-from", path, "-o", tmp_path / "x.npz", "--steps", "2"),
                          1)
        assert line.startswith("charrnn: error: --init-from: ") and re.search(patterns[name], line), (name, line)
        assert not (tmp_path / "x.npz").exists()


def test_a_missing_source_or_a_directory_is_a_usage_error(corpus_file, tmp_path):
    for bad in (tmp_path / "none.npz", tmp_path):
        result = cli("train", corpus_file, "--init-from", bad, "-o", tmp_path / "x.npz")
        assert result.exit_code == 2 and "--init-from" in result.stderr and "bundled" in result.stderr


def test_init_from_in_meta_is_validated(source, tmp_path):
    ckpt = load(source)
    for bad, pattern in (("x", "must be an object or null"), ({"steps": "30"}, "steps must be an integer"),
                         ({"best_val_loss": float("nan")}, "best_val_loss must be a finite"),
                         ({"path": ["a"]}, "path must be a JSON scalar")):
        ckpt.meta["init_from"] = bad
        with pytest.raises(checkpoint.CheckpointError, match=pattern):
            checkpoint.save(tmp_path / "m.npz", ckpt)
