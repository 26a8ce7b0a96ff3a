#!/usr/bin/env bash
# Issue 15's GPU figures in one run, within 8 minutes on one H200 with 16 cores:
#   synthetic training images/s at batch 256 for float32, mixed_float16 and mixed_bfloat16,
#   each without and with XLA, with MFU against the card's peak; real-data images/s on generated
#   256x256 records; the input pipeline alone on all cores. Details: benchmarks/gpu.py.
#
#   bash benchmarks/gpu.sh              # on the GPU machine (from the repository root or not)
#   bash benchmarks/gpu.sh --dry-run    # tiny sizes, any machine, CPU included: checks it runs
#   bash benchmarks/gpu.sh --steps=300  # any option of benchmarks/gpu.py
#
# Uses the python on PATH (or $PYTHON) with the package importable; the last line is the ratio.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
if [[ " $* " != *" --dry-run "* ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec "$python" "$here/gpu.py" "$@"
