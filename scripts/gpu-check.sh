#!/usr/bin/env bash
# Everything the CUDA backend needs a real GPU for, in one go, on a lent
# machine: builds with CUDA (release, only the targets it runs, only this
# GPU's own -gencode), runs the GPU test suite (V3 kernels, V4/V5 training,
# schedule equivalence: `meson test --suite cuda`), cuda_bench (GEMM
# ladder against cuBLAS, attention, GPT-2 124M tokens/s and MFU in fp32 and
# bf16) and, where Meson found MPI and libnccl, the nccl transport's 1-rank
# smoke run on the real NCCL (`distributed-nccl-gpu`), and writes one
# Markdown results file.
#
#   scripts/gpu-check.sh [RESULTS.md]     # default: $OUT/gpu-check.md
#
# Budget: GPU_CHECK_SECONDS (default 480, what one H200 session allows);
# every step runs under `timeout` with what is left of it, so a hang costs
# that step, not the whole run. Exits 77 at once without a GPU, 1 when a
# step failed, 0 otherwise. Build directory: GPU_CHECK_BUILD (default
# build-gpu-check, kept between runs so a second run only relinks).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
budget=${GPU_CHECK_SECONDS:-480}
build=${GPU_CHECK_BUILD:-$root/build-gpu-check}
start=$SECONDS

log() { printf '[gpu-check %3ds] %s\n' $((SECONDS - start)) "$*" >&2; }

if [[ $# -gt 1 ]]; then
    echo "usage: scripts/gpu-check.sh [RESULTS.md] (default \$OUT/gpu-check.md)" >&2
    exit 2
fi
if [[ $# -eq 1 ]]; then
    results=$1
elif [[ -n ${OUT:-} ]]; then
    results=$OUT/gpu-check.md
else
    echo "gpu-check: no results path: pass one, or set OUT to a directory" >&2
    exit 2
fi

# --- a GPU, or exit 77 (skip) at once -------------------------------------------------
if ! command -v nvidia-smi > /dev/null 2>&1; then
    echo "gpu-check: no GPU (nvidia-smi not found); nothing to check" >&2
    exit 77
fi
query=$(timeout 20 nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1)
if [[ $? -ne 0 || -z $query || $query == *"failed"* || $query == *"No devices"* ]]; then
    echo "gpu-check: no usable GPU (nvidia-smi: ${query:-no output}); nothing to check" >&2
    exit 77
fi
IFS=',' read -r gpu_name compute_cap driver memory <<< "$(head -n 1 <<< "$query")"
gpu_name=$(xargs <<< "$gpu_name"); compute_cap=$(xargs <<< "$compute_cap")
driver=$(xargs <<< "$driver"); memory=$(xargs <<< "$memory")
cc=${compute_cap/./}
if ! [[ $cc =~ ^[0-9]+$ ]]; then
    echo "gpu-check: cannot read the compute capability ('$compute_cap') from nvidia-smi" >&2
    exit 1
fi
if (( cc < 80 )); then
    echo "gpu-check: $gpu_name has compute capability $compute_cap; the CUDA kernels need 8.0 or newer" >&2
    exit 77
fi
# The GPU's own machine code only (fast to build); sm_90 gets the arch-specific sm_90a.
arch=$cc
[[ $cc == 90 ]] && arch=90a
gencode="-gencode=arch=compute_$arch,code=sm_$arch"
log "$gpu_name (compute capability $compute_cap, driver $driver, $memory); $gencode; budget ${budget}s"

# --- steps under timeouts ---------------------------------------------------------------
mkdir -p "$(dirname "$results")"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
declare -a summary
failed=0

# run NAME CAP COMMAND...: the command under min(CAP, what is left - 10 s).
run() {
    local name=$1 cap=$2
    shift 2
    local left=$((budget - (SECONDS - start) - 10))
    local limit=$((cap < left ? cap : left))
    if (( limit < 5 )); then
        log "$name: skipped, the budget is spent"
        summary+=("| $name | skipped (budget spent) | 0 s |")
        failed=1
        return 1
    fi
    log "$name (limit ${limit}s)"
    local t0=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" > "$logs/$name.log" 2>&1
    rc=$?
    local status="ok"
    if (( rc == 124 || rc == 137 )); then status="TIMED OUT after ${limit}s"; elif (( rc != 0 )); then status="FAILED (exit $rc)"; fi
    [[ $status != ok ]] && failed=1
    log "$name: $status in $((SECONDS - t0))s"
    summary+=("| $name | $status | $((SECONDS - t0)) s |")
    [[ $status == ok ]]
}

options=(--buildtype=release -Dcuda=enabled -Dtests=enabled -Dbench=enabled -Dgpu_emulator=disabled
         "-Dnvcc_gencode=['$gencode']")  # brackets: Meson splits a bare array value at its comma
targets=(tests/cuda/test_cuda_kernels tests/cuda/test_cuda_train tests/cuda/test_cuda_host bench/cuda_bench)
# The nccl transport's smoke test exists where Meson found MPI and libnccl.
nccl_test() { meson introspect --tests "$build" 2>/dev/null | grep -q '"distributed-nccl-gpu"'; }
if [[ -f $build/build.ninja ]]; then
    run configure 90 meson setup --reconfigure "$build" "$root" "${options[@]}"
else
    run configure 90 meson setup "$build" "$root" "${options[@]}"
fi && { nccl_test && targets+=(examples/train/chimera-train examples/chimera-sched/chimera-sched); true; } &&
    run build 270 ninja -C "$build" "${targets[@]}" &&
    { run tests 180 meson test -C "$build" --suite cuda --no-rebuild --print-errorlogs; run bench 180 "$build/bench/cuda_bench"; }

# The nccl transport on the real NCCL, one rank.
if nccl_test; then
    run nccl 120 meson test -C "$build" --no-rebuild --print-errorlogs distributed-nccl-gpu
    grep -q 'SKIP' "$logs/nccl.log" 2>/dev/null && summary+=("| nccl | FAILED: skipped although nvidia-smi sees a GPU | |") && failed=1
else
    summary+=("| nccl | not built: Meson found no MPI or no libnccl on this machine | 0 s |")
fi

# A GPU is there, so a test or benchmark that finds none is a failure too
# (e.g. a driver older than the CUDA runtime).
if grep -qE '^Skipped: +[1-9]' "$logs/tests.log" 2>/dev/null; then
    summary+=("| tests | FAILED: skipped (exit 77) although nvidia-smi sees a GPU | |")
    failed=1
fi
if grep -q 'no GPU' "$logs/bench.log" 2>/dev/null; then
    summary+=("| bench | FAILED: cuda_bench found no GPU although nvidia-smi sees one | |")
    failed=1
fi

# --- the results file --------------------------------------------------------------------
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
tail_of() { [[ -f $logs/$1.log ]] && tail -n "$2" "$logs/$1.log"; }
{
    echo "# GPU check: $gpu_name"
    echo
    echo "* device: $gpu_name, compute capability $compute_cap, $memory (nvidia-smi)"
    grep -m1 '^device:' "$logs/bench.log" 2>/dev/null | sed 's/^/* cuda_bench /'
    echo "* driver: $driver"
    echo "* date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "* commit: $commit"
    echo "* build: release, \`$gencode\`, \`scripts/gpu-check.sh\` (${budget}s budget, $((SECONDS - start))s used)"
    echo
    echo "| step | result | wall |"
    echo "|---|---|---|"
    printf '%s\n' "${summary[@]}"
    echo
    echo "## Tests (\`meson test --suite cuda\`)"
    echo
    if [[ -f $logs/tests.log ]]; then
        echo '```'
        grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Expected Fail|Fail|Unexpected Pass|Skipped|Timeout): ' "$logs/tests.log"
        echo '```'
    else
        echo "(not run)"
    fi
    if grep -qE 'FAIL|TIMEOUT' "$logs/tests.log" 2>/dev/null; then
        echo
        echo '```'
        tail_of tests 80
        echo '```'
    fi
    echo
    echo "## NCCL smoke run (\`meson test distributed-nccl-gpu\`)"
    echo
    if [[ -f $logs/nccl.log ]]; then
        echo '```'
        tail_of nccl 30
        echo '```'
    else
        echo "(not run)"
    fi
    echo
    echo "## cuda_bench"
    echo
    # Its Markdown table as is, every other line a list item (blank lines between).
    [[ -f $logs/bench.log ]] || echo "(not run)"
    [[ -f $logs/bench.log ]] && awk '{ t = /^\|/; if (NR > 1 && t != last) print ""; print (t ? $0 : "* " $0); last = t }' \
        "$logs/bench.log"
    for step in configure build; do
        if [[ -f $logs/$step.log ]] && grep -q "^| $step | [^o]" <(printf '%s\n' "${summary[@]}"); then
            echo
            echo "## $step log (tail)"
            echo
            echo '```'
            tail_of "$step" 40
            echo '```'
        fi
    done
} > "$results"
log "results: $results"
exit $failed
