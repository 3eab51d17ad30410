#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer stage: builds the CPU-only addon and the native
# tests with -fsanitize=address,undefined into build-asan/ (the normal build/ is untouched), runs
# the native tests under ctest, then the vitest suite and the fuzz against that addon (node itself
# is not instrumented, so the ASan runtime is preloaded). Any sanitizer report fails the stage.
#
#   scripts/sanitize-test.sh                 # everything
#   CALMOE_FUZZ_CALLS=100000 scripts/sanitize-test.sh
#   SANITIZE_STEPS="native" scripts/sanitize-test.sh   # any of: build native vitest fuzz
#   CALMOE_JOBS=2 (build parallelism, default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
steps=${SANITIZE_STEPS:-"build native vitest fuzz"}
jobs=${CALMOE_JOBS:-1}
out=build-asan

has() { [[ " $steps " == *" $1 "* ]]; }
stamp() { printf '[sanitize %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if has build; then
  stamp "building the addon and the native tests with -fsanitize=address,undefined into $out/"
  cmake_js=$(node -p "require.resolve('cmake-js/bin/cmake-js')")
  common=(--out "$out" --CDCALMOE_CUDA=OFF --CDCALMOE_BUILD_TESTS=ON --CDCALMOE_BUILD_BENCH=OFF
          --CDCALMOE_SANITIZE=address,undefined)
  node "$cmake_js" configure "${common[@]}"
  node "$cmake_js" build "${common[@]}" --parallel "$jobs"
fi
# A build that is not instrumented would pass everything: check that it is (grep reads all of
# nm's output: with -q, nm would die of SIGPIPE and pipefail would call that a failure).
if ! nm "$out/Release/calmoe.node" | grep __asan_report > /dev/null; then
  stamp "the addon in $out/ is not instrumented"
  exit 1
fi

# Leak checking is off: node's own allocations at exit are reported as leaks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-"detect_leaks=0:abort_on_error=1:strict_string_checks=1"}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-"halt_on_error=1:print_stacktrace=1"}

if has native; then
  stamp "native tests (ctest)"
  ctest --test-dir "$out" --output-on-failure --no-tests=error
fi

# node is not built with ASan: preload the runtime so the instrumented addon can load.
asan_rt=$(${CXX:-c++} -print-file-name=libasan.so)
addon="$root/$out/Release/calmoe.node"
run_node_tests() {
  # Child processes (test/scenarios) inherit the preload and the addon path.
  LD_PRELOAD="$asan_rt" CALMOE_ADDON_PATH="$addon" npx vitest run "$@"
}
if has vitest; then
  stamp "vitest suite against $addon"
  run_node_tests --exclude test/fuzz.test.ts
fi
if has fuzz; then
  stamp "fuzz (${CALMOE_FUZZ_CALLS:-3000} calls) against $addon"
  run_node_tests test/fuzz.test.ts
fi
stamp "no sanitizer reports"
