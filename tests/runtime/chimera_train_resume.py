#!/usr/bin/env python3
"""chimera-train: a run resumed from its checkpoint prints the same losses
as the uninterrupted run (bitwise, via the JSON lines), and a checkpoint from
another model is refused with exit code 2. Arguments after the executable
are added to every run (e.g. --backend cuda)."""
import json
import subprocess
import sys
import tempfile

exe = sys.argv[1]
common = ['--schedule', 'chimera', '--stages', '4', '--micro-batches', '4', '--batch', '1', '--json', *sys.argv[2:]]


def run(*args, expect=0):
    p = subprocess.run([exe, *common, *args], capture_output=True, text=True, timeout=300)
    if p.returncode != expect:
        sys.exit(f'{args}: exit {p.returncode}, expected {expect}\n{p.stdout}\n{p.stderr}')
    return p


def losses(p):
    return [json.loads(line)['loss'] for line in p.stdout.splitlines() if '"step"' in line]


with tempfile.TemporaryDirectory() as d:
    whole = losses(run('--steps', '4'))
    first = losses(run('--steps', '2', '--checkpoint', d))
    rest = losses(run('--steps', '4', '--checkpoint', d, '--resume'))
    if first + rest != whole:
        sys.exit(f'resume differs: {first + rest} vs {whole}')
    refused = run('--steps', '4', '--checkpoint', d, '--resume', '--model', 'small', expect=2)
    if 'model mismatch' not in refused.stderr:
        sys.exit('mismatched checkpoint not refused clearly: ' + refused.stderr)
print('ok')
