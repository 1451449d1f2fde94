#!/usr/bin/env bash
# The sanitizer suites (README "Tests"), run by tests/run.sh; HPO_SANITIZERS=0 skips them.
#   tests/sanitize.sh [asan|tsan|all]   (default all)
# asan: everything that does not need LibTorch (hpo_core, storage, gRPC handlers, --http, hpo-server,
#       hpoctl and the tests of those) built with clang -fsanitize=address,undefined
#       -fno-sanitize-recover=all into ${ASAN_BUILD_DIR:-build-asan}; then every `unit` test with ctest, and
#       the SIGKILL-under-load test against the sanitized hpo-server. Tests that start hpo-server start
#       the sanitized one.
# tsan: the coordinator's concurrency tests (ctest label `concurrency`, without gRPC) built with -fsanitize=thread into
#       ${TSAN_BUILD_DIR:-build-tsan} and run with tests/sanitizers/tsan_absl_mutex.cc preloaded (Debian's
#       Abseil is not built with TSan; that library makes absl::Mutex visible to it).
# Any sanitizer report fails the test it happens in, and so this script (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${HPO_SANITIZERS:-1}" = 0 ]; then
  echo "sanitizers: skipped (HPO_SANITIZERS=0)"
  exit 0
fi
WHAT=${1:-all}
ASAN_DIR=${ASAN_BUILD_DIR:-build-asan}
TSAN_DIR=${TSAN_BUILD_DIR:-build-tsan}
JOBS=${HPO_SANITIZER_JOBS:-$(nproc)}
if ! command -v clang++-14 >/dev/null || [ ! -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.tsan-x86_64.a ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev
fi
status=0
now() { date +%s; }

configure() {  # DIR FLAGS
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DCMAKE_CXX_FLAGS="$2" -DCMAKE_C_FLAGS="$2" -DCMAKE_EXE_LINKER_FLAGS="$3" \
    -DHPO_BUILD_WORKER=OFF -DHPO_BUILD_TESTS=ON >/dev/null
}

if [ "$WHAT" = asan ] || [ "$WHAT" = all ]; then
  t0=$(now)
  configure "$ASAN_DIR" "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1" \
    "-fsanitize=address,undefined"
  cmake --build "$ASAN_DIR" -j"$JOBS"
  t1=$(now)
  echo "sanitizers: asan build $((t1 - t0)) s"
  # The unit tier, plus the SIGKILL test (real sanitized servers killed under load, short form).
  if ! (cd "$ASAN_DIR" && ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure -j2 -R "${HPO_ASAN_TESTS:-.}" -E '^(python_package|python_client|deploy_validate)$'); then
    echo "sanitizers: ASan/UBSan tests FAILED" >&2
    status=1
  fi
  echo "sanitizers: asan tests $(($(now) - t1)) s"
fi

if [ "$WHAT" = tsan ] || [ "$WHAT" = all ]; then
  t0=$(now)
  configure "$TSAN_DIR" "-fsanitize=thread -g -O1" "-fsanitize=thread"
  tests=$(cd "$TSAN_DIR" && ctest -N -L concurrency | sed -n 's/^ *Test *#[0-9]*: *//p' | tr '\n' ' ')
  # Until the coordinator has its own concurrency test: the coordinator's unit test. Tests that go
  # through gRPC are not run under TSan: Debian's libgrpc is not instrumented, and its lock-free
  # hand-offs of messages between threads show as races in our frames (hostile_input_test gave 5
  # such reports even with every gRPC library suppressed).
  [ -n "${tests// /}" ] || tests="coordinator_test"
  # shellcheck disable=SC2086  # one target per word
  cmake --build "$TSAN_DIR" -j"$JOBS" --target $tests
  clang++-14 -std=c++17 -O1 -fPIC -shared -o "$TSAN_DIR/libtsan_absl_mutex.so" tests/sanitizers/tsan_absl_mutex.cc -ldl -labsl_synchronization -labsl_time
  t1=$(now)
  echo "sanitizers: tsan build $((t1 - t0)) s ($tests)"
  if ! (cd "$TSAN_DIR" && LD_PRELOAD="$PWD/libtsan_absl_mutex.so" \
        TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 suppressions=$PWD/../tests/sanitizers/tsan.supp" \
        ctest --output-on-failure -R "^($(echo $tests | tr ' ' '|'))\$"); then
    echo "sanitizers: TSan tests FAILED" >&2
    status=1
  fi
  echo "sanitizers: tsan tests $(($(now) - t1)) s"
fi
exit $status
