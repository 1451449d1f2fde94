#!/usr/bin/env bash
# Fuzzes spec parsing, EnqueueTrial's parameter JSON, every RPC's request handling (in process) and
# the worker's data readers with libFuzzer, under AddressSanitizer and UBSan,
# and compiles the coordinator with clang's -Wthread-safety analysis as an error.
#   tests/fuzz/run.sh [SECONDS_PER_TARGET]   (default 20: the short run that tests/run.sh does;
#                                             a long run: tests/fuzz/run.sh 3600)
# Builds into ${FUZZ_BUILD_DIR:-build-fuzz} with clang; installs clang and libFuzzer from Debian if missing.
# Each target starts from its seed corpus in tests/fuzz/corpus/ and fails (exit 1) on any crash, leak,
# sanitizer report or timeout; the input that did it is left in the build folder (crash-*, timeout-*).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_TARGET=${1:-20}
B=${FUZZ_BUILD_DIR:-build-fuzz}
if ! command -v clang++-14 >/dev/null || [ ! -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev
fi
# -Wthread-safety: clang checks the ABSL_GUARDED_BY / EXCLUSIVE_LOCKS_REQUIRED contracts of the
# coordinator, storage and handlers (built below too); a violation fails the build.
FLAGS="-fsanitize=address,undefined -fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined -g -O1 -Wthread-safety -Werror=thread-safety-analysis"
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DHPO_BUILD_WORKER=OFF -DHPO_BUILD_TESTS=OFF -DHPO_FUZZ=ON >/dev/null
cmake --build "$B" --target spec_fuzz enqueue_fuzz rpc_fuzz image_fuzz data_file_fuzz hpo_rpc hpo_storage_sqlite -j"$(nproc)"
status=0
for t in ${HPO_FUZZ_TARGETS:-spec enqueue rpc image data_file}; do
  work="$B/fuzz-$t"
  mkdir -p "$work/corpus"
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s"
  if ! (cd "$work" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "../tests/fuzz/${t}_fuzz" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 corpus "$OLDPWD/tests/fuzz/corpus/$t" >log.txt 2>&1); then
    echo "fuzz: $t FAILED; see $work/log.txt and the crash-* input there" >&2
    tail -40 "$work/log.txt" >&2
    status=1
  else
    grep -E 'stat::number_of_executed_units|cov:' "$work/log.txt" | tail -2
  fi
done
exit $status
