#!/usr/bin/env python3
"""chimera-train with a schedule the checker rejects (a hand-edited file:
worker 0's first SEND_F moved to the end of its list, after the receive
that waits for it): refused with exit 1 and every diagnostic that
`chimera-sched check` reports; with --no-check the diagnostics become a
warning and the runtime itself reports the failure (deadlock or watchdog),
exit 1, no hang. Arguments after the two executables go to every run
(e.g. --backend cuda).

  chimera_train_no_check.py CHIMERA_SCHED CHIMERA_TRAIN [ARGS...]"""
import json
import os
import re
import subprocess
import sys
import tempfile

sched, train, extra = sys.argv[1], sys.argv[2], sys.argv[3:]


def fail(message):
    sys.exit('FAIL: ' + message)


lowered = json.loads(subprocess.run([sched, 'lower', '--schedule', 'chimera', '--stages', '4', '--micro-batches', '4'],
                                    capture_output=True, text=True, check=True).stdout)
ops = lowered['ops'][0]
send = next(i for i, o in enumerate(ops) if o['kind'] == 'SEND_F')
ops.append(ops.pop(send))
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, 'broken.json')
    with open(path, 'w') as f:
        json.dump(lowered, f)
    check = subprocess.run([sched, 'check', path], capture_output=True, text=True)
    rules = re.findall(r'^([A-Z]+\d+): ', check.stdout, re.M)
    if check.returncode == 0 or not rules:
        fail('chimera-sched check accepts the broken file:\n' + check.stdout)
    base = [train, '--schedule-file', path, '--steps', '1', '--batch', '1', '--watchdog-ms', '3000', *extra]

    refused = subprocess.run(base, capture_output=True, text=True, timeout=600)
    printed = re.findall(r'^  \[(\w+)\] ', refused.stderr, re.M)
    if refused.returncode != 1 or printed != rules:
        fail(f'refusal: exit {refused.returncode}, diagnostics {printed}, expected {rules}\n{refused.stderr}')

    ran = subprocess.run(base + ['--no-check'], capture_output=True, text=True, timeout=600)
    if ran.returncode != 1 or 'warning (--no-check' not in ran.stderr:
        fail(f'--no-check: exit {ran.returncode}\n{ran.stdout}\n{ran.stderr}')
    if 'deadlock' not in ran.stderr and 'watchdog' not in ran.stderr:
        fail('--no-check: the runtime did not report the failure:\n' + ran.stderr)
print(f'ok: {len(rules)} diagnostics printed; --no-check ran and failed cleanly')
