#!/usr/bin/env bash
# The demo: installs, builds, starts hpo-server and two hpo-workers on this machine, runs
# examples/fmnist-quick.json on Fashion-MNIST, shows progress live, prints the trials and the best one.
# Everything it started is stopped when it ends or is interrupted.
#   deploy/demo.sh [SPEC [PARAMS]]   (default examples/fmnist-quick.json; PARAMS: a JSON object of
#                                     parameters queued as the first trial, e.g. a baseline to beat)
# HPO_DATA_ROOT (default /usr/share/datasets) is the workers' --data_root; the dashboard is served on
# 127.0.0.1:${HPO_HTTP_PORT:-8080} (see README "Dashboard and metrics").
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC=${1:-examples/fmnist-quick.json}
BASELINE=${2:-}

bash deploy/install-deps.sh
bash deploy/build.sh
B=${BUILD_DIR:-build}

RUN=$(mktemp -d /tmp/hpo-demo.XXXXXX)
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "demo: stopped hpo-server and workers; logs and database in $RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CORES=$(nproc)
THREADS=$(( CORES / 2 > 0 ? CORES / 2 : 1 ))
"$B"/server/hpo-server --listen=127.0.0.1:0 --port_file="$RUN/port" --db="$RUN/hpo.db" \
  --http="127.0.0.1:${HPO_HTTP_PORT:-8080}" --http_port_file="$RUN/http_port" >"$RUN/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$RUN/port" ] && break; sleep 0.1; done
[ -s "$RUN/port" ] || { echo "demo: hpo-server did not start; see $RUN/server.log" >&2; cat "$RUN/server.log" >&2; exit 1; }
ADDR="127.0.0.1:$(cat "$RUN/port")"
echo "demo: hpo-server on $ADDR (database $RUN/hpo.db)"
CTL="$B/client/hpoctl --coordinator=$ADDR"
START=$(date +%s)
STUDY=$($CTL create "$SPEC" | tail -n 1)
echo "demo: created study $STUDY from $SPEC"
for _ in $(seq 50); do [ -s "$RUN/http_port" ] && break; sleep 0.1; done
[ -s "$RUN/http_port" ] && echo "demo: dashboard at http://127.0.0.1:$(cat "$RUN/http_port")/studies/$STUDY (metrics: /metrics)"
if [ -n "$BASELINE" ]; then
  $CTL enqueue "$STUDY" "$BASELINE"
fi
for i in 1 2; do
  "$B"/worker/hpo-worker --coordinator="$ADDR" --threads="$THREADS" --worker_id="worker-$i" \
    --data_root="${HPO_DATA_ROOT:-/usr/share/datasets}" --cache_dir="$RUN/cache" >"$RUN/worker-$i.log" 2>&1 &
  PIDS+=($!)
done
echo "demo: 2 workers with $THREADS LibTorch thread(s) each; watching (Ctrl-C stops everything)"
$CTL watch "$STUDY"
END=$(date +%s)
echo
$CTL trials "$STUDY"
echo
$CTL best "$STUDY"
echo
$CTL diagnose "$STUDY"
echo "demo: wall time $(( END - START )) s"
if [ -t 0 ] && [ -s "$RUN/http_port" ]; then
  read -r -p "demo: the dashboard stays up until you press Enter " _
fi
