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

checks.finish()
