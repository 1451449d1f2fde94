#!/usr/bin/env bash
# The test command: installs what hpo needs (Debian 12 packages), builds, runs every test with ctest.
# Unit tests and end-to-end tests that start real hpo-server / hpo-worker processes on 127.0.0.1, after a
# short libFuzzer run (20 s per target, ASan + UBSan) of spec parsing, EnqueueTrial's JSON, every RPC's
# handling in process and the worker's data readers (tests/fuzz/run.sh; HPO_FUZZ_SECONDS=0 skips it, a
# long run is `tests/fuzz/run.sh 3600`), and the sanitizer suites (tests/sanitize.sh: the unit tests and
# the SIGKILL test under ASan + UBSan, the coordinator's concurrency tests under TSan; HPO_SANITIZERS=0
# skips them). Any finding fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
bash deploy/build.sh
if [ "${HPO_FUZZ_SECONDS:-20}" != 0 ]; then
  bash tests/fuzz/run.sh "${HPO_FUZZ_SECONDS:-20}"
fi
bash tests/sanitize.sh  # exits at once when HPO_SANITIZERS=0
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j2 "$@"
