#!/usr/bin/env bash
# deploy/slurm/*.sbatch on a real Slurm: a single-node cluster (munged, slurmctld, slurmd on this machine)
# configured in a temporary folder, started, used and stopped by this script. As root.
#
#   tests/slurm/slurm_test.sh            (HPO_BIN_DIR: folder or build tree with the binaries; default build/)
#
# 1. The coordinator runs as its own job (hpo-server.sbatch, --lease_timeout=5s) and writes its address.
# 2. A cnn study (4 trials, 1 epoch, 1000/500 Fashion-MNIST images), then `sbatch --array=0-1
#    hpo-workers.sbatch @ADDRESS_FILE` with 2 trials per task: the study finishes, its trials were run by
#    both array tasks (worker ids slurm-JOB_0 and slurm-JOB_1), and both tasks end by themselves.
# 3. A second study (longer trials) and an array of 3 tasks (2 at a time): `scancel` one running task
#    (SIGTERM: the worker hands its trial back) and `scancel --signal=USR1 --full` another (every process
#    of the task dies at once, like a lost node: its trial is lost until the 5 s lease expires); the third
#    task finishes the study, with both lost trials retried.
# Needs Debian's slurm-wlm and munge (installed with apt-get when missing) and
# /usr/share/datasets/fashion-mnist. Exit 77 (skipped) when not root.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN_DIR="$(cd "${HPO_BIN_DIR:-$ROOT/build}" && pwd)"
DATA_ROOT="${HPO_DATA_ROOT:-/usr/share/datasets}"
CTL="$BIN_DIR/client/hpoctl"; [[ -x "$CTL" ]] || CTL="$BIN_DIR/hpoctl"

if [[ "$(id -u)" != 0 ]]; then echo "slurm_test: needs root (runs munged, slurmctld, slurmd); skipped"; exit 77; fi
[[ -x "$CTL" ]] || { echo "slurm_test: no hpoctl under $BIN_DIR" >&2; exit 1; }
[[ -d "$DATA_ROOT/fashion-mnist" ]] || { echo "slurm_test: no $DATA_ROOT/fashion-mnist" >&2; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm_test: installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }
fi

T="$(mktemp -d /tmp/hpo-slurm-test.XXXXXX)"
chmod 755 "$T"
mkdir -p "$T"/{etc,munge,state,spool,log,run,jobs,hpo}
chmod 700 "$T/munge"
PIDS=()
JOBS=()
cleanup() {
  local rc=$?
  set +e
  if [[ ${#JOBS[@]} -gt 0 ]]; then
    scancel "${JOBS[@]}" 2>/dev/null
    for _ in $(seq 100); do [[ -z "$(squeue -h 2>/dev/null)" ]] && break; sleep 0.2; done  # KillWait=10
  fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  if [[ $rc -ne 0 ]]; then
    echo "---- slurm_test failed (status $rc); logs from $T:"
    for f in "$T"/log/* "$T"/jobs/*; do [[ -f "$f" ]] && { echo "== $f"; tail -n 40 "$f"; }; done
  fi
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HOST="$(hostname -s)"
CTLD_PORT="$(free_port)"
SLURMD_PORT="$(free_port)"

# ---- munge, on a socket and key of its own
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$T/munge/munge.key"
munged --foreground --force --key-file="$T/munge/munge.key" --socket="$T/munge/munge.sock" \
       --pid-file="$T/munge/munged.pid" --log-file="$T/log/munged.log" --seed-file="$T/munge/munged.seed" \
       >"$T/log/munged.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ -S "$T/munge/munge.sock" ]] && break; sleep 0.1; done
munge --socket="$T/munge/munge.sock" -n | unmunge --socket="$T/munge/munge.sock" >/dev/null

# ---- a single-node cluster: this machine, 2 CPUs, each CPU shared by up to 2 jobs (so the coordinator's
# job and two 1-CPU worker tasks run at once on a 2-core machine)
cat >"$T/etc/slurm.conf" <<EOF
ClusterName=hpotest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/munge.sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$T/etc/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
KillWait=10
MinJobAge=600
NodeName=$HOST CPUs=2 State=UNKNOWN
PartitionName=hpo Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:2
EOF
: >"$T/etc/plugstack.conf"
export SLURM_CONF="$T/etc/slurm.conf"
slurmctld -D -i -f "$SLURM_CONF" >"$T/log/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >"$T/log/slurmd.out" 2>&1 &
PIDS+=($!)
state=""
for _ in $(seq 300); do
  state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
  [[ "$state" == idle ]] && break
  sleep 0.2
done
[[ "$state" == idle ]] || { echo "slurm_test: node $HOST is '$state', not idle, after 60 s" >&2; exit 1; }
echo "slurm_test: cluster up: $(sinfo -h -o '%P %D %c %T')"

export HPO_BIN_DIR="$BIN_DIR" HPO_DATA_ROOT="$DATA_ROOT" HPO_CACHE_DIR="$T/cache"
unset HPO_STUDY HPO_MAX_TRIALS HPO_TOKEN

# waits until `cond` (a shell command) succeeds, at most $1 seconds
wait_for() { local t=$1; shift; for _ in $(seq $((t * 5))); do "$@" && return 0; sleep 0.2; done; return 1; }
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n1; }
study_json() { "$CTL" --coordinator="$ADDR" --json show "$1"; }
study_state() { study_json "$1" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
trials_json() { "$CTL" --coordinator="$ADDR" --json trials "$1"; }

# ---- 1. the coordinator as a job
SERVER_JOB="$(sbatch --parsable --chdir="$T" --output="$T/jobs/server-%j.out" \
  --export=ALL,HPO_STATE_DIR="$T/hpo" "$ROOT/deploy/slurm/hpo-server.sbatch" "$T/hpo/server.addr" \
  --lease_timeout=5s --heartbeat_interval=1s)"
JOBS+=("$SERVER_JOB")
wait_for 60 test -s "$T/hpo/server.addr" || { echo "slurm_test: no address file from job $SERVER_JOB" >&2; exit 1; }
ADDR="$(cat "$T/hpo/server.addr")"
echo "slurm_test: coordinator job $SERVER_JOB at $ADDR"

spec() {  # spec NAME SEED TRAIN_EXAMPLES EPOCHS
  cat <<EOF
{"name": "$1", "task": {"type": "cnn", "dataset": "fashion-mnist", "train_examples": $3, "val_examples": 500,
  "test_examples": 500, "max_epochs": $4},
 "parameters": [{"name": "learning_rate", "type": "float", "low": 0.001, "high": 0.01, "log": true},
                {"name": "filters", "type": "int", "low": 8, "high": 16, "step": 8}],
 "sampler": {"type": "random", "seed": $2}, "max_trials": 4}
EOF
}

# ---- 2. a study, then the array
spec slurm-array 1 1000 1 >"$T/spec1.json"
S1="$("$CTL" --coordinator="$ADDR" create "$T/spec1.json" | tail -n1)"
A1="$(HPO_STUDY="$S1" HPO_MAX_TRIALS=2 sbatch --parsable --array=0-1 --cpus-per-task=1 --chdir="$T" \
  --output="$T/jobs/workers-%A_%a.out" "$ROOT/deploy/slurm/hpo-workers.sbatch" "@$T/hpo/server.addr")"
JOBS+=("$A1")
echo "slurm_test: study $S1, worker array $A1"
timeout 150 "$CTL" --coordinator="$ADDR" watch --interval=1s "$S1" >"$T/log/watch1.log" 2>&1 ||
  { echo "slurm_test: study $S1 did not finish in 150 s" >&2; exit 1; }
trials_json "$S1" >"$T/trials1.json"
/usr/bin/python3 - "$T/trials1.json" "$A1" <<'EOF'
import collections, json, sys
trials, job = json.load(open(sys.argv[1])), sys.argv[2]
assert len(trials) == 4, trials
assert all(t["state"] == "COMPLETED" for t in trials), [(t["trial"], t["state"], t["reason"]) for t in trials]
by_worker = collections.Counter(t["worker"] for t in trials)
assert set(by_worker) == {f"slurm-{job}_0", f"slurm-{job}_1"}, by_worker
assert all(n == 2 for n in by_worker.values()), by_worker
for t in trials:
    assert 0 < t["value"] <= 1 and t["final_metrics"].get("test_accuracy", 0) > 0, t
print("slurm_test: phase 1 ok: 4 trials completed by", dict(by_worker))
EOF
[[ "$(study_state "$S1")" == COMPLETED ]]
# Both tasks end by themselves once the study is finished.
for t in 0 1; do
  wait_for 60 bash -c "[[ \"\$(scontrol show job ${A1}_$t 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n1)\" == COMPLETED ]]" ||
    { echo "slurm_test: task ${A1}_$t is $(job_state "${A1}_$t"), not COMPLETED" >&2; exit 1; }
done
echo "slurm_test: phase 1 ok: tasks ${A1}_0 and ${A1}_1 COMPLETED"

# ---- 3. scancel running tasks: the study still finishes
# Longer trials here (about 2 s an epoch), so that each scancel lands while its task runs a trial.
spec slurm-scancel 2 20000 3 >"$T/spec2.json"
S2="$("$CTL" --coordinator="$ADDR" create "$T/spec2.json" | tail -n1)"
A2="$(HPO_STUDY="$S2" sbatch --parsable --array=0-2%2 --cpus-per-task=1 --chdir="$T" \
  --output="$T/jobs/workers-%A_%a.out" "$ROOT/deploy/slurm/hpo-workers.sbatch" "@$T/hpo/server.addr")"
JOBS+=("$A2")
echo "slurm_test: study $S2, worker array $A2 (3 tasks, 2 at a time)"
running_in() {  # running_in TASK: a trial of S2 is RUNNING in that task
  trials_json "$S2" | /usr/bin/python3 -c '
import json, sys
w = sys.argv[1]
sys.exit(0 if any(t["state"] == "RUNNING" and t["worker"] == w for t in json.load(sys.stdin)) else 1)' \
    "slurm-${A2}_$1"
}
wait_for 90 running_in 0 || { echo "slurm_test: task ${A2}_0 never ran a trial" >&2; exit 1; }
scancel "${A2}_0"
echo "slurm_test: scancel ${A2}_0 (SIGTERM) while it ran a trial"
wait_for 90 running_in 1 || { echo "slurm_test: task ${A2}_1 never ran a trial" >&2; exit 1; }
# A task that dies without warning, like a lost node: USR1 to every process of the task (hpo-worker and
# the batch script have no handler for it). (--signal=KILL would not do: Slurm turns it into a cancel.)
scancel --signal=USR1 --full "${A2}_1"
echo "slurm_test: scancel --signal=USR1 --full ${A2}_1 while it ran a trial"
timeout 170 "$CTL" --coordinator="$ADDR" watch --interval=1s "$S2" >"$T/log/watch2.log" 2>&1 ||
  { echo "slurm_test: study $S2 did not finish in 170 s" >&2; exit 1; }
trials_json "$S2" >"$T/trials2.json"
/usr/bin/python3 - "$T/trials2.json" "$A2" <<'EOF'
import json, sys
trials, job = json.load(open(sys.argv[1])), sys.argv[2]
w = [f"slurm-{job}_{i}" for i in range(3)]
failed = {t["worker"]: t for t in trials if t["state"] == "FAILED"}
assert set(failed) == {w[0], w[1]}, [(t["trial"], t["state"], t["worker"], t["reason"]) for t in trials]
assert "shut down" in failed[w[0]]["reason"], failed[w[0]]
assert "lease" in failed[w[1]]["reason"] or "heartbeat" in failed[w[1]]["reason"], failed[w[1]]
done = [t for t in trials if t["state"] == "COMPLETED"]
assert len(done) == 4, [(t["trial"], t["state"], t["worker"], t["reason"]) for t in trials]
retried = {t["retry_of"] for t in done if t["retry_of"] is not None and t["retry_of"] >= 0}
assert retried == {failed[w[0]]["trial"], failed[w[1]]["trial"]}, (retried, failed)
assert w[2] in {t["worker"] for t in done}, [t["worker"] for t in done]
print("slurm_test: phase 2 ok:", f"{w[0]} handed back trial {failed[w[0]]['trial']} ({failed[w[0]]['reason']});",
      f"{w[1]} lost trial {failed[w[1]]['trial']} ({failed[w[1]]['reason']});",
      "both retried; 4 completed by", sorted({t["worker"] for t in done}))
EOF
[[ "$(study_state "$S2")" == COMPLETED ]]
[[ "$(job_state "${A2}_0")" == CANCELLED ]] || { echo "slurm_test: ${A2}_0 is $(job_state "${A2}_0")" >&2; exit 1; }
echo "slurm_test: ${A2}_0 $(job_state "${A2}_0"), ${A2}_1 $(job_state "${A2}_1"), ${A2}_2 $(job_state "${A2}_2")"

# ---- stop the coordinator's job: it removes its address file
scancel "$SERVER_JOB"
wait_for 30 bash -c "[[ ! -e '$T/hpo/server.addr' ]]" || { echo "slurm_test: address file left behind" >&2; exit 1; }
echo "slurm_test: PASS"
