#!/usr/bin/env python3
"""chimera-sched and the zoo: every new --schedule name generates a file that
`check` accepts, --chunks / --group-size / --split-backward reach the config,
refusals exit 2 with the rule, and `compare` prints every schedule."""
import os
import sys
import tempfile

from clitest import Checks

checks = Checks(sys.argv[1])
run, expect = checks.run, checks.expect


with tempfile.TemporaryDirectory() as tmp:
    cases = [("interleaved", 4, 8, ["--chunks", "3"]), ("interleaved", 4, 10, ["--group-size", "6"]),
             ("looped-bfs", 3, 5, ["--chunks", "2"]), ("gems", 4, 5, []), ("zb-h1", 4, 8, []),
             ("zb-h2", 4, 9, []), ("zb-v", 4, 8, []), ("dualpipe", 4, 8, []), ("dualpipev", 4, 10, []),
             ("chimera", 4, 8, ["--split-backward"]), ("chimera", 8, 16, ["--split-backward", "--pipelines", "4"])]
    for schedule, d, n, extra in cases:
        name = f"{schedule} {d} {n} {' '.join(extra)}"
        path = os.path.join(tmp, "s.json")
        r = run("generate", "--schedule", schedule, "--stages", str(d), "--micro-batches", str(n), *extra)
        expect(name + " generate", r.returncode == 0, r.stderr)
        with open(path, "w") as f:
            f.write(r.stdout)
        c = run("check", path)
        expect(name + " check", c.returncode == 0 and c.stdout.startswith("valid"), c.stdout + c.stderr)
        t = run("generate", "--schedule", schedule, "--stages", str(d), "--micro-batches", str(n), *extra,
                "--format", "text")
        expect(name + " text", t.returncode == 0 and t.stdout.startswith(schedule), t.stdout[:80])
    r = run("generate", "--schedule", "interleaved", "--stages", "4", "--micro-batches", "8", "--chunks", "3")
    expect("chunks reach the schedule", '"stages":12' in r.stdout, r.stdout[:200])
    r = run("generate", "--schedule", "chimera", "--split-backward", "--stages", "4", "--micro-batches", "4")
    expect("split backward reaches the schedule", '"kind":"W"' in r.stdout and '"kind":"B"' not in r.stdout)

    for args, words in [(["--schedule", "dualpipe", "--stages", "3", "--micro-batches", "8"], "must be even"),
                        (["--schedule", "dualpipev", "--stages", "4", "--micro-batches", "6"], "N >= 2P"),
                        (["--schedule", "interleaved", "--stages", "4", "--micro-batches", "9"], "PyTorch's rule"),
                        (["--schedule", "zb-v", "--stages", "4", "--micro-batches", "8", "--chunks", "3"],
                         "exactly 2"),
                        (["--schedule", "1f1b", "--stages", "4", "--micro-batches", "8", "--split-backward"],
                         "split backward")]:
        r = run("generate", *args)
        expect(" ".join(args), r.returncode == 2 and "S1" in r.stderr and words in r.stderr
               and r.stderr.count("\n") == 1, r.stderr)

    r = run("compare", "--stages", "4", "--micro-batches", "8", "--cost", "F=1,I=1,W=1")
    expect("compare", r.returncode == 0, r.stderr)
    for schedule in ["gpipe", "1f1b", "chimera", "chimera --split-backward", "interleaved v=2", "looped-bfs v=2",
                     "gems", "zb-h1", "zb-h2", "zb-v", "dualpipe", "dualpipev"]:
        expect("compare lists " + schedule, any(line.startswith(schedule + " ") for line in r.stdout.splitlines()))
    r = run("compare", "--stages", "4", "--micro-batches", "4", "--format", "markdown")
    expect("compare names refusals", "- dualpipe: needs N >= 2P" in r.stdout, r.stdout)
    for cost in ["F=1,X=2", "F=0,B=1", "F=1,I=1", "B=abc"]:
        r = run("compare", "--stages", "4", "--micro-batches", "8", "--cost", cost)
        expect("bad cost " + cost, r.returncode == 2 and "--cost" in r.stderr, r.stderr)


def compare_rows(*args):
    """compare --format markdown as {label: {column: cell}}."""
    r = run("compare", *args, "--format", "markdown")
    expect("compare " + " ".join(args), r.returncode == 0, r.stderr)
    lines = [line for line in r.stdout.splitlines() if line.startswith("| ")]
    head = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(head, cells))
    return rows


def expect_row(rows, label, **values):
    row = rows.get(label)
    expect("compare has " + label, row is not None, sorted(rows))
    for column, value in values.items():
        column = {"peak_act": "peak act."}.get(column, column.replace("_", " "))
        expect(f"compare {label} {column}", row is not None and float(row[column].rstrip("x")) == value,
               row and row[column])


# Hand-computed values. D=4, N=4, F=1, B=2: GPipe and 1F1B take (N + D - 1)(F + B)
# = 21 with 9 idle units per worker (bubble 9/21); Chimera k=2 direct takes
# C_f F + C_b B with C_f = D + 2(U-1) = 4, C_b = U(2D-2) = 6: 16, idle 4 of 16.
rows = compare_rows("--stages", "4", "--micro-batches", "4", "--cost", "F=1,B=2")
expect_row(rows, "gpipe", span=21, bubble_ratio=round(9 / 21, 4), weight_copies=1, peak_act=4)
expect_row(rows, "1f1b", span=21, bubble_ratio=round(9 / 21, 4), weight_copies=1, peak_act=4)
expect_row(rows, "chimera k=2 direct", span=16, bubble_ratio=0.25, weight_copies=2, peak_act=4)
# Doubling, t_B <= 2 t_F: (N + D/2 - 1)(F + B) = 27 at D=4, N=8, idle (D/2 - 1)(F + B) = 3.
rows = compare_rows("--stages", "4", "--micro-batches", "8", "--cost", "F=1,B=2")
expect_row(rows, "chimera k=2 doubling", span=27, bubble_ratio=round(3 / 27, 4), weight_copies=2)
expect_row(rows, "gpipe", span=33, bubble_ratio=round(9 / 33, 4))
# Unit costs, k = 2f pipelines: span 2N + D/f - 2, bubble (D - 2f)/(2fN + D - 2f).
rows = compare_rows("--stages", "8", "--micro-batches", "8", "--cost", "F=1,B=1")
expect_row(rows, "chimera k=4 direct", span=2 * 8 + 8 / 2 - 2, bubble_ratio=round(4 / 36, 4), weight_copies=4)
expect_row(rows, "chimera k=2 direct", span=2 * 8 + 8 - 2, bubble_ratio=round(6 / 22, 4), weight_copies=2)
expect_row(rows, "chimera --split-backward k=4", weight_copies=4)
expect("compare gives every row an N constraint sentence",
       all(row["N constraint"].endswith(".") for row in rows.values()), rows)

# Every schedule compare lists (the registry) is a --schedule choice of the CLI.
help_text = run("generate", "--help").stdout
for label in compare_rows("--stages", "4", "--micro-batches", "8"):
    expect("help names " + label.split()[0], label.split()[0] in help_text, help_text[:300])
names = run("schedules", "--names").stdout.split()
every = compare_rows("--stages", "4", "--micro-batches", "8")  # every schedule accepts D=4, N=8
expect("schedules --names lists compare's schedules",
       names == list(dict.fromkeys(label.split()[0] for label in every)), names)
for name in names:
    r = run("generate", "--schedule", name, "--stages", "4", "--micro-batches", "8", "--format", "text")
    expect(f"{name} generates at its defaults", r.returncode == 0 and r.stdout.startswith(name), r.stderr)
listing = run("schedules").stdout
expect("schedules shows options and N constraints",
       "options: --pipelines --scaling --split-backward" in listing and "N: N >= 2D." in listing, listing)
r = run("generate", "--schedule", "dapple", "--stages", "4", "--micro-batches", "8")
expect("aliases reach the registry", r.returncode == 0 and '"name":"1f1b"' in r.stdout, r.stderr)

checks.finish()
