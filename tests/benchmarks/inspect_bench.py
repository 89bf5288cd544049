"""`charrnn inspect`: the whole process's time on a text, and the page's size and opening time in Chromium.

    python tests/benchmarks/inspect_bench.py --text play.txt                       # the bundled model
    python tests/benchmarks/inspect_bench.py --text play.txt -c model.npz --repeats 5
    python tests/benchmarks/inspect_bench.py --text play.txt --fresh 512           # an untrained 2 x 512 LSTM

Measured, each in a fresh subprocess (`python -m charrnn`, so start-up and imports count):
    inspect             `charrnn inspect TEXT -c CK --json`: wall seconds, CPU seconds, peak RSS
    inspect --html      `charrnn inspect TEXT -c CK --html PAGE -q`: the same, and the page's size in bytes
    page open           headless Chromium (tests/cdp.py) loads file://PAGE#unit=U: seconds from the navigation
                        request to the load event (the page's script runs before it: it builds the text, the
                        picker, the tables and the plots), the median and the slowest of --repeats opens
`--fresh H` makes an untrained 2-layer LSTM of H units whose vocabulary is the text's (1 training step on it): its
weights do not matter for the sizes and times. The load average is printed before and after: this is a shared
machine. This file is a script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))


def run(args: list[str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MiB, stdout) of `python -m charrnn ARGS` in a subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "charrnn", *args], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        sys.exit(f"charrnn {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, after.ru_maxrss / 1024, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--text", required=True)
    ap.add_argument("-c", "--checkpoint", default=None, help="default: the bundled model")
    ap.add_argument("--fresh", type=int, default=0, metavar="H", help="an untrained 2 x H LSTM instead")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--unit", default="0:1:c")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="charrnn-inspect-bench-"))
    ck = a.checkpoint or str(ROOT / "charrnn" / "pretrained" / "shakespeare.npz")
    if a.fresh:
        ck = str(tmp / f"lstm2x{a.fresh}.npz")
        run(["train", a.text, "-o", ck, "--hidden", str(a.fresh), "--layers", "2", "--steps", "1", "--val-frac", "0",
             "--seed", "1", "-q"])
    print(f"load average before: {os.getloadavg()}")
    wall, cpu, rss, out = run(["inspect", a.text, "-c", ck, "--json"])
    report = json.loads(out)
    best = report["features"]["position_in_line"][0]
    print(f"inspect: {wall:.2f} s wall, {cpu:.2f} s CPU, peak RSS {rss:.0f} MiB; {report['chars']:,} characters, "
          f"{report['units']} units; best position_in_line {best['unit']} r = {best['r']:+.3f}")
    page = tmp / "page.html"
    wall, cpu, rss, _ = run(["inspect", a.text, "-c", ck, "--html", str(page), "-q"])
    print(f"inspect --html: {wall:.2f} s wall, {cpu:.2f} s CPU, peak RSS {rss:.0f} MiB; page {page.stat().st_size:,} "
          f"bytes")
    import cdp

    try:
        with cdp.Browser() as b:
            times = []
            for _ in range(a.repeats):
                times.append(b.open(f"{page.as_uri()}#unit={a.unit}"))
                assert b.js("document.body.dataset.ready") == "1", "the page's script did not finish"
            shown = b.js("document.body.dataset.unit")
    except cdp.Unavailable as e:
        sys.exit(f"page open: not measured ({e})")
    print(f"page open (load event, script included): median {statistics.median(times):.3f} s, slowest "
          f"{max(times):.3f} s over {a.repeats}; showing unit {shown}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
