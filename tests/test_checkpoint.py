"""Tests for charrnn.checkpoint: round trip, pickle-free format, atomic writes, one-line validation errors."""

import json
import re
import os

import numpy as np
import pytest

from charrnn import checkpoint, config
from charrnn.checkpoint import FORMAT_VERSION, Checkpoint, CheckpointError, describe, load, save
from charrnn.config import ModelConfig, TrainConfig

VOCAB = np.array([0, 10, 65, 233, 0x1F600], dtype=np.uint32)  # NUL, newline, 'A', 'é', an emoji


def make_ckpt(cell="lstm", dtype=np.float64, layers=2, seed=0) -> Checkpoint:
    """A small valid checkpoint: V=5, D=3, H=4."""
    rng = np.random.default_rng(seed)
    mc = ModelConfig(cell=cell, vocab_size=len(VOCAB), embed=3, hidden=4, layers=layers, dropout=0.1)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in config.param_shapes(mc).items()}
    resume = {
        "params/decoder.bias": rng.standard_normal(len(VOCAB)).astype(dtype),
        "optim/m/decoder.bias": np.zeros(len(VOCAB), dtype),
        "optim/t": np.array(7, dtype=np.int64),
        "cursor": np.array([3, 1, 4], dtype=np.int64),
        "rng": np.array(json.dumps({"state": 2**70, "inc": 5})),
    }
    history = [{"step": 0, "loss": 1.6, "val_loss": 1.7}, {"step": 5, "loss": 1.3, "val_loss": 1.25}]
    meta = {"step": 7, "seed": 42, "best_val_loss": 1.25, "history": history, "note": "né 😀"}
    tc = TrainConfig(optimizer="sgd", momentum=0.9, steps=10, seed=42, dtype=np.dtype(dtype).name)
    return Checkpoint(model_config=mc, train_config=tc, vocab=VOCAB.copy(), params=params, resume=resume, meta=meta)


def assert_same(a: Checkpoint, b: Checkpoint):
    assert a.model_config == b.model_config and a.train_config == b.train_config
    assert a.meta == b.meta and a.version == b.version
    assert a.vocab.dtype == b.vocab.dtype and np.array_equal(a.vocab, b.vocab)
    for got, want in ((a.params, b.params), (a.resume, b.resume)):
        assert list(got) == list(want)
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape
            np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", config.CELL_NAMES)
def test_round_trip(tmp_path, cell, dtype):
    ckpt = make_ckpt(cell, dtype)
    path = tmp_path / "sub" / "dir" / "model.npz"  # parents are created
    save(path, ckpt)
    assert_same(load(path), ckpt)
    assert sorted(os.listdir(path.parent)) == ["model.npz"]


def test_empty_resume_and_meta_round_trip(tmp_path):
    ckpt = make_ckpt(layers=1)
    ckpt.resume, ckpt.meta = {}, {}
    save(tmp_path / "m.npz", ckpt)
    assert_same(load(tmp_path / "m.npz"), ckpt)


def test_file_is_plain_pickle_free_npz(tmp_path):
    ckpt = make_ckpt("gru")
    save(tmp_path / "m.npz", ckpt)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    assert data["format_version"].shape == () and data["format_version"].dtype == np.int64
    assert int(data["format_version"]) == FORMAT_VERSION
    for key in ("model_config", "train_config", "meta"):
        assert data[key].shape == () and data[key].dtype.kind == "U"
    assert json.loads(str(data["model_config"]))["cell"] == "gru"
    assert data["vocab"].dtype == np.uint32
    assert set(data) == {*checkpoint.RESERVED, *ckpt.params, *("resume/" + k for k in ckpt.resume)}


def test_numpy_scalars_in_meta_become_json(tmp_path):
    ckpt = make_ckpt()
    ckpt.meta = {"step": np.int64(3), "loss": np.float32(0.5), "series": np.arange(3)}
    save(tmp_path / "m.npz", ckpt)
    assert load(tmp_path / "m.npz").meta == {"step": 3, "loss": 0.5, "series": [0, 1, 2]}


def test_path_without_suffix_is_written_as_is(tmp_path):
    save(tmp_path / "model.ckpt", make_ckpt())
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]
    assert load(tmp_path / "model.ckpt").model_config.cell == "lstm"


@pytest.mark.parametrize("target", ["savez", "replace"])
def test_failed_save_leaves_old_checkpoint_and_no_temp_file(tmp_path, monkeypatch, target):
    path = tmp_path / "model.npz"
    save(path, make_ckpt(seed=1))
    before = path.read_bytes()

    def boom(f, *args, **kwargs):
        if target == "savez":
            f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(np if target == "savez" else os, target, boom)
    with pytest.raises(OSError, match="disk full"):
        save(path, make_ckpt(seed=2))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def test_a_hard_exit_mid_save_leaves_the_old_checkpoint_and_no_temp_file(tmp_path):
    """A second Ctrl-C during `charrnn train`'s save calls discard_temp_files() and then os._exit, which skips
    save's own clean-up: in a real process, the old file must survive byte for byte and no temp file remain."""
    import subprocess
    import sys

    path = tmp_path / "model.npz"
    save(path, make_ckpt(seed=1))
    before = path.read_bytes()
    script = f"""
import os, sys
import numpy as np
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_checkpoint import make_ckpt
from charrnn import checkpoint

def interrupted(f, *args, **kwargs):  # half a file written, then the second Ctrl-C's handler runs
    f.write(b"half a checkpoint")
    f.flush()
    assert any(name.endswith(".tmp") for name in os.listdir({str(tmp_path)!r}))
    checkpoint.discard_temp_files()
    os._exit(130)

np.savez = interrupted
checkpoint.save({str(path)!r}, make_ckpt(seed=2))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def test_invalid_checkpoint_is_never_written(tmp_path):
    ckpt = make_ckpt()
    ckpt.params["decoder.bias"] = np.full(len(VOCAB), np.nan)
    with pytest.raises(CheckpointError, match="refusing to write .*'decoder.bias' holds NaN"):
        save(tmp_path / "m.npz", ckpt)
    ckpt = make_ckpt()
    ckpt.resume["bad"] = np.array([object()])
    with pytest.raises(CheckpointError, match="resume\\['bad'\\]"):
        save(tmp_path / "m.npz", ckpt)
    ckpt = make_ckpt()
    ckpt.meta = {"x": object()}
    with pytest.raises(CheckpointError, match="meta is not JSON"):
        save(tmp_path / "m.npz", ckpt)
    assert os.listdir(tmp_path) == []


def test_describe(tmp_path):
    ckpt = make_ckpt("gru", np.float32)
    save(tmp_path / "m.npz", ckpt)
    info = describe(load(tmp_path / "m.npz"))
    assert info == {
        "format_version": FORMAT_VERSION, "cell": "gru", "embed": 3, "hidden": 4, "layers": 2, "dropout": 0.1,
        "parameters": sum(int(np.prod(s)) for s in config.param_shapes(ckpt.model_config).values()),
        "vocab_size": 5, "dtype": "float32", "storage": "float32", "steps": 7, "seed": 42, "best_val_loss": 1.25,
        "val_chars": None,
        "history": [{"step": 0, "loss": 1.6, "val_loss": 1.7}, {"step": 5, "loss": 1.3, "val_loss": 1.25}],
        "init_from": None,
    }
    json.dumps(info, allow_nan=False)
    ckpt.meta = {"best_val_loss": float("inf")}
    assert describe(ckpt)["best_val_loss"] is None and describe(ckpt)["history"] == []


# --------------------------------------------------------------------------------------- invalid files


def raw(tmp_path) -> dict:
    """The arrays of a valid checkpoint file, to be damaged by a test."""
    save(tmp_path / "good.npz", make_ckpt())
    with np.load(tmp_path / "good.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_error(path) -> str:
    """The CheckpointError message for loading `path`, which must be one line."""
    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    assert message and "\n" not in message and "\r" not in message
    return message


def write_raw(path, data: dict):
    with open(path, "wb") as f:
        np.savez(f, **data)


def text(obj) -> np.ndarray:
    return np.array(json.dumps(obj))


MODEL = config.to_dict(make_ckpt().model_config)
DAMAGES = {
    "no_version": (lambda d: d.pop("format_version"), r"not a charrnn checkpoint \(missing 'format_version'\)"),
    "newer": (lambda d: d.update(format_version=np.array(FORMAT_VERSION + 1)), "newer charrnn.*upgrade"),
    "version_text": (lambda d: d.update(format_version=np.array("1")), "invalid format_version"),
    "no_vocab": (lambda d: d.pop("vocab"), "missing 'vocab'"),
    "no_meta": (lambda d: d.pop("meta"), "missing 'meta'"),
    "bad_json": (lambda d: d.update(model_config=np.array("{cell: lstm")), "'model_config' is not valid JSON"),
    "json_list": (lambda d: d.update(train_config=text([1, 2])), "'train_config' is not valid JSON"),
    "json_bytes": (lambda d: d.update(meta=np.array(b"{}")), "'meta' is not valid JSON"),
    "cell": (lambda d: d.update(model_config=text({**MODEL, "cell": "transformer"})),
             "unknown model_config.cell 'transformer'"),
    "hidden": (lambda d: d.update(model_config=text({**MODEL, "hidden": 0})),
               r"hidden must be an integer in \[1, 16384\]"),
    "optimizer": (lambda d: d.update(train_config=text({"optimizer": "lion"})), "unknown train_config.optimizer"),
    "missing_param": (lambda d: d.pop("rnn.bias_hh_l1"), "missing parameter 'rnn.bias_hh_l1'"),
    "extra_param": (lambda d: d.update({"rnn.weight_ih_l2": np.zeros((16, 4))}), "unexpected parameter"),
    "shape": (lambda d: d.update({"rnn.weight_ih_l0": np.zeros((12, 3))}),
              r"'rnn.weight_ih_l0' has shape \(12, 3\), expected \(16, 3\)"),
    "int_params": (lambda d: d.update({k: np.zeros(v.shape, np.int32) for k, v in d.items()
                                       if k in config.param_shapes(make_ckpt().model_config)}),
                   "must be float16, float32 or float64 in format version 2, found int32"),
    "mixed_dtypes": (lambda d: d.update({"decoder.bias": d["decoder.bias"].astype(np.float32)}),
                     "'decoder.bias' is float32 but 'embedding.weight' is float64"),
    "nan": (lambda d: d["decoder.weight"].__setitem__((0, 0), np.nan), "'decoder.weight' holds NaN"),
    "inf": (lambda d: d["embedding.weight"].__setitem__((1, 1), -np.inf), "'embedding.weight' holds NaN or inf"),
    "vocab_int64": (lambda d: d.update(vocab=d["vocab"].astype(np.int64)), "vocab must be a 1-D uint32"),
    "vocab_2d": (lambda d: d.update(vocab=d["vocab"].reshape(1, -1)), "vocab must be a 1-D uint32"),
    "vocab_unsorted": (lambda d: d.update(vocab=d["vocab"][::-1].copy()), "not sorted and unique"),
    "vocab_duplicate": (lambda d: d.update(vocab=np.array([0, 10, 10, 65, 66], np.uint32)), "not sorted and unique"),
    "vocab_length": (lambda d: d.update(vocab=d["vocab"][:4]), "vocab has 4 code points but .*vocab_size is 5"),
    "vocab_range": (lambda d: d.update(vocab=np.array([0, 1, 2, 3, 0x110000], np.uint32)), "beyond the last Unicode"),
    "pickled": (lambda d: d.update(meta=np.array([{"a": 1}], dtype=object)), "member 'meta' holds object"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_file_gives_one_line_error(tmp_path, damage):
    change, pattern = DAMAGES[damage]
    data = raw(tmp_path)
    change(data)
    write_raw(tmp_path / "bad.npz", data)
    message = load_error(tmp_path / "bad.npz")
    assert re.search(pattern, message), message
    assert str(tmp_path / "bad.npz") in message


def test_truncated_file(tmp_path):
    save(tmp_path / "m.npz", make_ckpt())
    whole = (tmp_path / "m.npz").read_bytes()
    for size in (0, 10, len(whole) // 2, len(whole) - 10):
        (tmp_path / "t.npz").write_bytes(whole[:size])
        assert "not a readable .npz" in load_error(tmp_path / "t.npz")


def test_random_bytes_and_npy_files(tmp_path):
    (tmp_path / "r.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    assert "not a readable .npz" in load_error(tmp_path / "r.npz")
    (tmp_path / "PK.npz").write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(4096))
    assert "not a readable .npz" in load_error(tmp_path / "PK.npz")
    np.save(tmp_path / "a.npy", np.zeros(3))
    assert "not a readable .npz" in load_error(tmp_path / "a.npy")


def test_missing_file_and_directory(tmp_path):
    message = load_error(tmp_path / "nope.npz")
    assert "not found" in message and "charrnn train" in message
    assert "is a directory" in load_error(tmp_path)


def test_file_mode_is_kept_or_follows_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    save(tmp_path / "m.npz", make_ckpt())
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(tmp_path / "m.npz", 0o600)
    save(tmp_path / "m.npz", make_ckpt(seed=3))
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count open files")
def test_load_closes_the_file(tmp_path):
    save(tmp_path / "m.npz", make_ckpt())
    before = len(os.listdir("/proc/self/fd"))
    ckpt = load(tmp_path / "m.npz")
    assert len(os.listdir("/proc/self/fd")) == before
    assert all(type(p) is np.ndarray for p in ckpt.params.values())


# ------------------------------------------------------------------------------------ hostile files (issue 12)


def write_zip(path, members: dict, compress: bool = False):
    """A zip archive of raw members {name: bytes or an iterable of byte chunks}, written chunk by chunk."""
    import zipfile

    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=True) as f:
                for chunk in ([content] if isinstance(content, bytes) else content):
                    f.write(chunk)


def npy_bytes(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def good_members(tmp_path) -> dict:
    """The members of a valid checkpoint file as raw .npy bytes, to be replaced or added to by a test."""
    return {k + ".npy": npy_bytes(v) for k, v in raw(tmp_path).items()}


def zeros(n_bytes: int, chunk: int = 2**22):
    for start in range(0, n_bytes, chunk):
        yield bytes(min(chunk, n_bytes - start))


@pytest.mark.parametrize("key", ["format_version", "meta", "vocab", "decoder.bias", "resume/optim/t",
                                 "resume/cursor", "resume/params/decoder.weight"])
def test_a_zip_bomb_under_any_key_is_refused_before_it_inflates(tmp_path, key):
    """16 MB of zeros deflate to ~16 kB: the declared size is refused before any of it is read."""
    members = good_members(tmp_path)
    members[key + ".npy"] = zeros(2**24)
    write_zip(tmp_path / "bomb.npz", members, compress=True)
    assert (tmp_path / "bomb.npz").stat().st_size < 2**20
    message = load_error(tmp_path / "bomb.npz")
    assert "zip bomb" in message or "more than its name allows" in message, message


def test_a_header_that_claims_a_huge_array_is_refused_after_the_header(tmp_path, monkeypatch):
    """A member whose .npy header says (10**10,) float64 is refused without reading (or allocating) its data."""
    members = good_members(tmp_path)
    buf = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**10,)})
    header = buf.getvalue()  # magic and header
    for key in ("format_version", "decoder.bias", "resume/params/decoder.bias"):
        bad = dict(members, **{key + ".npy": header + bytes(64)})
        write_zip(tmp_path / "big.npz", bad)
        empty = np.empty

        def small_empty(shape, *args, **kwargs):
            assert np.prod(shape) < 10**6, "allocated the data of a refused member"
            return empty(shape, *args, **kwargs)

        monkeypatch.setattr(np, "empty", small_empty)
        assert "more than its name allows" in load_error(tmp_path / "big.npz")
        monkeypatch.undo()


def test_non_npy_members_and_foreign_zip_methods_are_refused(tmp_path):
    for name in ("format_version", "model_config", "meta", "notes.txt"):
        members = good_members(tmp_path)
        members.pop(name + ".npy", None)
        members[name] = b"not an array"
        write_zip(tmp_path / "odd.npz", members)
        assert "is not a .npy array" in load_error(tmp_path / "odd.npz")


def test_too_many_members_is_refused_from_the_end_record(tmp_path):
    members = good_members(tmp_path)
    members.update({f"resume/x{i}.npy": b"" for i in range(5000)})
    write_zip(tmp_path / "many.npz", members)
    assert "more than 4,096" in load_error(tmp_path / "many.npz")


@pytest.mark.parametrize("make", ["fifo", "device", "socket"])
def test_only_regular_files_are_opened(tmp_path, make):
    import signal
    import socket

    path = tmp_path / "x.npz"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
    else:
        path = "/dev/zero"
    signal.signal(signal.SIGALRM, lambda *a: pytest.fail("load() blocked on a non-regular file"))
    signal.alarm(10)
    try:
        message = load_error(path)
    finally:
        signal.alarm(0)
    assert "not a checkpoint file" in message and ("FIFO" in message or "device" in message or "socket" in message)


def test_deeply_nested_json_is_one_line(tmp_path):
    for depth in (40, 3000, 30_000):  # past JSON_MAX_DEPTH; past the recursion limit (1000)
        for key in ("model_config", "meta"):
            data = raw(tmp_path)
            data[key] = np.array('{"a": ' + "[" * depth + "]" * depth + "}")
            write_raw(tmp_path / "deep.npz", data)
            assert f"'{key}' is not valid JSON" in load_error(tmp_path / "deep.npz")


def test_json_text_members_are_bounded(tmp_path):
    data = raw(tmp_path)
    data["model_config"] = np.array(json.dumps({**MODEL, "pad": "x" * 2**17}))
    write_raw(tmp_path / "long.npz", data)
    assert "more than its name allows" in load_error(tmp_path / "long.npz")


TRAIN = config.to_dict(make_ckpt().train_config)
META = make_ckpt().meta
HOSTILE_FIELDS = {
    "layers_1e9": ("model_config", {**MODEL, "layers": 10**9}, r"layers must be an integer in \[1, 64\]"),
    "hidden_float": ("model_config", {**MODEL, "hidden": 4.0}, "hidden must be an integer"),
    "hidden_bool": ("model_config", {**MODEL, "hidden": True}, "hidden must be an integer"),
    "dropout_nan": ("model_config", {**MODEL, "dropout": float("nan")}, "dropout must be a finite number"),
    "too_many_params": ("model_config", {**MODEL, "hidden": 16384, "layers": 64}, "parameters, more than"),
    "vocab_size_big": ("model_config", {**MODEL, "vocab_size": 2**40}, "vocab_size must be"),
    "key_not_str": ("model_config", {**MODEL, "cell": ["lstm"]}, "unknown model_config.cell"),
    "seq_0": ("train_config", {**TRAIN, "seq": 0}, "seq must be an integer"),
    "batch_0": ("train_config", {**TRAIN, "batch": 0}, "batch must be an integer"),
    "eval_every_0": ("train_config", {**TRAIN, "eval_every": 0}, "eval_every must be an integer"),
    "lr_string": ("train_config", {**TRAIN, "lr": "fast"}, "lr must be a finite number"),
    "lr_inf": ("train_config", {**TRAIN, "lr": float("inf")}, "lr must be a finite number"),
    "steps_string": ("train_config", {**TRAIN, "steps": "10"}, "steps must be an integer"),
    "val_frac_nan": ("train_config", {**TRAIN, "val_frac": float("nan")}, "val_frac must be a finite"),
    "clip_negative": ("train_config", {**TRAIN, "clip": -1}, "clip must be a finite"),
    "unknown_field_object": ("train_config", {**TRAIN, "future": {"a": 1}}, None),  # ignored (newer charrnn)
    "history_string": ("meta", {**META, "history": "long"}, "meta.history must be a list"),
    "history_rows": ("meta", {**META, "history": [[0, 1.0]]}, r"meta.history\[0\] must be an object"),
    "history_loss_text": ("meta", {**META, "history": [{"loss": "low"}]}, r"meta.history\[0\].loss must be"),
    "step_negative": ("meta", {**META, "step": -1}, "meta.step must be"),
    "step_string": ("meta", {**META, "step": "7"}, "meta.step must be"),
    "cursor_past_data": ("meta", {**META, "cursor": 10**6, "corpus_chars": 5000}, "meta.cursor 1000000 is past"),
    "rng_garbage": ("meta", {**META, "rng": {"bit_generator": "MT19937"}}, "meta.rng is not"),
    "best_val_loss_text": ("meta", {**META, "best_val_loss": "1.2"}, "meta.best_val_loss must be"),
    "window_text": ("meta", {**META, "window": ["x"]}, "meta.window must be"),
}


@pytest.mark.parametrize("case", list(HOSTILE_FIELDS))
def test_every_config_and_meta_field_is_checked(tmp_path, case):
    key, obj, pattern = HOSTILE_FIELDS[case]
    data = raw(tmp_path)
    data[key] = np.array(json.dumps(obj))
    write_raw(tmp_path / "bad.npz", data)
    if pattern is None:
        load(tmp_path / "bad.npz")
        return
    message = load_error(tmp_path / "bad.npz")
    assert re.search(pattern, message), message


def test_a_surrogate_in_the_vocabulary_is_refused(tmp_path):
    data = raw(tmp_path)
    data["vocab"] = np.array([0, 10, 65, 0xD800, 0x1F600], np.uint32)
    write_raw(tmp_path / "bad.npz", data)
    assert "surrogate" in load_error(tmp_path / "bad.npz")


@pytest.mark.parametrize("key, value, pattern", [
    ("resume/params/nope", np.zeros(3), "names no parameter"),
    ("resume/state/9/0", np.zeros((32, 4)), "names no parameter or layer"),
    ("resume/optim/m/decoder.bias", np.zeros(4), r"has shape \(4,\), expected \(5,\)"),
    ("resume/optim/t", np.array(1.5), "expected an integer"),
    ("resume/cursor", np.zeros(2**18), "more than its name allows"),
])
def test_resume_members_are_sized_by_the_configs(tmp_path, key, value, pattern):
    data = raw(tmp_path)
    data[key] = value
    write_raw(tmp_path / "bad.npz", data)
    assert re.search(pattern, load_error(tmp_path / "bad.npz"))


def test_error_details_are_never_cut_mid_word():
    from charrnn.checkpoint.reader import short

    text = " ".join(f"word{i}" for i in range(100))
    cut = short(text, 120)
    assert len(cut) <= 124 and cut.endswith(" ...")
    assert cut[: -len(" ...")].split()[-1] in text.split()


# ------------------------------------------------------------------------------------------------ saving


def test_stale_temp_files_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = {
        f".model.npz.{dead_pid}.abc123.tmp": False,  # a save killed by kill -9: removed
        f".model.npz.{os.getppid()}.def456.tmp": True,  # a save in flight in a live process: kept
        ".model.npz.oldstyle.tmp": True,  # no pid and recent: kept
        ".other.npz.1.x.tmp": True,  # another checkpoint's: not ours to touch
    }
    for name in names:
        (tmp_path / name).write_bytes(b"half")
    old = tmp_path / ".model.npz.ancient.tmp"  # no pid and hours old: removed
    old.write_bytes(b"half")
    os.utime(old, (0, 0))
    save(tmp_path / "model.npz", make_ckpt())
    left = set(os.listdir(tmp_path))
    assert left == {"model.npz", *(n for n, kept in names.items() if kept)}


def test_a_failed_save_removes_the_directories_it_created(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path / "a" / "b" / "model.npz", make_ckpt())
    assert os.listdir(tmp_path) == []


def test_a_symlink_stays_a_link_and_its_target_is_written(tmp_path):
    (tmp_path / "real").mkdir()
    save(tmp_path / "real" / "model.npz", make_ckpt(seed=1))
    link = tmp_path / "link.npz"
    link.symlink_to(tmp_path / "real" / "model.npz")
    save(link, make_ckpt(seed=2))
    assert link.is_symlink()
    assert_same(load(tmp_path / "real" / "model.npz"), make_ckpt(seed=2))
    assert sorted(os.listdir(tmp_path / "real")) == ["model.npz"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_writable_fails_fast_on_a_read_only_directory(tmp_path):
    from charrnn.checkpoint import check_writable

    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    try:
        with pytest.raises(CheckpointError, match="cannot write"):
            check_writable(tmp_path / "ro" / "model.npz")
        with pytest.raises(CheckpointError, match="no permission"):
            check_writable(tmp_path / "ro" / "new" / "model.npz")
    finally:
        os.chmod(tmp_path / "ro", 0o755)
    check_writable(tmp_path / "new" / "dir" / "model.npz")
    assert os.listdir(tmp_path) == ["ro"]


def test_check_writable_refuses_a_file_where_a_directory_must_be(tmp_path):
    from charrnn.checkpoint import check_writable

    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is not a directory"):
        check_writable(tmp_path / "file" / "model.npz")


def test_a_meta_too_long_to_load_is_never_written(tmp_path):
    from charrnn.checkpoint.files import TEXT_CHARS

    ckpt = make_ckpt()
    ckpt.meta = {"note": "x" * TEXT_CHARS["meta"]}
    with pytest.raises(CheckpointError, match="refusing to write .*meta is 8,388,6.. characters"):
        save(tmp_path / "m.npz", ckpt)
    assert os.listdir(tmp_path) == []
