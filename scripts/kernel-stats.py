#!/usr/bin/env python3
"""Static numbers of the CUDA kernels, from a fresh nvcc compile for sm_90a.

    scripts/kernel-stats.py [--nvcc PATH] [--sass]

Compiles examples/cuda/kernels.cu to a cubin with `ptxas -v`, then prints a
Markdown table per kernel: registers, static + dynamic shared memory, the
block size its launcher uses, and the resulting blocks and warps per SM on
sm_90 (65536 registers, 228 KB shared memory, 2048 threads, 32 blocks per
SM; 1 KB of shared memory reserved per block). For every loop of the bf16
GEMM that holds tensor-core instructions it counts, from
`cuobjdump -sass`, the instructions and the HMMAs in the loop body (static
count of one iteration, which is what a warp issues per iteration when the
body has no inner branches). cuobjdump and nvdisasm are missing from some
CUDA installs; they are installed from PyPI (nvidia-cuda-cuobjdump,
nvidia-cuda-nvdisasm) when not found. Needs no GPU. Same compiler, same
output.
"""
import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Threads per block and dynamic shared memory of each launch in
# examples/cuda/kernels.cu (per-row kernels at C >= 256: 256 threads). A
# kernel missing here is an error, so a new kernel cannot be left out.
# Kernels since replaced (layernorm_backward_weight, column_sum_add) stay,
# so the script also runs on older commits (the "before" numbers).
LAUNCH = {
    "encoder_forward": (256, 0),
    "encoder_backward_wte": (128, 0),
    "encoder_backward_wpe": (256, 0),
    "layernorm_forward": (256, 0),
    "layernorm_backward_input": (256, 0),
    "layernorm_backward_weight": (128, 0),
    "layernorm_backward_weight_partial": (256, 0),
    "layernorm_backward_weight_finish": (256, 0),
    "residual_forward": (256, 0),
    "gelu_forward": (256, 0),
    "gelu_backward": (256, 0),
    "column_sum_add": (128, 0),
    "column_sum_partial": (256, 0),
    "column_partials_finish": (256, 0),
    "gemm_naive": (128, 0),
    "gemm_tiled": (256, 0),
    "gemm_bf16_mma": (256, "g2"),
    "cast_to_bf16_padded": (256, 0),
    "transpose_to_bf16_padded": (256, 0),
    "attention_scores": (256, 0),
    "attention_softmax": (256, 0),
    "attention_values": (256, 0),
    "attention_datt": (256, 0),
    "attention_softmax_backward": (256, 0),
    "attention_dqkv": (256, 0),
    "attention_flash_forward": ("flash_fwd", 0),
    "attention_flash_row_dot": (256, 0),
    "attention_flash_backward_kv": ("flash_bwd", 0),
    "attention_flash_backward_q": ("flash_bwd", 0),
    "fused_classifier": (256, 0),
    "adamw": (256, 0),
    "deterministic_sum": (1024, 0),
    "replica_sum": (256, 0),
    "cast_to_bf16": (256, 0),
    "cast_from_bf16": (256, 0),
}

# Opcodes counted in the GEMM's loops: tensor-core ops, ldmatrix, cp.async,
# and the overhead of guards (WARPSYNC, BSSY) and spills (LDL).
WATCH = ["HMMA", "LDSM", "LDGSTS", "WARPSYNC", "BSSY", "LDL"]

SM = {"regs": 65536, "smem": 228 * 1024, "warps": 64, "blocks": 32, "reserved": 1024}


def constant(name, default):
    """A constexpr int from kernels.cuh (launch shapes that depend on tiles)."""
    text = open(os.path.join(ROOT, "examples/cuda/kernels.cuh")).read()
    m = re.search(r"constexpr int [^;]*\b" + name + r"\s*=\s*(\d+)", text)
    return int(m.group(1)) if m else default


def resolve(entry):
    threads, dynamic = entry
    if threads == "flash_fwd":
        threads = 32 * constant("flash_warps", constant("flash_rows", 4))
    if threads == "flash_bwd":
        threads = 32 * constant("flash_warps", 1)  # 1: one-warp blocks before FA2 tiling
    if dynamic == "g2":
        tile, k, pad, stages = (constant(n, d) for n, d in (("g2_tile", 128), ("g2_k", 32), ("g2_pad", 8),
                                                           ("g2_stages", 0)))
        dynamic = stages * 2 * tile * (k + pad) * 2  # 0 while G2 used static shared memory
    return threads, dynamic


def tool(name, package):
    found = shutil.which(name)
    if found:
        return found
    for d in sys.path:
        cand = os.path.join(d, "nvidia", "cu13", "bin", name)
        if os.path.exists(cand):
            return cand
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)
    import site
    for d in site.getsitepackages() + [site.getusersitepackages()]:
        cand = os.path.join(d, "nvidia", "cu13", "bin", name)
        if os.path.exists(cand):
            return cand
    sys.exit(f"kernel-stats: {name} not found after pip install {package}")


def compile_cubin(nvcc, out):
    cmd = [nvcc, "-std=c++20", "--expt-relaxed-constexpr", "-gencode=arch=compute_90a,code=sm_90a", "-Xptxas",
           "-v", "-cubin", "-I" + os.path.join(ROOT, "examples"), "-I" + os.path.join(ROOT, "include"), "-o", out,
           os.path.join(ROOT, "examples/cuda/kernels.cu")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("kernel-stats: nvcc failed:\n" + r.stdout + r.stderr)
    return r.stdout + r.stderr


def short(mangled):
    m = re.search(r"kernels(\d+)(\w+)", mangled)
    n = int(m.group(1))
    return m.group(2)[:n]


def ptxas_table(text):
    rows, current = {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            current = short(m.group(1))
            continue
        m = re.search(r"Used (\d+) registers.*?(?:(\d+) bytes smem)?$", line)
        if m and current:
            rows[current] = (int(m.group(1)), int(m.group(2) or 0))
        m = re.search(r"(\d+) bytes spill stores", line)
        if m and current and int(m.group(1)) > 0:
            print(f"warning: {current} spills {m.group(1)} bytes", file=sys.stderr)
    return rows


def occupancy(regs, smem, threads):
    warps = math.ceil(threads / 32)
    limits = [SM["blocks"], SM["warps"] // warps]
    per_warp = math.ceil(max(regs, 1) * 32 / 256) * 256
    limits.append((SM["regs"] // per_warp) // warps)
    alloc = math.ceil((smem + SM["reserved"]) / 128) * 128
    limits.append(SM["smem"] // alloc)
    blocks = min(limits)
    return blocks, blocks * warps


def sass_loops(sass, kernel):
    """Innermost loops of `kernel` holding HMMA: (start, end, instructions,
    {opcode: count} for the opcodes that matter here)."""
    body, inside = [], False
    for line in sass.splitlines():
        if "Function :" in line:
            inside = short(line.split(":")[1].strip()) == kernel
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if inside and m:
            body.append((int(m.group(1), 16), m.group(2).strip()))
    loops = []
    for addr, ins in body:
        m = re.search(r"\bBRA\s+(?:`\()?0x([0-9a-f]+)", ins)
        if m and int(m.group(1), 16) < addr:
            start = int(m.group(1), 16)
            part = [i for a, i in body if start <= a <= addr and not i.startswith("NOP")]
            ops = {k: sum(re.search(r"\b" + k + r"\b", i) is not None for i in part) for k in WATCH}
            ops["@HMMA"] = sum(i.startswith("@") and "HMMA" in i for i in part)
            if ops["HMMA"]:
                loops.append((start, addr, len(part), ops))
    return [l for l in loops if not any(o != l and l[0] <= o[0] and o[1] <= l[1] for o in loops)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--nvcc", default=shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cubin = os.path.join(tmp, "kernels.cubin")
        table = ptxas_table(compile_cubin(args.nvcc, cubin))
        env = dict(os.environ, PATH=os.path.dirname(tool("nvdisasm", "nvidia-cuda-nvdisasm")) + os.pathsep +
                   os.environ["PATH"])
        sass = subprocess.run([tool("cuobjdump", "nvidia-cuda-cuobjdump"), "-sass", cubin], capture_output=True,
                              text=True, check=True, env=env).stdout
    missing = sorted(set(table) - set(LAUNCH))
    if missing:
        sys.exit("kernel-stats: no launch shape for " + ", ".join(missing) + " (add it to LAUNCH)")
    print("| kernel | registers | shared (static + dynamic) | threads/block | blocks/SM | warps/SM (of 64) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in sorted(table):
        regs, smem = table[name]
        threads, dynamic = resolve(LAUNCH[name])
        blocks, warps = occupancy(regs, smem + dynamic, threads)
        shared = f"{smem} + {dynamic}" if dynamic else f"{smem}"
        print(f"| `{name}` | {regs} | {shared} | {threads} | {blocks} | {warps} |")
    print()
    print("| bf16 GEMM loop (SASS) | instructions | " + " | ".join(WATCH) + " | predicated HMMA | "
          "instructions per HMMA |")
    print("|---|" + "---:|" * (len(WATCH) + 3))
    for start, end, n, ops in sass_loops(sass, "gemm_bf16_mma"):
        counts = " | ".join(str(ops[k]) for k in WATCH)
        print(f"| 0x{start:04x}-0x{end:04x} | {n} | {counts} | {ops['@HMMA']} | {n / ops['HMMA']:.1f} |")


if __name__ == "__main__":
    main()
