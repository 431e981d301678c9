#!/usr/bin/env python3
"""Prints the closing line 'N passed, N failed, N skipped' from Meson's test
log, adding the counts of pytest JUnit XML files given after it (a missing
or empty one counts as a failure)."""
import json
import sys
import xml.etree.ElementTree as ElementTree

counts = {"passed": 0, "failed": 0, "skipped": 0}
try:
    with open(sys.argv[1]) as log:
        for line in log:
            result = json.loads(line).get("result", "")
            if result in ("OK", "EXPECTEDFAIL"):
                counts["passed"] += 1
            elif result == "SKIP":
                counts["skipped"] += 1
            else:
                counts["failed"] += 1
except FileNotFoundError:
    counts["failed"] += 1
for path in sys.argv[2:]:
    try:
        totals = [sum(int(suite.get(key, 0)) for suite in ElementTree.parse(path).getroot().iter("testsuite"))
                  for key in ("tests", "failures", "errors", "skipped")]
    except (FileNotFoundError, ElementTree.ParseError):
        totals = [0, 0, 0, 0]
    tests, failures, errors, skipped = totals
    if tests == 0:
        failures = 1
    counts["failed"] += failures + errors
    counts["skipped"] += skipped
    counts["passed"] += tests - failures - errors - skipped if tests else 0
print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
