"""The longer fuzz campaign and the issue-12 attack list; not collected by pytest (run it as a script).

    python tests/benchmarks/fuzz_campaign.py load --examples 5000      hostile checkpoints through load() (random
                                                                         seed; prints what kinds of error it got)
    python tests/benchmarks/fuzz_campaign.py cli --examples 200        hostile files through the real CLI
    python tests/benchmarks/fuzz_campaign.py attacks [--big]           each attack of issue 12, as a real process:
                                                                         exit code, peak RSS, first stderr line

Every case must end with exit 0, 1 or 2, no traceback, the checkpoint byte-identical; `attacks` prints a table
(--big adds the 10 GB zip member, which takes a while to build). Peak RSS comes from /usr/bin/time -v when present.
To see an older charrnn fail them: extract it (git archive REV | tar -x -C /tmp/old), then run with
CHARRNN_CAMPAIGN_CODE=/tmp/old CHARRNN_CAMPAIGN_LIMIT=12000000000 (bytes; the processes started import that
code, capped; an address-space cap much below 8 GB makes OpenBLAS itself fail).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for hostile.py and test_fuzz.py

import numpy as np  # noqa: E402

import hostile  # noqa: E402


# ------------------------------------------------------------------------------------------------------ load


def campaign_load(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings

    import test_fuzz
    from charrnn.checkpoint import CheckpointError, load

    kinds: collections.Counter = collections.Counter()
    folder = tempfile.mkdtemp()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=test_fuzz.hostile_files())
    def one(data):
        path = os.path.join(folder, "h.npz")
        with open(path, "wb") as f:
            f.write(data)
        start = time.perf_counter()
        try:
            ckpt = load(path)
        except CheckpointError as e:
            kinds[re.sub(r"\d[\d,]*", "N", str(e).replace(path, "PATH"))[:90]] += 1
            ckpt = None
        assert time.perf_counter() - start < 5.0
        if ckpt is not None:
            kinds["(loaded)"] += 1
            test_fuzz.use(ckpt)

    one()
    for kind, n in kinds.most_common(40):
        print(f"{n:6d}  {kind}")
    print(f"{sum(kinds.values())} examples, {len(kinds)} kinds of result")


# ------------------------------------------------------------------------------------------------------- cli


def charrnn(*args, stdin=subprocess.DEVNULL, timeout=120):
    """Run `python -m charrnn ARGS` -> (exit code, stderr, stdout, peak RSS in MB or None). CHARRNN_CAMPAIGN_LIMIT
    (bytes) caps the address space (e.g. to try an older charrnn on PYTHONPATH without exhausting the machine)."""
    time_v = ["/usr/bin/time", "-v"] if os.path.exists("/usr/bin/time") else []
    cmd = [*time_v, sys.executable, "-m", "charrnn", *map(str, args)]
    limit = os.environ.get("CHARRNN_CAMPAIGN_LIMIT")
    if limit:
        cmd = ["prlimit", f"--as={limit}", *cmd]
    p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tempfile.gettempdir(),
                         start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the whole group: time and prlimit leave their child running otherwise
        p.communicate()
        return f"timeout ({timeout} s)", "", "", None
    done = subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr)
    err = done.stderr.decode(errors="replace")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    err = "\n".join(x for x in err.split("\tCommand being timed:")[0].splitlines()
                    if not x.startswith("Command exited with non-zero status"))
    return done.returncode, err, done.stdout.decode(errors="replace"), int(rss.group(1)) // 1024 if rss else None


def campaign_cli(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import test_fuzz
    from charrnn.checkpoint import save

    folder = tempfile.mkdtemp()
    corpus = os.path.join(folder, "corpus.txt")
    with open(corpus, "w") as f:
        f.write(hostile.CORPUS)
    codes: collections.Counter = collections.Counter()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=test_fuzz.hostile_files(), command=st.sampled_from(["sample", "eval", "info", "train"]))
    def one(data, command):
        path = os.path.join(folder, "h.npz")
        with open(path, "wb") as f:
            f.write(data)
        args = {"sample": ["sample", "-c", path, "-n", "5"], "info": ["info", "-c", path],
                "eval": ["eval", corpus, "-c", path],
                "train": ["train", corpus, "-o", path, "--resume", "--steps", "9"]}[command]
        code, err, _, _ = charrnn(*args)
        codes[(command, code)] += 1
        assert code in (0, 1, 2), (command, code, err)
        assert "Traceback" not in err, err
        if command != "train" or code != 0:
            with open(path, "rb") as f:
                assert f.read() == data, "the checkpoint changed"

    save(os.path.join(folder, "ok.npz"), test_fuzz.VALID)
    one()
    for (command, code), n in sorted(codes.items()):
        print(f"{command:7s} exit {code}: {n}")


# --------------------------------------------------------------------------------------------------- attacks


def _attack_files(folder: str, big: bool) -> dict[str, str]:
    """The hostile files issue 12 lists, built from a real checkpoint."""
    import io

    from charrnn.checkpoint import save

    ckpt, _ = hostile.valid_checkpoint()
    members = hostile.members_of(ckpt)

    def text_of(key):
        return json.loads(str(np.load(io.BytesIO(members[key + ".npy"]))))

    files = {}

    def make(name, changes: dict, drop=(), deflate=False):
        m = {k: v for k, v in members.items() if k not in drop}
        m.update(changes)
        path = os.path.join(folder, name + ".npz")
        with open(path, "wb") as f:
            f.write(hostile.build(m, deflate))
        files[name] = path

    pad = {"resume/pad.npy": hostile.npy(np.zeros(7000))}  # ~58 kB, like the file in the issue
    make("layers_1e9", {"model_config.npy": hostile.text({**text_of("model_config"), "layers": 10**9}), **pad})
    make("resume_bomb_2GB", {"resume/optim/t.npy": hostile.zeros(2**31, 2**24)}, deflate=True)
    make("non_npy_bomb_2GB", {"notes": hostile.zeros(2**31, 2**24)}, deflate=True)
    if big:
        make("format_version_10GB", {"format_version.npy": hostile.zeros(10 * 2**30, 2**24)}, deflate=True)
    for key in ("format_version", "model_config", "meta"):
        make(f"{key}_not_npy", {key: b"not an array"}, drop=(f"{key}.npy",))
    make("deep_model_config", {"model_config.npy": hostile.nested(10_000)})
    make("deep_meta", {"meta.npy": hostile.nested(100_000)})
    vocab = np.load(io.BytesIO(members["vocab.npy"]))
    make("vocab_surrogate", {"vocab.npy": hostile.npy(np.sort(np.r_[vocab[:-1], 0xD800]).astype(np.uint32))})
    meta, tc = text_of("meta"), text_of("train_config")
    make("history_string", {"meta.npy": hostile.text({**meta, "history": "x"})})
    make("history_rows", {"meta.npy": hostile.text({**meta, "history": [[1, 2]]})})
    for field, value in (("seq", 0), ("eval_every", 0), ("batch", 0), ("lr", "fast"), ("steps", "10"),
                         ("val_frac", 2.0), ("dtype", "float16"), ("momentum", None)):
        make(f"train_config_{field}_{value}", {"train_config.npy": hostile.text({**tc, field: value})})
    for field, value in (("cursor", 10**6), ("step", "7"), ("window", "x"), ("rng", {"state": 1}),
                         ("best_val_loss", "low"), ("epochs_done", -1)):
        make(f"meta_{field}", {"meta.npy": hostile.text({**meta, field: value})})
    save(os.path.join(folder, "good.npz"), ckpt)
    files["good"] = os.path.join(folder, "good.npz")
    return files


def campaign_attacks(big: bool, only: str) -> None:
    folder = tempfile.mkdtemp()
    files = {k: v for k, v in _attack_files(folder, big).items() if k == "good" or re.search(only, k)}
    corpus = os.path.join(folder, "corpus.txt")  # the corpus the checkpoints were trained on (for --resume)
    with open(corpus, "w") as f:
        f.write(hostile.CORPUS)
    c4k = os.path.join(folder, "c4k.txt")
    with open(c4k, "w") as f:
        f.write(hostile.CORPUS * 10)  # ~4 kB
    tiny = ["--hidden", "8", "--embed", "4", "--layers", "1", "--seq", "8", "--steps", "3", "--seed", "1"]
    rows = []

    def row(name, result, same=None):
        code, err, out, rss = result
        line = next((x for x in err.splitlines() if x.strip() and not x.startswith(("step ", "seed "))), "")
        if "Traceback" in err:
            line = "TRACEBACK " + err.strip().splitlines()[-1]
        rows.append((name, code, rss, same, line.strip()[:150]))

    def checked(name, path, args):
        before = open(path, "rb").read()
        result = charrnn(*args)
        row(name, result, open(path, "rb").read() == before)

    for name, path in files.items():
        if name == "good":
            continue
        commands = ["info"] if not name.startswith(("train_config", "meta_", "vocab")) else []
        if name in ("format_version_not_npy", "model_config_not_npy", "meta_not_npy", "vocab_surrogate"):
            commands = ["sample", "eval", "info", "train"]
        if name.startswith(("train_config", "meta_", "vocab", "history")):
            commands += ["train"]
        for command in dict.fromkeys(commands):
            args = {"sample": ["sample", "-c", path, "-n", "5"], "info": ["info", "-c", path],
                    "eval": ["eval", corpus, "-c", path],
                    "train": ["train", corpus, "-o", path, "--resume", "--steps", "9"]}[command]
            checked(f"{name} ({command})", path, args)
    if only != ".":
        return _print(rows)
    fifo = os.path.join(folder, "fifo.npz")
    os.mkfifo(fifo)
    for command in (["sample", "-c", fifo], ["eval", corpus, "-c", fifo], ["info", "-c", fifo]):
        row(f"FIFO as -c ({command[0]})", charrnn(*command, timeout=30))
    out = os.path.join(folder, "o")
    for extra in (["--batch", "100000"], ["--batch", "65536"], ["--batch", str(10**9)], ["--layers", str(10**9)],
                  ["--hidden", str(10**9)], ["--layers", "64", "--hidden", "16384"], ["--dropout", "nan"],
                  ["--val-frac", "nan"], ["--clip", "nan"], ["--weight-decay", "inf"], ["--max-time", "9" * 400]):
        row("train " + " ".join(extra)[:40], charrnn("train", c4k, "-o", out + str(len(rows)) + ".npz", *tiny,
                                                      *extra))
    good = files["good"]
    for extra in (["--beam", str(10**6)], ["--beam", "1000", "-n", "100000"], ["--temperature", "nan"],
                  ["--top-p", "nan"]):
        row("sample " + " ".join(extra), charrnn("sample", "-c", good, *extra))
    row("train -o /sys/model.npz (read-only)", charrnn("train", c4k, "-o", "/sys/model.npz", *tiny))
    for section in (_streams, _signals):
        try:
            section(rows, corpus, good, tiny, folder)
        except Exception as e:  # e.g. an older charrnn that saved nothing: say so and go on
            rows.append((section.__name__, "-", None, None, f"could not run: {type(e).__name__}: {e}"[:150]))
    _print(rows)


def _print(rows) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'attack':{width}}  exit  RSS MB  file kept  first line of stderr")
    for name, code, rss, same, line in rows:
        kept = "" if same is None else "yes" if same else "CHANGED"
        print(f"{name:{width}}  {str(code):4}  {str(rss or '-'):6}  {kept:9}  {line}")


def _shell(command: str, timeout=120):
    done = subprocess.run(["bash", "-c", command], capture_output=True, timeout=timeout, cwd=tempfile.gettempdir())
    return done.returncode, done.stderr.decode(errors="replace"), done.stdout.decode(errors="replace"), None


def _streams(rows, corpus, good, tiny, folder) -> None:
    py = f"{sys.executable} -m charrnn"
    t = " ".join(tiny)
    out = os.path.join(folder, "closed.npz")
    code, err, stdout, _ = _shell(f"{py} train {corpus} -o {out} {t} 2>&-")
    rows.append(("train ... 2>&-", code, None, None, f"checkpoint written: {os.path.exists(out)}; stdout {stdout!r}"))
    code, err, stdout, _ = _shell(f"{py} sample -c {folder}/nope.npz 2>&-")
    rows.append(("sample -c missing 2>&- (error must not reach stdout)", code, None, None, f"stdout {stdout!r}"))
    rows.append(("sample ... >&-", *_shell(f"{py} sample -c {good} -n 20 >&-")[:2], None, None))
    rows[-1] = (rows[-1][0], rows[-1][1], None, None, rows[-1][2].strip()[:150] or "(nothing on stderr)")
    code, err, _, _ = _shell(f"{py} train - -o {folder}/stdin.npz {t} <&-")
    rows.append(("train - <&-", code, None, None, err.strip().splitlines()[-1][:150] if err.strip() else ""))
    tracebacks, in_site, codes = 0, 0, collections.Counter()
    script = os.path.join(os.path.dirname(sys.executable), "charrnn")
    for i in range(32):  # Ctrl-C during start-up, through the console script
        p = subprocess.Popen([script, "info", "-c", good], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             cwd=tempfile.gettempdir())
        time.sleep(0.002 * (i % 16))
        p.send_signal(signal.SIGINT)
        err = p.communicate(timeout=60)[1].decode(errors="replace")
        tracebacks += "Traceback" in err and "init_import_site" not in err
        in_site += "init_import_site" in err  # the interpreter's own start-up, before any charrnn code runs
        codes[p.returncode] += 1
    rows.append(("Ctrl-C in the first 0-30 ms (32 tries)", dict(codes), None, None,
                 f"tracebacks from charrnn: {tracebacks}; from Python's start-up (site import): {in_site}"))


def _signals(rows, corpus, good, tiny, folder) -> None:
    from charrnn.checkpoint import load

    out = os.path.join(folder, "term.npz")
    args = [a for a in tiny if a not in ("--steps", "3")]
    p = subprocess.Popen([sys.executable, "-m", "charrnn", "train", corpus, "-o", out, *args, "--steps", "100000",
                          "--checkpoint-every", "1h", "--val-frac", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=tempfile.gettempdir())
    time.sleep(4)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    saved = load(out).meta["step"] if os.path.exists(out) else None
    line = next((x for x in err.decode().splitlines() if "SIGTERM" in x), "")
    rows.append(("SIGTERM during train", p.returncode, None, None, f"saved at step {saved}; {line.strip()}"))
    if saved is None:  # nothing was saved on SIGTERM: make the run to resume
        charrnn("train", corpus, "-o", out, *args, "--steps", "2", "--val-frac", "0")
        saved = 2
    link = os.path.join(folder, "link.npz")
    os.symlink(out, link)
    code, err, _, _ = charrnn("train", corpus, "-o", link, "--resume", "--steps", str(saved + 2))
    target = load(out).meta["step"] if os.path.exists(out) else None
    rows.append(("train -o link.npz --resume", code, None, None,
                 f"still a link: {os.path.islink(link)}; target at step {target} (was {saved})"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["load", "cli", "attacks"])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--big", action="store_true", help="attacks: add the 10 GB member")
    parser.add_argument("--only", default=".", help="attacks: only the hostile files whose name matches (a regex)")
    args = parser.parse_args()
    if os.environ.get("CHARRNN_CAMPAIGN_CODE"):  # the processes started run that charrnn (e.g. an older checkout)
        os.environ["PYTHONPATH"] = os.environ["CHARRNN_CAMPAIGN_CODE"]
    if args.what == "load":
        campaign_load(args.examples)
    elif args.what == "cli":
        campaign_cli(args.examples)
    else:
        campaign_attacks(args.big, args.only)


if __name__ == "__main__":
    main()
