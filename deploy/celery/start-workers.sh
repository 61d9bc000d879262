#!/usr/bin/env bash
# Start N Celery workers of one process each on this machine, for ROBUST_DATA_EXECUTOR=celery.
#
#   deploy/celery/start-workers.sh N [ENV_FILE]      (ENV_FILE: default deploy/celery/worker.env)
#
# Worker i runs the command tests/pipelines/test_distributed.py runs, in the background of this script:
#   dagster-celery worker start -A dagster_celery.app -y deploy/celery/celery.yaml \
#     -n wI -- --concurrency=1
# with ENV_FILE's variables and, first on PATH, the bin folder of the Python environment that
# has dagster-celery (it starts that environment's `celery`; Celery names the worker
# wI@HOSTNAME). One step at a time per worker: start as many workers on a machine as it has
# GPUs; PIN_GPUS=1 gives worker i only GPU i (CUDA_VISIBLE_DEVICES=i).
# DRY_RUN=1 prints the commands instead of running them. When one worker exits, the others are
# stopped and the script exits non-zero, so that a supervisor (systemd, a container) restarts it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
count="${1:?usage: start-workers.sh N [ENV_FILE]}"
env_file="${2:-$here/worker.env}"
if [[ ! "$count" =~ ^[1-9][0-9]*$ ]]; then
  echo "expected N to be a whole number >= 1; found '$count'" >&2
  exit 2
fi
if [[ ! -f "$env_file" ]]; then
  echo "expected an environment file at $env_file; found none; copy $here/worker.env.example" >&2
  exit 2
fi
set -a
# shellcheck source=/dev/null
. "$env_file"
set +a

celery_cli="$(command -v dagster-celery || true)"
if [[ -z "$celery_cli" ]]; then
  echo "expected dagster-celery on PATH; found none; pip install -c constraints.txt '.[cluster]'" >&2
  exit 2
fi
PATH="$(dirname "$celery_cli"):$PATH"
export PATH

: "${DAGSTER_HOME:?expected DAGSTER_HOME in $env_file}"
if [[ ! -f "$DAGSTER_HOME/dagster.yaml" && -z "${DRY_RUN:-}" ]]; then
  mkdir -p "$DAGSTER_HOME"
  cp "$here/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
  echo "wrote $DAGSTER_HOME/dagster.yaml (Postgres instance) from $here/dagster.yaml" >&2
fi

pids=()
for ((i = 0; i < count; i++)); do
  worker=(dagster-celery worker start -A dagster_celery.app -y "$here/celery.yaml"
    -n "w$i" -- --concurrency=1)
  if [[ -n "${DRY_RUN:-}" ]]; then
    printf '%q ' "${worker[@]}"
    printf '\n'
    continue
  fi
  # Each worker in its own process group (setsid): dagster-celery runs `celery` as a child,
  # and stopping the group stops both.
  if [[ -n "${PIN_GPUS:-}" ]]; then
    CUDA_VISIBLE_DEVICES="$i" setsid "${worker[@]}" &
  else
    setsid "${worker[@]}" &
  fi
  pids+=("$!")
done
[[ -n "${DRY_RUN:-}" ]] && exit 0

stop() {
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
}
# Ctrl-C and SIGTERM stop every worker (Celery's warm shutdown: a running step finishes first);
# so does the exit of any one of them.
trap stop INT TERM
status=0
wait -n "${pids[@]}" || status=$?
stop
wait || true
exit "$((status == 0 ? 1 : status))"
