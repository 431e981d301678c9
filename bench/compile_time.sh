#!/usr/bin/env bash
# What a fixed D=16, N=32 Chimera schedule (generated and checked at compile
# time) adds to a translation unit: wall time and peak compiler memory,
# against the same TU that only includes the header.
# Usage: bench/compile_time.sh [CXX]   (default c++)
set -euo pipefail
cxx=${1:-c++}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/base.cpp" <<'CPP'
#include <chimera/chimera.hpp>
int main() { return 0; }
CPP
cat > "$tmp/fixed.cpp" <<'CPP'
#include <chimera/chimera.hpp>
constexpr auto s = chimera::make_fixed<chimera::config{.schedule = chimera::algorithm::chimera, .stages = 16, .micro_batches = 32}>();
static_assert(chimera::check(s).ok());
static_assert(chimera::asap(s).makespan == 2 * 32 + 16 - 2);
int main() { return static_cast<int>(s.op_count() % 2); }
CPP
measure() {
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$cxx" -std=c++20 -O2 -I "$root/include" -c "$1" -o "$tmp/out.o"
    cat "$tmp/time"
}
read -r base_s base_kb < <(measure "$tmp/base.cpp")
read -r fixed_s fixed_kb < <(measure "$tmp/fixed.cpp")
echo "header only:          ${base_s} s, $((base_kb / 1024)) MiB peak"
echo "with D=16 N=32 fixed: ${fixed_s} s, $((fixed_kb / 1024)) MiB peak"
awk -v a="$base_s" -v b="$fixed_s" -v c="$base_kb" -v d="$fixed_kb" \
    'BEGIN { printf "added:                %.2f s, %d MiB\n", b - a, (d - c) / 1024 }'
