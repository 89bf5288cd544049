#!/usr/bin/env bash
# The torch engine on a CUDA GPU, in one short script (under 10 minutes):
#   1. install the torch extra (a CUDA build of torch already installed is kept; offline, what is there is used);
#   2. run the engine-equivalence tests with the torch side on cuda (float64: losses 1e-9, weights 1e-8);
#   3. train an LSTM 2x512, batch 128, on tinyshakespeare for 60 s on cuda (float32);
#   4. print chars/s and the checkpoint's validation loss, then sample from it with the NumPy core.
# Usage, from anywhere:  bash tests/benchmarks/gpu_check.sh [CORPUS] [DEVICE]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
CORPUS="${1:-$ROOT/../shared/corpora/tinyshakespeare.txt}"
DEVICE="${2:-cuda}"
OUT="$(mktemp -d)"

if [ ! -f "$CORPUS" ]; then echo "no corpus at $CORPUS: pass one as the first argument" >&2; exit 2; fi
# Offline machines keep what they have: python -m charrnn and pytest also run from this checkout uninstalled.
python -m pip install -q -e '.[torch,test]' || echo "pip install failed (offline?): using the installed torch" >&2
python - "$DEVICE" <<'PY'
import sys, torch
dev = torch.device(sys.argv[1])
assert torch.cuda.is_available(), "no CUDA device here"
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(dev)}")
PY

echo "== equivalence tests, torch side on $DEVICE"
CHARRNN_TEST_DEVICE="$DEVICE" timeout 300 python -m pytest -q tests/test_torch_engine.py \
    -k "both_engines or other_engine or byte_identically"

echo "== LSTM 2x512, B 128, 60 s on $DEVICE"
timeout 240 python -m charrnn train "$CORPUS" -o "$OUT/gpu.npz" --engine torch --device "$DEVICE" \
    --cell lstm --hidden 512 --layers 2 --batch 128 --seq 64 --max-time 60s --eval-every 500 --seed 1
python - "$OUT/gpu.npz" <<'PY'
import json, sys
import numpy as np
with np.load(sys.argv[1], allow_pickle=False) as f:
    meta = json.loads(str(f["meta"][()]))
print(f"chars/s: {meta['chars'] / meta['elapsed']:,.0f} ({meta['step']} steps, {meta['chars']:,} chars "
      f"in {meta['elapsed']:.1f} s, validation included)")
print(f"validation loss: {meta['best_val_loss']:.4f} nats/char at step {meta['best_step']}")
PY
python -m charrnn sample -c "$OUT/gpu.npz" --prefix "ROMEO:" -n 200 -t 0.5 --seed 1
echo
echo "checkpoint: $OUT/gpu.npz"
