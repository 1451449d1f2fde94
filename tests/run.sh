#!/usr/bin/env bash
# The test command: installs what hpo needs (Debian 12 packages), builds, runs every test with ctest.
# Unit tests and end-to-end tests that start real hpo-server / hpo-worker processes on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
bash deploy/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j2 "$@"
