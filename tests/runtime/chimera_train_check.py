#!/usr/bin/env python3
"""chimera-train end to end through its --json output: exit code 0, one
line per step (0 .. S-1) with a finite loss, a falling loss, a summary with
every report field, the measured activation peaks equal to the predicted
ones, identical replicas and no issue-order mismatch.

  chimera_train_check.py EXE [--against-fp32] ARGS...

--against-fp32: ARGS select --precision bf16; the same run in fp32 must
give losses within the bf16 tolerance of docs/cuda.md (0.05 per step)."""
import json
import math
import subprocess
import sys

SUMMARY_FIELDS = ['schedule', 'backend', 'precision', 'attention', 'steps', 'first_loss', 'last_loss',
                  'held_out_loss', 'tokens_per_s', 'mean_step_seconds', 'peak_activations_measured',
                  'peak_activations_predicted', 'replicas_identical', 'issue_order_mismatches', 'op_seconds',
                  'predicted_step_seconds', 'predicted_step_seconds_core_bound', 'cores', 'median_step_seconds',
                  'p2p', 'cpu_seconds_per_step']
BF16_LOSS_TOLERANCE = 0.05


def fail(message):
    sys.exit('FAIL: ' + message)


def run(exe, args):
    p = subprocess.run([exe, *args, '--json'], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        fail(f'{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}')
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith('{')]
    steps = [x for x in lines if 'step' in x]
    summaries = [x['summary'] for x in lines if 'summary' in x]
    if len(summaries) != 1:
        fail(f'{args}: expected one summary line, got {len(summaries)}\n{p.stdout}')
    return steps, summaries[0]


def check(args, steps, summary):
    expected = int(args[args.index('--steps') + 1])
    if [s['step'] for s in steps] != list(range(expected)):
        fail(f'{args}: step lines {[s["step"] for s in steps]}, expected 0..{expected - 1}')
    losses = [s['loss'] for s in steps]
    if not all(math.isfinite(x) and x > 0 for x in losses):
        fail(f'{args}: losses not finite and positive: {losses}')
    if expected >= 2 and not losses[-1] < losses[0]:
        fail(f'{args}: loss does not fall: {losses}')
    missing = [f for f in SUMMARY_FIELDS if f not in summary]
    if missing:
        fail(f'{args}: summary lacks {missing}')
    if summary['steps'] != expected or summary['first_loss'] != losses[0] or summary['last_loss'] != losses[-1]:
        fail(f'{args}: summary {summary} disagrees with the step lines {losses}')
    if not math.isfinite(summary['held_out_loss']):
        fail(f'{args}: held-out loss {summary["held_out_loss"]}')
    if summary['peak_activations_measured'] != summary['peak_activations_predicted']:
        fail(f'{args}: peaks {summary["peak_activations_measured"]} vs {summary["peak_activations_predicted"]}')
    if summary['replicas_identical'] is not True or summary['issue_order_mismatches'] != 0:
        fail(f'{args}: replicas {summary["replicas_identical"]}, mismatches {summary["issue_order_mismatches"]}')
    check_timing(args, [s['seconds'] for s in steps], summary)
    return losses


def check_timing(args, seconds, summary):
    """The median step leaves out step 0; a backend that times its ops
    (op_seconds not null) predicts with free in-process messages and, after
    two or more steps, reports its CPU per step in and outside ops."""
    later = sorted(seconds[1:] or seconds)
    n = len(later)
    median = later[n // 2] if n % 2 else (later[n // 2 - 1] + later[n // 2]) / 2
    if not math.isclose(summary['median_step_seconds'], median, rel_tol=1e-9):
        fail(f'{args}: median_step_seconds {summary["median_step_seconds"]}, the step lines give {median}')
    if summary['op_seconds'] is None:
        return
    link = summary['p2p']
    if link != {'alpha_seconds': 0, 'beta_seconds_per_byte': 0, 'source': 'in-process copies (free)'}:
        fail(f'{args}: a one-process run charges its messages: {link}')
    cpu = summary['cpu_seconds_per_step']
    if len(seconds) >= 2 and not (cpu and cpu['ops'] > 0 and cpu['outside_ops'] > -1e-3):
        fail(f'{args}: CPU per step {cpu}')


def main():
    exe, args = sys.argv[1], sys.argv[2:]
    against_fp32 = '--against-fp32' in args
    args = [a for a in args if a != '--against-fp32']
    losses = check(args, *run(exe, args))
    if against_fp32:
        i = args.index('--precision')
        fp32 = args[:i + 1] + ['fp32'] + args[i + 2:]
        reference = check(fp32, *run(exe, fp32))
        worst = max(abs(a - b) for a, b in zip(losses, reference))
        if worst > BF16_LOSS_TOLERANCE:
            fail(f'bf16 losses {losses} vs fp32 {reference}: {worst} > {BF16_LOSS_TOLERANCE}')
        print(f'bf16 vs fp32: max loss difference {worst:.2e} (tolerance {BF16_LOSS_TOLERANCE})')
    print('ok', losses)


main()
