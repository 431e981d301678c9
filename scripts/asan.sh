#!/usr/bin/env bash
# Build with AddressSanitizer + UndefinedBehaviorSanitizer and run the unit
# CLI and runtime tests, and the CUDA kernels on the emulator (a memcheck of
# every kernel): scripts/asan.sh [BUILD_DIR]
# Equivalent by hand:
#   meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
#   meson test -C build-asan --suite unit --suite cli --suite runtime --suite cuda-emulator
set -euo pipefail
build="${1:-build-asan}"
cd "$(dirname "$0")/.."
if [ ! -d "$build" ]; then
  meson setup "$build" -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized \
    -Db_ndebug=false -Dbench=disabled -Dcuda=disabled >/dev/null
fi
ninja -C "$build" -j"$(nproc)"
# Any UB report fails the test instead of printing and going on.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
meson test -C "$build" --suite unit --suite cli --suite runtime --suite cuda-emulator --print-errorlogs --num-processes 2
