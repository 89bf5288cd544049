"""Tests for float16 weight storage (format version 2), version-1 files, and packaging a checkpoint for shipping."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from charrnn import checkpoint, model
from charrnn.checkpoint import CheckpointError, for_shipping, load, package, save
from charrnn.cli import app
from charrnn.data import Vocab
from charrnn.train import evaluate

DATA = Path(__file__).parent / "data"
V1_FILE = DATA / "v1_checkpoint.npz"  # written by charrnn 03b82cc (format 1): LSTM 2x8, 6 steps of v1_corpus.txt
V1_CORPUS = DATA / "v1_corpus.txt"
ROOT = Path(__file__).resolve().parents[1]


def cli(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def one_line_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def raw(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_raw(path, arrays: dict):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def params_of(arrays: dict) -> list[str]:
    return [k for k in arrays if k not in checkpoint.RESERVED and not k.startswith(checkpoint.RESUME_PREFIX)]


# ------------------------------------------------------------------------------------------------- version 1


def test_a_version_1_file_still_loads_samples_evaluates_and_resumes(tmp_path):
    ckpt = load(V1_FILE)
    assert ckpt.version == 1 and ckpt.storage == "float32" and ckpt.meta["step"] == 6
    assert int(raw(V1_FILE)["format_version"]) == 1
    result = cli("sample", "-c", V1_FILE, "--length", "40", "--seed", "1")
    assert result.exit_code == 0 and len(result.stdout) >= 40
    info = json.loads(cli("info", "-c", V1_FILE, "--json").stdout)
    assert (info["format_version"], info["storage"], info["steps"]) == (1, "float32", 6)
    assert cli("eval", V1_CORPUS, "-c", V1_FILE, "--json").exit_code == 0
    out = tmp_path / "v1.npz"
    out.write_bytes(V1_FILE.read_bytes())
    result = cli("train", V1_CORPUS, "-o", out, "--resume", "--steps", "8", "--threads", "1")
    assert result.exit_code == 0, result.stderr
    resumed = load(out)
    assert resumed.version == checkpoint.FORMAT_VERSION and resumed.meta["step"] == 8  # saved in the new format


def test_float16_weights_are_refused_in_a_version_1_file(tmp_path):
    arrays = raw(V1_FILE)
    arrays.update({k: arrays[k].astype(np.float16) for k in params_of(arrays)})
    write_raw(tmp_path / "bad.npz", arrays)
    assert re.search(r"must be float32 or float64 in format version 1, found float16", one_line_error(tmp_path /
                                                                                                         "bad.npz"))


# ------------------------------------------------------------------------------------------------- float16


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """(the v1 source, its float16 package) as paths."""
    tmp = tmp_path_factory.mktemp("ship")
    package(V1_FILE, tmp / "f16.npz", float16=True)
    return V1_FILE, tmp / "f16.npz"


def test_a_float16_package_stores_float16_and_loads_as_float32(shipped):
    src, dst = shipped
    arrays = raw(dst)
    assert int(arrays["format_version"]) == 2
    assert {arrays[k].dtype for k in params_of(arrays)} == {np.dtype(np.float16)}
    assert not [k for k in arrays if k.startswith(checkpoint.RESUME_PREFIX)]
    a, b = load(src), load(dst)
    assert b.storage == "float16" and b.resume == {}
    assert not set(b.meta) & {"rng", "window", "window_sum", "window_n", "curve_sum", "curve_n"}
    assert b.meta["history"] == a.meta["history"] and b.meta.get("curve") == a.meta.get("curve")
    for k, p in a.params.items():  # the stored weights are the source's rounded to float16, upcast exactly
        assert b.params[k].dtype == np.float32
        np.testing.assert_array_equal(b.params[k], p.astype(np.float16).astype(np.float32))
    assert os.path.getsize(dst) < os.path.getsize(src)


def test_float16_logits_are_within_float16_rounding_of_the_float32_ones(shipped):
    a, b = load(shipped[0]), load(shipped[1])
    mc = a.model_config
    ids = Vocab(a.vocab).encode(V1_CORPUS.read_text()[:300])[None]  # (1,T)
    la, _, _ = model.forward(a.params, mc, ids, model.init_state(mc, 1), need_cache=False)  # (T,1,V)
    lb, _, _ = model.forward(b.params, mc, ids, model.init_state(mc, 1), need_cache=False)
    gap = np.abs(la - lb)
    # each weight is off by at most 2**-11 of itself; a logit sums ~H+1 such products of inputs below 1
    bound = 2.0**-11 * (np.abs(a.params["decoder.weight"]).sum(axis=1).max() + np.abs(a.params["decoder.bias"]).max())
    assert 0 < gap.max() < 4 * bound


def test_a_float16_package_samples_evaluates_and_shows_its_storage(shipped):
    src, dst = shipped
    result = cli("sample", "-c", dst, "--length", "60", "--seed", "4")
    assert result.exit_code == 0 and len(result.stdout) >= 60
    got = json.loads(cli("eval", V1_CORPUS, "-c", dst, "--json").stdout)["nats_per_char"]
    want = json.loads(cli("eval", V1_CORPUS, "-c", src, "--json").stdout)["nats_per_char"]
    assert abs(got - want) < 1e-3
    info = json.loads(cli("info", "-c", dst, "--json").stdout)
    assert (info["format_version"], info["dtype"], info["storage"]) == (2, "float32", "float16")
    assert "float32 (stored as float16)" in cli("info", "-c", dst).stdout
    ckpt = load(dst)
    assert evaluate(ckpt.params, ckpt.model_config, Vocab(ckpt.vocab).encode(V1_CORPUS.read_text())).nats_per_char \
        == pytest.approx(got)


def test_a_package_cannot_be_resumed(shipped, tmp_path):
    out = tmp_path / "m.npz"
    out.write_bytes(shipped[1].read_bytes())
    result = cli("train", V1_CORPUS, "-o", out, "--resume", "--steps", "9")
    assert result.exit_code == 1 and "no training state to resume" in result.stderr


HOSTILE = {
    "nan": (lambda p: p["decoder.weight"].__setitem__((0, 0), np.nan), "'decoder.weight' holds NaN"),
    "inf": (lambda p: p["decoder.bias"].__setitem__(0, np.inf), "'decoder.bias' holds NaN or infinite"),
    "mixed": (lambda p: p.update({"decoder.bias": p["decoder.bias"].astype(np.float32)}),
              "'decoder.bias' is float32 but 'embedding.weight' is float16"),
    "int8": (lambda p: p.update({k: v.astype(np.int8) for k, v in p.items()}),
             "must be float16, float32 or float64 in format version 2, found int8"),
    "complex": (lambda p: p.update({k: v.astype(np.complex64) for k, v in p.items()}), "not a plain array of the kind"),
    "longdouble": (lambda p: p.update({k: v.astype(np.longdouble) for k, v in p.items()}),
                   "found float128|more than its name allows"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_float16_files_are_one_line_errors(shipped, tmp_path, case):
    change, pattern = HOSTILE[case]
    arrays = raw(shipped[1])
    params = {k: arrays[k].copy() for k in params_of(arrays)}
    change(params)
    arrays.update(params)
    write_raw(tmp_path / "bad.npz", arrays)
    message = one_line_error(tmp_path / "bad.npz")
    assert re.search(pattern, message), message


def test_packaging_refuses_weights_beyond_float16_and_writes_nothing(tmp_path):
    ckpt = load(V1_FILE)
    ckpt.params["decoder.bias"][0] = 7e4
    with pytest.raises(CheckpointError, match="beyond float16's range"):
        for_shipping(ckpt, float16=True)
    assert for_shipping(ckpt).params["decoder.bias"][0] == np.float32(7e4)  # float32 keeps it
    with pytest.raises(CheckpointError, match="beyond float16's range"):
        save(tmp_path / "x.npz", for_shipping(ckpt, True))
    assert not (tmp_path / "x.npz").exists()


def test_float32_package_keeps_the_weights_exactly(tmp_path):
    shipped = package(V1_FILE, tmp_path / "f32.npz")
    a, b = load(V1_FILE), load(tmp_path / "f32.npz")
    assert b.storage == "float32" and b.resume == {} and shipped.resume == {}
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_the_package_script(tmp_path):
    dst = tmp_path / "b.npz"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "benchmarks" / "package_bundled.py"), str(V1_FILE),
                           str(dst), "--float16"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "weights stored as float16" in proc.stdout and load(dst).storage == "float16"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "benchmarks" / "package_bundled.py"),
                           str(tmp_path / "none.npz"), str(dst)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "not found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
