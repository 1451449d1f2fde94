#!/usr/bin/env bash
# Records real learning curves for the pruner replay benchmark: random configurations of the quick-start
# space, each trained by hpo-worker for 10 epochs on 10,000 Fashion-MNIST images (2,000 validation), no
# pruning. Every completed trial (its parameters, per-epoch values, metrics and epoch times) is exported
# to bench/curves/fmnist-SEED.json as it finishes, so an interrupted recording keeps what it measured;
# run it again with another SEED to add more configurations.
#   bench/record_curves.sh [SEED [MAX_TRIALS]]      (BUILD_DIR selects the build, default build)
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:-1}
MAX=${2:-120}
B=${BUILD_DIR:-build}
OUT=bench/curves/fmnist-$SEED.json
mkdir -p bench/curves
RUN=$(mktemp -d /tmp/hpo-record.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
"$B"/server/hpo-server --listen=127.0.0.1:0 --port_file="$RUN/port" --db="$RUN/hpo.db" --log_level=warn >"$RUN/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$RUN/port" ] && break; sleep 0.1; done
ADDR="127.0.0.1:$(cat "$RUN/port")"
CTL="$B/client/hpoctl --coordinator=$ADDR"
SPEC="$RUN/spec.json"
/usr/bin/python3 - "$SEED" "$MAX" >"$SPEC" <<'PY'
import json, sys
spec = json.load(open("bench/record-curves.json"))
spec["sampler"]["seed"] = int(sys.argv[1]); spec["max_trials"] = int(sys.argv[2])
print(json.dumps(spec))
PY
STUDY=$($CTL create "$SPEC" | tail -n 1)
for i in 1 2; do
  "$B"/worker/hpo-worker --coordinator="$ADDR" --threads=1 --worker_id="recorder-$i" >"$RUN/worker-$i.log" 2>&1 &
  PIDS+=($!)
done
echo "recording study $STUDY (seed $SEED, up to $MAX configurations) into $OUT"
while :; do
  $CTL --json trials "$STUDY" >"$RUN/trials.json"
  /usr/bin/python3 - "$RUN/trials.json" "$OUT" "$SEED" <<'PY'
import json, sys
trials = json.load(open(sys.argv[1]))
done = [{"trial": t["trial"], "params": t["params"], "values": t["values"],
         "epoch_seconds": [m["metrics"].get("epoch_seconds") for m in t["measurements"]],
         "train_accuracy": [m["metrics"].get("train_accuracy") for m in t["measurements"]],
         "test_accuracy": t["final_metrics"].get("test_accuracy")}
        for t in trials if t["state"] == "COMPLETED"]
json.dump({"spec": "bench/record-curves.json", "seed": int(sys.argv[3]), "workers": 2, "threads_per_worker": 1,
           "curves": done}, open(sys.argv[2] + ".tmp", "w"), indent=0)
import os; os.replace(sys.argv[2] + ".tmp", sys.argv[2])
print(f"{len(done)} curves recorded", file=sys.stderr)
PY
  state=$($CTL --json show "$STUDY" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$state" = "RUNNING" ] || break
  sleep 30
done
echo "done: $OUT"
