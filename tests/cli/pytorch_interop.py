#!/usr/bin/env python3
"""PyTorch interoperability of the pipelining CSV, proven with PyTorch itself.

Usage: pytorch_interop.py CHIMERA_SCHED

* Every GPipe/1F1B CSV that chimera-sched exports (compute_only) loads with
  torch.distributed.pipelining's _PipelineScheduleRuntime._load_csv, and
  PyTorch lowers it;
* PyTorch's lowering of it (compute_comms, dumped by _dump_csv) reads back
  and passes chimera-sched check; chimera-sched's compute_comms rewrite of it
  loads with _load_csv(format="compute_comms") and runs in PyTorch's
  lock-step simulator without stalling;
* CSVs dumped by PyTorch's own schedules (interleaved 1F1B, one and two
  stages per rank; compute_only and compute_comms) pass chimera-sched check
  and read back into the same per-rank compute order.

Exits 77 (skipped) where `import torch.distributed.pipelining` fails. Set
CHIMERA_TORCH_PYTHON to an interpreter that has torch (e.g. a virtualenv)
to run it from a build whose python3 has none; see docs/pytorch.md.
"""
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.distributed.pipelining.schedules as S
except Exception as error:  # ImportError, or a broken torch install
    other = os.environ.get("CHIMERA_TORCH_PYTHON")
    if other and not os.environ.get("CHIMERA_TORCH_REEXEC"):
        os.environ["CHIMERA_TORCH_REEXEC"] = "1"  # once: no loop if that one lacks torch too
        os.execv(other, [other] + sys.argv)
    if os.environ.get("CI"):  # CI installs torch (.ci/install-deps): a missing one is a failure there
        print(f"FAIL: torch.distributed.pipelining is not importable under CI ({error})")
        sys.exit(1)
    print(f"SKIP: torch.distributed.pipelining is not importable ({error}); see docs/pytorch.md")
    sys.exit(77)

CLI = sys.argv[1]
failures = []
checks = 0


def run(*args, expect=0):
    result = subprocess.run([CLI, *args], capture_output=True, text=True)
    if result.returncode != expect:
        raise AssertionError(f"chimera-sched {' '.join(args)}: exit {result.returncode}\n{result.stderr}")
    return result.stdout


def expect(condition, what):
    global checks
    checks += 1
    if not condition:
        failures.append(what)
        print("FAIL:", what)


class MockStage:
    """What the schedule classes read from a stage: index, counts, rank."""

    def __init__(self, index, stages, ranks, rank):
        self.stage_index, self.num_stages = index, stages
        self.group_size, self.group_rank = ranks, rank
        self.is_first, self.is_last = index == 0, index == stages - 1


def csv_cells(path):
    """Per row, the non-empty cells in order."""
    with open(path, newline="") as f:
        return [[c for c in line.rstrip("\r\n").split(",") if c] for line in f]


def actions(order):
    return [[str(a) for a in order[rank] if a is not None] for rank in sorted(order)]


def runtime(stages, ranks, micro_batches):
    return S._PipelineScheduleRuntime([MockStage(0, stages, ranks, 0)], micro_batches)


def load_comms(stages, micro_batches, path, refusal):
    """PyTorch's runtime with the compute_comms CSV at `path` loaded, or None
    (and a failed check naming `refusal`) when PyTorch refuses it."""
    rt = runtime(stages, stages, micro_batches)
    try:
        rt._load_csv(path, format="compute_comms")
    except Exception as e:  # noqa: BLE001 - report any refusal
        expect(False, f"{refusal}: {e}")
        return None
    expect(True, "")
    return rt


with tempfile.TemporaryDirectory() as tmp:
    # 1. Our exports load in PyTorch (compute_only), and PyTorch's lowering of
    #    them round-trips through our compute_comms reader and writer.
    for schedule in ("gpipe", "1f1b"):
        for stages in (1, 2, 3, 4, 6):
            for micro_batches in (1, 2, 3, 4, 8):
                tag = f"{schedule} D={stages} N={micro_batches}"
                ours = os.path.join(tmp, f"{schedule}-{stages}-{micro_batches}.csv")
                run("export", "--schedule", schedule, "--stages", str(stages), "--micro-batches",
                    str(micro_batches), "--format", "pytorch-csv", "-o", ours)
                rt = runtime(stages, stages, micro_batches)
                try:
                    rt._load_csv(ours, format="compute_only")
                except Exception as e:  # noqa: BLE001 - report any refusal
                    expect(False, f"{tag}: PyTorch refused our compute_only CSV: {e}")
                    continue
                expect(actions(rt.pipeline_order) == csv_cells(ours), f"{tag}: PyTorch read other actions")
                expect(rt.stage_index_to_group_rank == {s: s for s in range(stages)}, f"{tag}: stage -> rank")

                lowered = os.path.join(tmp, f"{schedule}-{stages}-{micro_batches}.torch-comms.csv")
                rt._dump_csv(lowered, format="compute_comms")
                out = run("check", lowered)
                expect(out.startswith("valid:"), f"{tag}: PyTorch's lowering not valid here: {out}")

                rewritten = os.path.join(tmp, f"{schedule}-{stages}-{micro_batches}.comms.csv")
                run("convert", lowered, rewritten, "--csv-format", "compute_comms")
                rt2 = load_comms(stages, micro_batches, rewritten, f"{tag}: PyTorch refused our compute_comms CSV")
                if rt2 is None:
                    continue
                # PyTorch's simulator knows no gradient reduction: drop it there.
                p2p_only = {rank: [a for a in row if "REDUCE_GRAD" not in str(a)]
                            for rank, row in rt2.pipeline_order_with_comms.items()}
                try:
                    S._simulate_comms_compute(p2p_only, lambda s: rt2.stage_index_to_group_rank[s], stages)
                    expect(True, "")
                except Exception as e:  # noqa: BLE001
                    expect(False, f"{tag}: PyTorch's simulator stalls on our compute_comms CSV: {e}")

                # Our own compute_comms export loads too.
                direct = os.path.join(tmp, f"{schedule}-{stages}-{micro_batches}.ours-comms.csv")
                result = subprocess.run([CLI, "export", "--schedule", schedule, "--stages", str(stages),
                                         "--micro-batches", str(micro_batches), "--format", "pytorch-csv",
                                         "--csv-format", "compute_comms", "-o", direct],
                                        capture_output=True, text=True)
                expect(result.returncode == 0,
                       f"{tag}: chimera-sched export --csv-format compute_comms failed: {result.stderr.strip()}")
                if result.returncode == 0:
                    load_comms(stages, micro_batches, direct, f"{tag}: PyTorch refused our exported compute_comms CSV")

    # 2. PyTorch's own compute_only dumps read back into the same op lists.
    for ranks in (2, 4):
        for per_rank in (1, 2):
            for micro_batches in (ranks, 2 * ranks):
                stages = ranks * per_rank
                tag = f"interleaved ranks={ranks} v={per_rank} N={micro_batches}"
                stage_objects = [MockStage(ranks * c, stages, ranks, 0) for c in range(per_rank)]
                torch_schedule = S.ScheduleInterleaved1F1B(stage_objects, micro_batches)
                for flavour in ("compute_only", "compute_comms"):
                    dumped = os.path.join(tmp, f"torch-{ranks}-{per_rank}-{micro_batches}.{flavour}.csv")
                    torch_schedule._dump_csv(dumped, format=flavour)
                    out = run("check", dumped)
                    expect(out.startswith("valid:"), f"{tag}: PyTorch's {flavour} dump is not valid here: {out}")
                    back = os.path.join(tmp, f"torch-{ranks}-{per_rank}-{micro_batches}.back.csv")
                    run("convert", dumped, back)
                    expect(csv_cells(back) == actions(torch_schedule.pipeline_order),
                           f"{tag}: {flavour} dump read back into other op lists")
                rt = runtime(stages, ranks, micro_batches)
                rt._load_csv(back, format="compute_only")
                expect(actions(rt.pipeline_order) == actions(torch_schedule.pipeline_order),
                       f"{tag}: PyTorch reads our rewrite differently")

    # 3. The replicated-stage refusal happens in chimera-sched, not in PyTorch.
    run("export", "--schedule", "chimera", "--stages", "4", "--micro-batches", "4", "--format", "pytorch-csv",
        expect=2)

print(f"torch {torch.__version__}: {checks - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
