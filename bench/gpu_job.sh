#!/usr/bin/env bash
# The whole-job GPU benchmark (bench/gpu_job.py) in one call on the lent GPU machine.
#
# There, from the repository root, with the wheel folder .whl carried (carry [".whl"]):
#     bash bench/gpu_job.sh [bench/gpu_job.py options]
# It installs the carried wheels into $SITE (default /tmp/site) without their dependencies
# (the machine's image holds torch, numpy, pandas, pyarrow, scikit-learn, matplotlib,
# huggingface-hub, ...), puts them and the tree on PYTHONPATH and runs the benchmark into $OUT
# (set there), the whole output teed to $OUT/gpu_job.log.
#
# The wheels (about 38 MB; what the job imports that the image lacks, at constraints.txt's
# versions), made here once, with /.whl/ in .git/info/exclude:
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       --platform manylinux1_x86_64 -d .whl Mako==1.4.3 alembic==1.20.1 \
#       annotated-types==0.8.0 cleanlab==2.9.0 coloredlogs==14.0 dagster==1.13.27 \
#       dagster-pipes==1.13.27 dagster-shared==1.13.27 datasets==5.2.0 dill==0.4.1 \
#       docstring_parser==0.18.0 duckdb==2.0.0 greenlet==3.5.6 humanfriendly==10.0 \
#       mlxtend==0.25.0 multiprocess==0.70.19 pathlib_abc==0.5.2 pydantic==2.14.4 \
#       pydantic_core==2.50.5 python-dotenv==1.2.4 pytz==2026.6 SQLAlchemy==2.0.58 \
#       structlog==26.1.0 termcolor==3.3.0 toposort==1.10 typing-inspection==0.4.5 \
#       typing_extensions==4.16.0 tzdata==2026.6 universal_pathlib==0.3.10 watchdog==6.0.0
# A dry run here under another interpreter, with its own site folder:
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
