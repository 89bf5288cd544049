"""Corpora of any size: memory and time of charrnn on a generated 1 GB corpus and a 200 MB mixed-script one.

    python tests/benchmarks/big_corpus.py                        # everything (a quiet machine, ~5 GB of disk)
    python tests/benchmarks/big_corpus.py --size-mb 150 --mixed-mb 20 --only memory     # a quick memory check
    python tests/benchmarks/big_corpus.py --dir /data/tmp --keep                        # keep the corpora
    python tests/benchmarks/big_corpus.py --only layouts --layout folder gz --repeats 3  # issue 21 (~6 GB of disk)

Issue 21 (`--only layouts`): big.txt is also written as a folder of --files files (10 subfolders, cut at line
ends, the same text in sorted path order) and as a gzip file (one gzip member of tinyshakespeare, repeated: the
same decompression work as one long member, written in a moment). Measured:

    folder/file speed   preparing the folder against preparing big.txt, each in a fresh process with an empty
                        cache, interleaved A B A B ... (--repeats each; the median of the per-pair ratios and of
                        each side); on a loaded machine only the interleaving keeps the ratio fair
    gz                  preparing the .gz in a fresh process (empty cache): peak RssAnon and ru_maxrss, seconds,
                        MB/s of text and of compressed bytes
    train folder        `charrnn train FOLDER --steps 50` on a cold cache: peak RssAnon and ru_maxrss

It writes its corpora into a temporary directory (never the repository): big.txt, tinyshakespeare repeated to
--size-mb, and mixed.txt, --mixed-mb of Latin, Cyrillic, CJK, emoji and other 4-byte code points. Every command
runs in a subprocess with its own CHARRNN_CACHE_DIR under that directory. Measured (issue 11's targets):

    prepare MB/s        first preparation (hash + vocabulary + ids into the cache), corpus.prepare in a fresh process
    train peak RSS      `charrnn train big.txt --steps 50` (LSTM 2x256, defaults) on a cold cache, so preparation counts
    first step          `charrnn train big.txt --steps 1 --val-frac 0` again: a second run on the unchanged corpus,
                        start to exit (start-up, cache check, first step, the save)
    validation          one periodic validation with the default bound (Run.validate's call: evaluate over the
                        held-out split with max_chars = TrainConfig.val_chars), LSTM 2x256
    eval peak RSS       `charrnn eval big.txt` with the bundled model, stopped after --eval-seconds (its memory is
                        flat once scoring runs: scoring a gigabyte at ~50,000 chars/s would take hours)

Peak RSS is reported twice: the kernel's maximum resident set (ru_maxrss, what `/usr/bin/time -v` prints; it
counts the memory-mapped corpus pages the process touched, which the kernel can drop at any time) and the peak of
RssAnon (the process's own memory) polled every 20 ms. This file is a script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHAKESPEARE = ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"
MB = 1 << 20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=None, help="where to write the corpora (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the corpora and caches")
    p.add_argument("--size-mb", type=int, default=1024, help="size of big.txt (default 1024)")
    p.add_argument("--mixed-mb", type=int, default=200, help="size of mixed.txt (default 200)")
    p.add_argument("--only", choices=("all", "memory", "layouts"), default="all",
                   help="memory: only the RSS figures (fine on a busy machine); layouts: only issue 21's figures")
    p.add_argument("--layout", nargs="+", choices=("folder", "gz"), default=["folder", "gz"],
                   help="with --only layouts: which layouts to measure")
    p.add_argument("--files", type=int, default=1000, help="files in the folder layout (default 1000)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved preparations of each side (default 3)")
    p.add_argument("--train-threads", type=int, default=None,
                   help="with --only layouts: pass --threads N to train (on a loaded machine, 1 spares it the "
                        "BLAS threads' contention; say so with the figure)")
    p.add_argument("--eval-seconds", type=float, default=60.0, help="how long charrnn eval runs (default 60)")
    p.add_argument("--shakespeare", type=Path, default=SHAKESPEARE)
    return p.parse_args(argv)


def write_repeated(path: Path, source: bytes, size: int) -> None:
    """`source` repeated up to `size` bytes, cut at a line end (never inside a character)."""
    with open(path, "wb") as f:
        left = size
        while left > 0:
            part = source if len(source) <= left else source[:source.rfind(b"\n", 0, left) + 1]
            if not part:
                break
            f.write(part)
            left -= len(part)


def mixed_block(rng: np.random.Generator, shakespeare: str, size: int = 4 * MB) -> bytes:
    """~size bytes of lines in Latin (Shakespeare), Cyrillic, CJK, emoji and other 4-byte code points."""
    cyrillic = [chr(c) for c in range(0x0410, 0x0450)]
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    emoji = [chr(c) for c in range(0x1F600, 0x1F650)] + [chr(c) for c in range(0x1F300, 0x1F340)]
    astral = [chr(c) for c in range(0x10330, 0x1034B)] + [chr(c) for c in range(0x1D400, 0x1D440)]
    lines, total, at = [], 0, 0
    while total < size:
        kind = rng.integers(4)
        if kind == 0:
            line = shakespeare[at:at + 200].replace("\n", " ")
            at = (at + 200) % max(len(shakespeare) - 200, 1)
        else:
            alphabet = [cyrillic, cjk, emoji + astral][kind - 1]
            words = ["".join(rng.choice(alphabet, rng.integers(1, 8))) for _ in range(rng.integers(5, 20))]
            line = " ".join(words)
        raw = (line + "\n").encode()
        lines.append(raw)
        total += len(raw)
    return b"".join(lines)


def rss_run(cmd: list[str], env: dict, limit: float | None = None) -> dict:
    """Run cmd; its wall time, exit code, ru_maxrss and the peak RssAnon polled from /proc (MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_anon, stopped = 0, False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # this child's own rusage once it has ended
        if pid:
            break
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak_anon = max(peak_anon, int(line.split()[1]))
        except OSError:
            pass
        if limit and time.perf_counter() - start > limit and not stopped:
            proc.send_signal(signal.SIGTERM)  # (SIGINT is ignored in a background job)
            stopped = True
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    return {"cmd": " ".join(cmd[2:]), "seconds": round(wall, 2), "code": proc.returncode,
            "max_rss_mib": round(usage.ru_maxrss / 1024, 1), "peak_rss_anon_mib": round(peak_anon / 1024, 1),
            "stopped": stopped, "stderr_tail": err.strip().splitlines()[-3:]}


PREPARE = """
import sys, time
from charrnn.corpus import prepare
t = time.perf_counter(); c = prepare(sys.argv[1]); s = time.perf_counter() - t
print(s, len(c), len(c.vocab))
"""

VALIDATE = """
import sys, time
import numpy as np
from charrnn import data, model
from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus import prepare
from charrnn.train import evaluate
c = prepare(sys.argv[1]); tc = TrainConfig()
mc = ModelConfig(vocab_size=len(c.vocab))
params = model.init_params(mc, np.random.default_rng(0), np.dtype(tc.dtype))
val = data.split(c.ids, tc.val_frac)[1]
t = time.perf_counter(); r = evaluate(params, mc, val, tc.batch, max_chars=tc.val_chars); s = time.perf_counter() - t
print(s, r.chars, len(val))
"""


def write_folder(folder: Path, text: Path, files: int) -> None:
    """`text` cut at line ends into `files` files of about equal size, in 10 subfolders, named so that sorted
    path order is the text's order."""
    size = text.stat().st_size
    with open(text, "rb") as f:
        for i in range(files):
            chunk = f.read(size // files if i < files - 1 else size)
            chunk += f.readline() if i < files - 1 else b""  # to the end of the line
            path = folder / f"{i * 10 // files:02d}" / f"{i:05d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(chunk)


def write_gz(path: Path, source: bytes, size: int) -> int:
    """About `size` bytes of text as gzip: one member of `source`, repeated (gzip readers join members). Returns
    the text's size."""
    import gzip

    member, n = gzip.compress(source, compresslevel=6), max(1, size // len(source))
    with open(path, "wb") as f:
        for _ in range(n):
            f.write(member)
    return n * len(source)


def layouts(args, work: Path, big: Path, shakespeare: bytes) -> dict:
    """Issue 21's figures: a folder against one file (interleaved), a .gz corpus, train on the folder."""
    import shutil
    import statistics

    py, results = sys.executable, {"cpu": _cpu(), "load_before": os.getloadavg()}
    cache = work / "cache-layouts"

    def cold_env() -> dict:
        shutil.rmtree(cache, ignore_errors=True)
        return dict(os.environ, CHARRNN_CACHE_DIR=str(cache))

    def prepared(path: Path) -> float:
        out = subprocess.run([py, "-c", PREPARE, str(path)], env=cold_env(), capture_output=True, text=True,
                             check=True)
        return float(out.stdout.split()[0])

    if "folder" in args.layout:
        folder = work / "folder"
        print(f"writing {folder} ({args.files} files)", file=sys.stderr)
        write_folder(folder, big, args.files)
        pairs = []
        for i in range(args.repeats):  # A B A B ...: the machine's load falls on both sides alike
            file_s, folder_s = prepared(big), prepared(folder)
            pairs.append((file_s, folder_s))
            print(f"  pair {i + 1}: file {file_s:.2f} s, folder {folder_s:.2f} s", file=sys.stderr)
        mb = big.stat().st_size / MB
        results["folder_vs_file"] = {
            "files": args.files, "pairs_seconds": pairs,
            "median_file_mb_per_s": round(mb / statistics.median(p[0] for p in pairs), 1),
            "median_folder_mb_per_s": round(mb / statistics.median(p[1] for p in pairs), 1),
            "median_speed_ratio": round(statistics.median(a / b for a, b in pairs), 3)}  # folder speed / file speed
        threads = ["--threads", str(args.train_threads)] if args.train_threads else []
        results["train_folder"] = rss_run([py, "-m", "charrnn", "train", str(folder), "--steps", "50", "-o",
                                           str(work / "folder.npz"), "--force", "--seed", "1", *threads],
                                          cold_env())
        shutil.rmtree(folder, ignore_errors=True)
    if "gz" in args.layout:
        gz = work / "big.txt.gz"
        text_size = write_gz(gz, shakespeare, args.size_mb * MB)
        run = rss_run([py, "-c", PREPARE, str(gz)], cold_env())
        secs = run.pop("seconds")
        run["process_seconds"] = secs
        results["gz"] = run | {"text_mib": round(text_size / MB, 1), "gz_mib": round(gz.stat().st_size / MB, 1),
                               "text_mb_per_s_whole_process": round(text_size / MB / secs, 1)}
        gz.unlink()
    shutil.rmtree(cache, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    return results


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    except OSError:
        pass
    return "unknown"


def main(argv=None) -> None:
    args = parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="charrnn-big-"))
    work.mkdir(parents=True, exist_ok=True)
    shakespeare = args.shakespeare.read_bytes()
    big, mixed = work / "big.txt", work / "mixed.txt"
    if args.only == "layouts":
        print(f"writing {big} ({args.size_mb} MiB)", file=sys.stderr)
        write_repeated(big, shakespeare, args.size_mb * MB)
        try:
            print(json.dumps({"size_mb": args.size_mb} | layouts(args, work, big, shakespeare), indent=1))
        finally:
            if not args.keep:
                import shutil

                shutil.rmtree(work, ignore_errors=True)
        return
    print(f"writing {big} ({args.size_mb} MiB) and {mixed} ({args.mixed_mb} MiB)", file=sys.stderr)
    write_repeated(big, shakespeare, args.size_mb * MB)
    write_repeated(mixed, mixed_block(np.random.default_rng(0), shakespeare.decode()), args.mixed_mb * MB)
    py = sys.executable
    results = {"size_mb": args.size_mb, "mixed_mb": args.mixed_mb}

    def env(name: str) -> dict:
        return dict(os.environ, CHARRNN_CACHE_DIR=str(work / f"cache-{name}"))

    def timed(script: str, path: Path, name: str) -> list[str]:
        out = subprocess.run([py, "-c", script, str(path)], env=env(name), capture_output=True, text=True,
                             check=True)
        return out.stdout.split()

    if args.only == "all":
        for label, path in (("big", big), ("mixed", mixed)):
            secs = float(timed(PREPARE, path, f"prep-{label}")[0])
            results[f"prepare_{label}_mb_per_s"] = round(path.stat().st_size / MB / secs, 1)
            results[f"prepare_{label}_seconds"] = round(secs, 2)
    for label, path in (("big", big), ("mixed", mixed)):
        ckpt = work / f"{label}.npz"
        results[f"train_{label}"] = rss_run([py, "-m", "charrnn", "train", str(path), "--steps", "50", "-o",
                                             str(ckpt), "--force", "--seed", "1"], env(f"train-{label}"))
    if args.only == "all":
        second = rss_run([py, "-m", "charrnn", "train", str(big), "--steps", "1", "--val-frac", "0", "-o",
                          str(work / "second.npz"), "--force", "--seed", "1"], env("train-big"))
        results["second_run_to_first_step"] = second
        secs, scored, val = timed(VALIDATE, big, "train-big")
        results["validation"] = {"seconds": round(float(secs), 2), "chars_scored": int(scored),
                                 "held_out": int(val)}
    for label, path in (("big", big), ("mixed", mixed)):
        results[f"eval_{label}"] = rss_run([py, "-m", "charrnn", "eval", str(path), "--unknown", "skip"],
                                           env(f"train-{label}"), limit=args.eval_seconds)
    print(json.dumps(results, indent=1))
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
