#!/usr/bin/env python3
"""chimera-sched export / convert / check with every interchange format.

Usage: cli_formats.py CHIMERA_SCHED
Exit codes: 0 ok, 1 invalid schedule, 2 bad usage or unreadable input; a
failed command writes nothing (not even a partial or temporary file).
"""
import json
import os
import subprocess
import sys
import tempfile

CLI = sys.argv[1]
passed = failed = 0


def run(*args, stdin=None):
    return subprocess.run([CLI, *args], capture_output=True, text=True, input=stdin)


def expect(condition, what, result=None):
    global passed, failed
    if condition:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)
        if result is not None:
            print("  exit", result.returncode, "stdout:", result.stdout[:400], "stderr:", result.stderr[:400])


def one_error_line(result):
    lines = result.stderr.strip().split("\n")
    return len(lines) == 1 and lines[0].startswith("chimera-sched: error:")


with tempfile.TemporaryDirectory() as tmp:
    path = lambda name: os.path.join(tmp, name)  # noqa: E731

    # export: every format, to a file and to standard output.
    for schedule, extra in (("1f1b", []), ("gpipe", []), ("chimera", []), ("chimera", ["--pipelines", "4"]),
                            ("chimera", ["--scaling", "doubling"])):
        base = ["export", "--schedule", schedule, "--stages", "4", "--micro-batches", "8", *extra]
        tag = " ".join([schedule, *extra])
        r = run(*base, "--format", "json", "-o", path("s.json"))
        expect(r.returncode == 0 and r.stdout == "", f"{tag}: export json", r)
        r = run("check", path("s.json"))
        expect(r.returncode == 0 and r.stdout.startswith("valid:"), f"{tag}: exported json checks", r)
        r = run(*base, "--format", "chrome-trace")
        trace = json.loads(r.stdout) if r.returncode == 0 else {}
        events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
        expect(len(events) == 2 * 4 * 8, f"{tag}: one trace event per op", r)
        r = run(*base, "--format", "svg")
        expect(r.returncode == 0 and r.stdout.startswith("<svg ") and "<script" not in r.stdout, f"{tag}: svg", r)
        r = run(*base, "--format", "text", "-o", path("s.txt"))
        text = open(path("s.txt")).read() if r.returncode == 0 else ""
        expect("\x1b" not in text and text.count("\nP") == 4, f"{tag}: text grid in a file has no colour", r)
        r = run(*base, "--format", "pytorch-csv", "-o", path("s.csv"))
        if schedule == "chimera":
            expect(r.returncode == 2 and one_error_line(r) and "[CSV7]" in r.stderr and "JSON" in r.stderr,
                   f"{tag}: CSV refused with a reason", r)
            expect(not os.path.exists(path("s.csv")), f"{tag}: nothing written on refusal")
        else:
            expect(r.returncode == 0, f"{tag}: export pytorch-csv", r)
            r = run("check", path("s.csv"))
            expect(r.returncode == 0 and "pytorch-csv" in r.stdout, f"{tag}: exported csv checks", r)
            os.remove(path("s.csv"))

    # The smallest example of docs/design/formats.md.
    r = run("export", "--schedule", "1f1b", "--stages", "2", "--micro-batches", "2", "--format", "pytorch-csv")
    expect(r.stdout == "0F0,0F1,,0B0,,0B1\n,1F0,1B0,1F1,1B1,\n", "1F1B D=2 N=2 is PyTorch's example", r)

    # convert: round trips through every readable format; format from the extension.
    run("export", "--schedule", "1f1b", "--stages", "4", "--micro-batches", "6", "--format", "json",
        "-o", path("a.json"))
    r = run("convert", path("a.json"), path("a.csv"))
    expect(r.returncode == 0, "convert json -> csv", r)
    r = run("convert", path("a.csv"), path("b.json"))
    expect(r.returncode == 0, "convert csv -> json", r)
    a, b = json.load(open(path("a.json"))), json.load(open(path("b.json")))
    expect(a["ops"] == b["ops"] and a["placement"] == b["placement"], "json -> csv -> json keeps the op lists")
    expect(b["name"] == "pytorch-csv", "a schedule read from CSV is named pytorch-csv")
    r = run("convert", path("b.json"), path("c.csv"))
    expect(open(path("c.csv")).read() == open(path("a.csv")).read(), "csv -> json -> csv is byte-identical", r)
    for out, to in (("a.trace.json", "chrome-trace"), ("a.svg", "svg"), ("a.txt", "text")):
        r = run("convert", path("a.csv"), path(out))
        expect(r.returncode == 0 and os.path.getsize(path(out)) > 0, f"convert csv -> {to}", r)
    json.load(open(path("a.trace.json")))

    # --from / --to and standard streams.
    r = run("convert", "-", "-", "--from", "pytorch-csv", "--to", "json", stdin=open(path("a.csv")).read())
    expect(r.returncode == 0 and json.loads(r.stdout)["ops"] == a["ops"], "convert - - --from --to", r)
    r = run("convert", path("a.csv"), path("a.unknown"))
    expect(r.returncode == 2 and one_error_line(r) and "--to" in r.stderr, "unknown output extension", r)
    r = run("convert", path("a.svg"), path("x.json"))
    expect(r.returncode == 2 and "output-only" in r.stderr, "svg is not readable", r)

    # check: CSV by extension, by sniffing, and on standard input.
    with open(path("noext"), "w") as f:
        f.write(open(path("a.csv")).read())
    r = run("check", path("noext"))
    expect(r.returncode == 0 and "pytorch-csv" in r.stdout, "check sniffs CSV", r)
    r = run("check", "-", stdin=open(path("a.json")).read())
    expect(r.returncode == 0 and "1f1b" in r.stdout, "check sniffs JSON on stdin", r)
    r = run("check", "-", stdin="0F0,0F1,,0B0,,0B1\r\n,1F0,1B0,1F1,1B1,\r\n")
    expect(r.returncode == 0, "check accepts CRLF", r)

    # Strict readers: exit 2, one line naming the place and the rule, nothing written.
    bad = {
        "empty.csv": ("", "[CSV1]"),
        "blank.csv": ("0F0,0B0\n\n", "line 2, column 1: [CSV1]"),
        "kind.csv": ("0F0,0X0\n", "line 1, column 5: [CSV2]"),
        "huge.csv": ("0F0,0B99999999999999999999\n", "[CSV3]"),
        "range.csv": ("0F0,0B0\n2F0,2B0\n", "[CSV4]"),
        "dup.csv": ("0F0,0B0,0F0\n", "line 1, column 9: [CSV6]"),
        "trunc.json": ('{"format":"chimera.schedule/1","name":"x",', "[JSON1]"),
        "type.json": ('{"format":"chimera.schedule/1","name":7}', "$.name: [JSON2]"),
        "empty.json": ("", "[JSON1]"),
    }
    with open(path("keep.json"), "w") as f:
        f.write("precious")
    for name, (content, needle) in bad.items():
        with open(path(name), "w", newline="") as f:
            f.write(content)
        r = run("check", path(name))
        expect(r.returncode == 2 and one_error_line(r) and needle in r.stderr, f"check {name}: {needle}", r)
        r = run("convert", path(name), path("keep.json"))
        expect(r.returncode == 2 and open(path("keep.json")).read() == "precious",
               f"convert {name}: the output is untouched", r)

    # A readable but invalid schedule: exit 1 from check and convert, nothing written.
    with open(path("order.csv"), "w") as f:
        f.write("0F0,0B0\n1B0,1F0\n")
    r = run("check", path("order.csv"))
    expect(r.returncode == 1 and "D2" in r.stdout, "check reports the broken dependency", r)
    r = run("convert", path("order.csv"), path("order.json"))
    expect(r.returncode == 1 and not os.path.exists(path("order.json")), "convert refuses an invalid schedule", r)

    # No temporary files left behind.
    leftovers = [n for n in os.listdir(tmp) if ".tmp-" in n]
    expect(not leftovers, f"temporary files left: {leftovers}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
