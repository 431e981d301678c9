#!/usr/bin/env python3
"""chimera-sched end to end: generate -> check round trips, and every kind of
bad input gives exit 2 and one clear line on stderr (never a crash)."""
import json
import os
import sys
import tempfile

from clitest import Checks

checks = Checks(sys.argv[1])
run, expect = checks.run, checks.expect


with tempfile.TemporaryDirectory() as tmp:
    # Round trips over a grid of valid configs.
    for schedule, d, n, extra in [("gpipe", 3, 5, []), ("1f1b", 4, 8, []), ("chimera", 4, 4, []),
                                  ("chimera", 8, 12, ["--pipelines", "4"]), ("chimera", 6, 7, []),
                                  ("chimera", 4, 8, ["--scaling", "doubling"]),
                                  ("chimera", 4, 8, ["--scaling", "halving"])]:
        args = ["generate", "--schedule", schedule, "--stages", str(d), "--micro-batches", str(n), *extra]
        out = run(*args)
        name = " ".join(args)
        expect(name, out.returncode == 0 and out.stderr == "", out.stderr)
        doc = json.loads(out.stdout)
        expect(name + " format", doc["format"] == "chimera.schedule/1" and doc["stages"] == d)
        path = os.path.join(tmp, "s.json")
        with open(path, "w") as f:
            f.write(out.stdout)
        checked = run("check", path)
        expect(name + " check", checked.returncode == 0 and checked.stdout.startswith("valid:"), checked.stdout)
        expect(name + " stdin", run("check", "-", stdin=out.stdout).returncode == 0)
        expect(name + " deterministic", run(*args).stdout == out.stdout)

    text = run("generate", "--stages", "4", "--micro-batches", "4", "--format", "text")
    expect("text grid", text.returncode == 0 and "P0  F0 .  F1 F2 B2 F3 B3 B0 .  B1" in text.stdout, text.stdout)
    expect("no colour when piped", "\x1b[" not in text.stdout)

    # An invalid schedule: exit 1 with the rule.
    doc = json.loads(run("generate", "--schedule", "1f1b", "--stages", "2", "--micro-batches", "2").stdout)
    doc["ops"][1][0], doc["ops"][1][1] = doc["ops"][1][1], doc["ops"][1][0]
    bad_path = os.path.join(tmp, "bad.json")
    with open(bad_path, "w") as f:
        json.dump(doc, f)
    bad = run("check", bad_path)
    expect("invalid schedule exit 1", bad.returncode == 1 and "D2:" in bad.stdout, bad.stdout)

    # Bad usage and unreadable input: exit 2, one line on stderr, no stdout.
    garbage = os.path.join(tmp, "garbage.json")
    with open(garbage, "w") as f:
        f.write("{not json")
    usage = [
        (["generate", "--stages", "abc", "--micro-batches", "4"], "--stages"),
        (["generate", "--stages", "0", "--micro-batches", "4"], "D must be >= 1 (got 0)"),
        (["generate", "--stages", "-4", "--micro-batches", "4"], "(got -4)"),
        (["generate", "--stages", "4", "--micro-batches", "0"], "N must be >= 1 (got 0)"),
        (["generate", "--stages", "5", "--micro-batches", "4"], "D must be even (got 5)"),
        (["generate", "--stages", "8", "--micro-batches", "8", "--pipelines", "3"], "(got k=3)"),
        (["generate", "--stages", "8", "--micro-batches", "8", "--pipelines", "6"], "f=3 must divide D/2=4"),
        (["generate", "--schedule", "nope", "--stages", "4", "--micro-batches", "4"], "nope"),
        (["generate", "--stages", "4", "--micro-batches", "4", "--scaling", "tripling"], "tripling"),
        (["generate", "--stages", "4", "--micro-batches", "4", "--format", "xml"], "xml"),
        (["generate", "--stages", "4"], "--micro-batches"),
        (["generate", "--stages", "99999999999", "--micro-batches", "4"], "--stages"),
        (["frobnicate"], "frobnicate"),
        ([], "subcommand"),
        (["check"], "FILE"),
        (["check", os.path.join(tmp, "missing.json")], "cannot open"),
        (["check", garbage], "line 1, column"),
    ]
    for args, needle in usage:
        out = run(*args)
        lines = out.stderr.strip().splitlines()
        expect(f"usage {args}", out.returncode == 2 and len(lines) == 1 and needle in out.stderr
               and out.stdout == "" and "Traceback" not in out.stderr,
               f"rc={out.returncode} stderr={out.stderr!r}")

    expect("help", run("--help").returncode == 0 and "generate" in run("--help").stdout)

checks.finish()
