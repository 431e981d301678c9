#!/usr/bin/env python3
"""chimera-sched generate / lower / simulate / export write the same bytes as
recorded: one SHA-256 per command line over a grid of schedules, sizes and
formats (tests/golden/cli_bytes.sha256). Refactors of the IR, the passes
and the writers must not change a byte of what users get.

Usage: cli_bytes.py PATH_TO_CHIMERA_SCHED [--record]
  --record rewrites the digest file from this binary (only when an output
  change is intended; say so in the commit).
"""
import hashlib
import os
import subprocess
import sys

EXE = sys.argv[1]
RECORD = "--record" in sys.argv[2:]
DIGESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "cli_bytes.sha256")

# (schedule, extra options, sizes (D, N)); sizes each schedule accepts.
SCHEDULES = [
    ("gpipe", [], [(2, 2), (4, 6)]),
    ("1f1b", [], [(2, 2), (4, 8)]),
    ("chimera", [], [(4, 4), (4, 8)]),
    ("chimera", ["--scaling", "doubling"], [(4, 8)]),
    ("chimera", ["--scaling", "halving"], [(4, 8)]),
    ("chimera", ["--pipelines", "4"], [(4, 4)]),
    ("chimera", ["--split-backward"], [(4, 4)]),
    ("interleaved", ["--chunks", "2"], [(2, 4), (4, 8)]),
    ("looped-bfs", ["--chunks", "2"], [(2, 4)]),
    ("gems", [], [(4, 4)]),
    ("zb-h1", [], [(4, 6)]),
    ("zb-h2", [], [(4, 6)]),
    ("zb-v", [], [(4, 8)]),
    ("dualpipe", [], [(4, 8)]),
    ("dualpipev", [], [(4, 8)]),
]

FORMATS = {
    "generate": [["--format", "json"], ["--format", "text"]],
    "lower": [["--format", "json"], ["--format", "text"], ["--sync", "eager", "--format", "text"],
              ["--sync", "eager-opt", "--format", "json"]],
    "simulate": [["--format", "json"], ["--format", "text"],
                 ["--cost", "F=1,B=2,I=1,W=1", "--p2p", "0.5,0.01", "--message-bytes", "100",
                  "--gradient-bytes", "1000", "--format", "json"],
                 ["--recompute", "--data-parallel", "2", "--gradient-bytes", "64", "--p2p", "1,0.001",
                  "--format", "text"]],
    "export": [["--format", f] for f in ("json", "pytorch-csv", "chrome-trace", "svg", "text")]
              + [["--format", "pytorch-csv", "--csv-format", "compute_comms"]],
}


def command_lines():
    for sub, variants in FORMATS.items():
        for name, extra, sizes in SCHEDULES:
            for d, n in sizes:
                for fmt in variants:
                    yield [sub, "--schedule", name, *extra, "--stages", str(d), "--micro-batches", str(n), *fmt]


def digest(args):
    r = subprocess.run([EXE, *args], capture_output=True, timeout=120)
    return hashlib.sha256(r.stdout + b"\0rc=%d" % r.returncode).hexdigest()


def main():
    lines = [(digest(args), " ".join(args)) for args in command_lines()]
    if RECORD:
        with open(DIGESTS, "w") as f:
            f.writelines(f"{h}  {cmd}\n" for h, cmd in lines)
        print(f"recorded {len(lines)} digests in {DIGESTS}")
        return 0
    with open(DIGESTS) as f:
        recorded = dict(reversed(line.rstrip("\n").split("  ", 1)) for line in f if line.strip())
    failures = 0
    for h, cmd in lines:
        if cmd not in recorded:
            print("MISSING (run with --record):", cmd)
            failures += 1
        elif recorded[cmd] != h:
            print("CHANGED BYTES:", cmd)
            failures += 1
    print(f"{len(lines) - failures} of {len(lines)} outputs unchanged")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
