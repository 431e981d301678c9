#!/usr/bin/env python3
"""chimera-train --schedule NAME for every schedule name that
`chimera-sched generate --help` lists, plus sequential: each runs (none is
refused), and trains the same model as sequential (equal first loss, last
loss within 1e-5 relative; the exact equivalence is tests/runtime/runtime_train.cpp).
Bad combinations are refused with exit 2, the rule and the value.

  chimera_train_zoo.py CHIMERA_SCHED CHIMERA_TRAIN"""
import json
import re
import subprocess
import sys

sched, train = sys.argv[1], sys.argv[2]


def fail(message):
    sys.exit('FAIL: ' + message)


def schedule_names():
    """The names of --schedule's list, and the aliases the help explains ("dapple = 1f1b")."""
    text = subprocess.run([sched, 'generate', '--help'], capture_output=True, text=True, check=True).stdout
    m = re.search(r'--schedule TEXT:\{([^}]*)\}', text)
    if not m:
        fail('no --schedule list in chimera-sched generate --help:\n' + text)
    names = m.group(1).split(',')
    if len(names) < 11:
        fail(f'only {names} in the help text')
    aliases = dict(re.findall(r'([\w.-]+) = ([\w.-]+)', ' '.join(text.split())))
    return names, aliases


def run(*args, expect=0):
    p = subprocess.run([train, *args], capture_output=True, text=True, timeout=600)
    if p.returncode != expect:
        fail(f'{args}: exit {p.returncode}, expected {expect}\n{p.stdout}\n{p.stderr}')
    return p


def summary(name):
    p = run('--schedule', name, '--stages', '2', '--micro-batches', '4', '--batch', '1', '--steps', '2', '--json')
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith('{')]
    s = lines[-1]['summary']
    if s['steps'] != 2 or not s['replicas_identical'] or s['issue_order_mismatches'] != 0:
        fail(f'{name}: {s}')
    if s['peak_activations_measured'] != s['peak_activations_predicted']:
        fail(f'{name}: peaks {s["peak_activations_measured"]} vs {s["peak_activations_predicted"]}')
    return s


reference = summary('sequential')
names, aliases = schedule_names()
for name in names:
    s = summary(name)
    if s['schedule'] != aliases.get(name, name):
        fail(f'--schedule {name} ran {s["schedule"]}')
    if s['first_loss'] != reference['first_loss']:
        fail(f'{name}: first loss {s["first_loss"]} vs sequential {reference["first_loss"]}')
    if abs(s['last_loss'] - reference['last_loss']) > 1e-5 * abs(reference['last_loss']):
        fail(f'{name}: last loss {s["last_loss"]} vs sequential {reference["last_loss"]}')
    print(f'{name}: ok, loss {s["first_loss"]:.6f} -> {s["last_loss"]:.6f}')

# Bad combinations: exit 2, the rule and the value that broke it.
for args, words in [
    (['--schedule', 'gpipe', '--split-backward'], ['[S1]', 'split backward']),
    (['--schedule', 'zb-v', '--chunks', '3'], ['[S1]', 'chunks=3']),
    (['--schedule', 'dualpipe', '--stages', '2', '--micro-batches', '3'], ['[S1]', 'N=3']),
    (['--schedule', 'dualpipev', '--stages', '4', '--micro-batches', '4'], ['[S1]', 'N=4', 'P=4']),
    (['--schedule', 'interleaved', '--stages', '4', '--micro-batches', '4', '--chunks', '4'], ['8 layers', '16 stages']),
    (['--schedule', 'chimera', '--pipelines', '3'], ['[S1]', 'k=3']),
    (['--schedule', '1f1b', '--scaling', 'doubling'], ['[S1]', "'doubling'"]),
    (['--schedule', 'no-such-schedule'], ['no-such-schedule']),
]:
    p = run(*args, '--steps', '1', expect=2)
    for w in words:
        if w not in p.stderr:
            fail(f'{args}: "{w}" not in the error: {p.stderr}')
print(f'ok: {len(names)} schedules and sequential')
