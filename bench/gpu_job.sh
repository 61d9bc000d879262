#!/usr/bin/env bash
# The whole-job GPU benchmark (bench/gpu_job.py) in one call on the lent GPU machine.
#
# There, from the repository root, with the wheel folder .whl carried (carry [".whl"]):
#     bash bench/gpu_job.sh [bench/gpu_job.py options]
# It installs the carried wheels into $SITE (default /tmp/site) without their dependencies
# (the machine's image holds torch, numpy, pandas, pyarrow, scikit-learn, matplotlib, ...),
# puts them and the tree on PYTHONPATH and runs the benchmark into $OUT (set there), the whole
# output teed to $OUT/gpu_job.log. The wheels: python3 -m pip download --no-deps
# --only-binary=:all: --python-version 3.12 ... -d .whl (bench/gpu_job.py's docstring lists
# them). A dry run here under another interpreter, with its own site folder:
#     PATH=/path/to/venv/bin:$PATH SITE=/tmp/site-dry OUT=/tmp/out bash bench/gpu_job.sh --quick
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
SITE=${SITE:-/tmp/site}
OUT=${OUT:-/tmp/gpu-job-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 1
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>/dev/null
python3 bench/gpu_job.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_job.log"
