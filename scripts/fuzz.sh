#!/usr/bin/env bash
# Fuzz the JSON and CSV readers with libFuzzer (+ASan +UBSan) for N seconds
# each (default 60): scripts/fuzz.sh [SECONDS] [BUILD_DIR]
# New corpus entries and crash files land in BUILD_DIR/tests/fuzz/; a crash
# makes this script fail and must become a regression test in
# tests/io/test_io.cpp (then add the input to tests/fuzz/corpus/).
set -euo pipefail
seconds="${1:-60}"
build="${2:-build-fuzz}"
cd "$(dirname "$0")/.."
if [ -d "$build" ]; then
  meson configure "$build" -Dfuzz=enabled -Dfuzz_seconds="$seconds" >/dev/null
else
  CXX=clang++ meson setup "$build" -Dfuzz=enabled -Dfuzz_seconds="$seconds" -Dbench=disabled -Dcuda=disabled \
    -Dbuildtype=debugoptimized -Db_ndebug=false >/dev/null
fi
ninja -C "$build" -j"$(nproc)" tests/fuzz/fuzz_json tests/fuzz/fuzz_csv
meson test -C "$build" --suite fuzz --print-errorlogs --no-rebuild
