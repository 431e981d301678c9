#!/usr/bin/env python3
"""chimera-train --transport mpi under mpirun (docs/distributed.md).

usage: distributed.py CHIMERA_TRAIN CHIMERA_SCHED CASE

CASE:
  same-np4   D=4, W=1 (mpirun -np 4): Chimera k=2 and k=4 (direct), k=2
             doubling, 1F1B, GPipe (eager sync), ZB-V, DualPipe (from
             chimera-sched's JSON), interleaved, GEMS, ZB-H1, DualPipeV,
             Chimera with split backward give the params_sha256 of the
             local run of the same schedule, and every replica stays
             bit-identical.
  same-np8   the first seven with D=4, W=2 (mpirun -np 8); one case
             stage-major, one fp64.
  tcp        one case with --mca btl tcp,self (messages cross TCP).
  mismatch   one rank launched with other options: every rank exits 2
             naming rank 2; a world size that is not D x W: exit 2, the rule.
  kill       one rank killed mid-step: the job ends non-zero naming it, no
             hang; the time from the kill to the end is printed.
  checkpoint a rank dies in a checkpoint write; resume equals the
             uninterrupted run; a partial set is refused; a shard holds
             only its rank's stages; a tampered stage table is refused.
  nccl-train EXE  chimera-train-emulated --backend cuda --transport nccl
             (the CUDA backend on the emulated nccl.h and CUDA) gives the
             digest of the local emulated run: Chimera (eager sync: the
             reductions overlap on a stream of their own) np 4, 1F1B
             W=2 np 8; with 2 emulated GPUs for 4 ranks the job ends,
             naming the rank without a GPU; a stopped rank ends the job
             through its partners' watchdog (the emulated NCCL, as NCCL,
             never times out); with the all-reduces held 300 ms, kernels
             and messages run beside them under eager sync, none under
             end sync (the CUDA emulator's stream trace).
  nccl-file EXE  the same without MPI in chimera-train: --rendezvous
             file:DIR (the ncclUniqueId through a shared file, the control
             plane on NCCL; mpirun only because the emulated nccl.h is built
             on MPI): Chimera np 4 and 1F1B W=2 np 8 give the local digest
             and leave no rendezvous file; the same tag runs again; a
             checkpointed run resumes to the uninterrupted digest; ranks
             launched with different options, or a world that is not
             D x W, all exit 2; a stopped rank ends the job (its partners'
             watchdog aborts their communicators).
  rendezvous-fail EXE  one process as rank 1 of 4 (no mpirun, MPI made
             unusable) times out naming the file and tag without touching
             MPI; a stale file makes rank 0 refuse naming it; missing or
             garbage launcher variables, a missing or bad --run-tag and
             file: with the mpi transport are usage errors (exit 2).
  control-plane EXE  the control planes over MPI and over the emulated
             NCCL (file rendezvous) on 1, 3 and 4 ranks: all-gather, gather,
             broadcast of variable lengths, barrier (tests/distributed/
             control_plane.cpp); a rank silent in a collective of the NCCL
             plane, or one that never joins its communicator, ends the job
             after the timeout; so does a rank that never creates or never
             splits the nccl transport's communicators.
  two-nodes [EXE]  the ranks on two nodes made of network namespaces on
             this machine (mpirun starts the second through a launch agent;
             TCP between them): the mpi transport (Chimera np 4, 1F1B W=2
             np 8) and, with EXE (chimera-train-emulated), the nccl
             transport with 2 GPUs per node, under MPI and with the file
             rendezvous, give the local digest; a rank killed on the
             second node ends the job, named. Needs root and iproute2.
  nccl-gpu   chimera-train with the real NCCL: 1-rank smoke run on a GPU,
             under mpirun and with --rendezvous file:DIR (skip, 77, without
             one).
  nccl EXE   the emulated nccl.h (mpirun -np 4): semantics (with
             ncclAllGather, ncclBroadcast), a wrong unique id refused on every
             rank, and a wrongly grouped exchange that times out on both ranks.
  reduce EXE the replica reduction (tests/distributed/mpi_reduce.cpp) under
             mpirun -np 3 (uneven chunks) and -np 4: chunking, bitwise
             equality with the fixed-order sum.
  hang       one rank stopped mid-step: the others' watchdog names it and
             aborts the job.
Exit 77 (skip) without mpirun (except rendezvous-fail, which needs none)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

train, sched, case = sys.argv[1:4]
mpirun = shutil.which('mpirun')
if not mpirun and case != 'rendezvous-fail':
    print('mpirun not found: skipped')
    sys.exit(77)
# Running as root needs OpenMPI's consent; two cores need oversubscription.
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1', OMPI_MCA_rmaps_base_oversubscribe='1')
common = ['--steps', '2', '--batch', '1', '--json']
scratch = tempfile.mkdtemp()


def mpi(np, *extra):
    return [mpirun, '-np', str(np), '--oversubscribe', *extra]


# OpenMPI 4.1's mpirun now and then fails in its own teardown when ranks
# end with an error (docs/distributed.md#faults): a crash in its PMIx log
# handler, or its libevent signal pipe breaking, and its exit code is then
# its own, not the ranks'. Seen a few times in dozens of CI runs.
MPIRUN_FAULTS = ('pmix_server_log_fn', 'evsig_cb: recv: Bad file descriptor')


def run(cmd, expect=0, timeout=300, extra_env=None, base_env=None):
    """`cmd`, which must exit `expect`. A run expected to fail (a refusal or
    a fault: nothing durable is left half done) whose mpirun failed in its
    own teardown is tried again, twice at most."""
    for _ in range(3):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=dict(base_env or env, **(extra_env or {})))
        fault = next((f for f in MPIRUN_FAULTS if f in p.stderr), None)
        if p.returncode == expect or expect == 0 or fault is None:
            break
        print(f'mpirun failed in its own teardown ({fault}; exit {p.returncode}): once more')
    if p.returncode != expect:
        sys.exit(f'{" ".join(cmd)}: exit {p.returncode}, expected {expect}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}')
    return p


def summary(p):
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith('{"summary"')]
    if len(lines) != 1:
        sys.exit(f'expected one summary line, got {len(lines)}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}')
    return lines[0]['summary']


def schedule_file(name):
    path = os.path.join(scratch, name + '.json')
    with open(path, 'w') as f:
        f.write(run([sched, 'generate', '--schedule', name, '--stages', '4', '--micro-batches', '8', '--format', 'json']).stdout)
    return ['--schedule-file', path]


def cases():
    return [
        ['--schedule', 'chimera', '--stages', '4', '--micro-batches', '4'],
        ['--schedule', 'chimera', '--stages', '4', '--micro-batches', '8', '--pipelines', '4'],
        ['--schedule', 'chimera', '--stages', '4', '--micro-batches', '8', '--scaling', 'doubling'],
        ['--schedule', '1f1b', '--stages', '4', '--micro-batches', '8'],
        ['--schedule', 'gpipe', '--stages', '4', '--micro-batches', '4', '--sync', 'eager'],
        schedule_file('zb-v'),
        schedule_file('dualpipe'),
    ]


def same_answer(args, np, mpi_extra=(), train_extra=(), transport='mpi', rank_extra=(), launcher=mpi):
    local = summary(run([train, *args, *common, *train_extra]))
    distributed = summary(run(launcher(np, *mpi_extra) + [train, *args, *common, *train_extra, '--transport', transport,
                                                          *rank_extra]))
    label = ' '.join(os.path.basename(a) for a in args + list(train_extra))
    if distributed['transport'] != transport or distributed['ranks'] != np:
        sys.exit(f'{label}: not an mpi run of {np} ranks: {distributed}')
    if distributed['params_sha256'] != local['params_sha256']:
        sys.exit(f'{label}: mpi digest {distributed["params_sha256"]} != local {local["params_sha256"]}')
    for key in ('first_loss', 'last_loss', 'peak_activations_measured'):
        if distributed[key] != local[key]:
            sys.exit(f'{label}: {key} differs: mpi {distributed[key]}, local {local[key]}')
    if not (distributed['replicas_identical'] and local['replicas_identical']):
        sys.exit(f'{label}: replicas differ')
    link = distributed['p2p']
    if transport == 'mpi' and not (link['source'].startswith('measured') and 0 < link['alpha_seconds'] < 0.1
                                   and 0 <= link['beta_seconds_per_byte'] < 1e-6):
        sys.exit(f'{label}: the prediction of an mpi run takes the measured link, got {link}')
    print(f'{label}: {transport} np {np}: {local["params_sha256"]}')
    return local['params_sha256']


def expect_failure(cmd, code, needle, timeout=120, extra_env=None):
    start = time.monotonic()
    p = run(cmd, expect=code, timeout=timeout, extra_env=extra_env)
    if needle not in p.stderr:
        sys.exit(f'{" ".join(cmd)}: stderr lacks {needle!r}:\n{p.stderr[-3000:]}')
    return p, time.monotonic() - start


def long_job(watchdog_ms, exe=None, transport=('--transport', 'mpi'), extra_env=None, launcher=mpi):
    """A long run (4 ranks); returns the process and the ranks' pids in rank order."""
    args = ['--schedule', 'chimera', '--stages', '4', '--micro-batches', '4', '--steps', '100000', '--batch', '1',
            '--json', *transport, '--watchdog-ms', str(watchdog_ms)]
    env_ranks = dict(env, CHIMERA_PID_DIR=scratch, **(extra_env or {}))
    record_pid = 'echo $$ > "$CHIMERA_PID_DIR/rank.$OMPI_COMM_WORLD_RANK"; exec "$0" "$@"'
    p = subprocess.Popen(launcher(4, '-x', 'CHIMERA_PID_DIR') + ['sh', '-c', record_pid, exe or train, *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_ranks,
                         start_new_session=True)
    line = p.stdout.readline()  # a step ran: every rank is inside the training loop
    if '"step"' not in line:
        p.kill()
        sys.exit('no step line: ' + line + p.stderr.read())
    pids = [int(open(os.path.join(scratch, f'rank.{r}')).read()) for r in range(4)]
    return p, pids


def end_of(p, what, limit):
    start = time.monotonic()
    try:
        _, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        sys.exit(f'the job still runs {limit} s after {what}')
    elapsed = time.monotonic() - start
    if p.returncode == 0:
        sys.exit(f'the job exited 0 after {what}')
    print(f'{what}: the job ended with exit {p.returncode} after {elapsed:.2f} s')
    return err, elapsed


def kill_mid_step(what='SIGKILL of rank 3', launcher=mpi):
    """Rank 3 dies (SIGKILL): OpenMPI notices the lost process, names it and
    ends every other rank, well within the watchdog. OpenMPI 4.1's mpirun
    itself now and then crashes in its PMIx log handler while it tears the
    job down (docs/distributed.md#faults), and the name is lost with it:
    only that known crash earns another try, twice at most."""
    for _ in range(3):
        p, pids = long_job(20000, launcher=launcher)
        os.kill(pids[3], signal.SIGKILL)
        err, elapsed = end_of(p, what, 60)
        if not (p.returncode == -signal.SIGSEGV and MPIRUN_FAULTS[0] in err and 'process rank 3' not in err):
            break
        print('mpirun crashed in pmix_server_log_fn (a known OpenMPI 4.1 fault): once more')
    if 'process rank 3' not in err or elapsed > 20:
        sys.exit(f'{what}: the lost rank is not named, or the end took longer than the watchdog:\n' + err[-3000:])


def stop_rank_3(p, pids, what):
    """Stops rank 3 (SIGSTOP: alive, silent); the job must end; its stderr."""
    os.kill(pids[3], signal.SIGSTOP)
    err, _ = end_of(p, what, 60)
    if os.path.exists(f'/proc/{pids[3]}'):
        os.kill(pids[3], signal.SIGCONT)
    return err


def hang_mid_step():
    """Rank 3 stops (SIGSTOP: alive, silent): the other ranks' watchdog
    (3 s) names what they wait for from MPI rank 3 and aborts the job."""
    err = stop_rank_3(*long_job(3000), 'SIGSTOP of rank 3')
    if 'for 3000 ms (a rank died' not in err or 'MPI rank 3' not in err:
        sys.exit('the watchdog did not name the silent rank:\n' + err[-3000:])
    print(err[-1500:])


def checkpoints():
    """A rank dies while writing the checkpoint after step 2: the step has
    no manifest, --resume takes step 2's and ends bitwise equal to the
    uninterrupted run; a missing shard of the newest complete step, or no
    complete step at all, is refused on every rank (exit 2)."""
    args = ['--schedule', 'chimera', '--stages', '4', '--micro-batches', '4', '--batch', '1', '--json',
            '--transport', 'mpi', '--data-parallel', '2', '--steps', '4']
    whole = summary(run(mpi(8) + [train, *args]))['params_sha256']
    d = os.path.join(scratch, 'ck')
    p = subprocess.run(mpi(8) + [train, *args, '--checkpoint', d], capture_output=True, text=True, timeout=300,
                       env=dict(env, CHIMERA_TEST_DIE_IN_CHECKPOINT='3:5'))
    if p.returncode == 0:
        sys.exit('the run survived its rank 5 dying in a checkpoint')
    if os.path.exists(os.path.join(d, 'step-00000003', 'manifest')) or not os.path.exists(
            os.path.join(d, 'step-00000002', 'manifest')):
        sys.exit(f'expected step 2 complete and step 3 without manifest: {sorted(os.walk(d))}')
    os.mkdir(os.path.join(d, 'step-backup12'))  # not a step of ours: ignored
    resumed = run(mpi(8) + [train, *args, '--checkpoint', d, '--resume'])
    steps = [json.loads(line)['step'] for line in resumed.stdout.splitlines() if '"step"' in line]
    if steps != [2, 3] or summary(resumed)['params_sha256'] != whole:
        sys.exit(f'resumed run: steps {steps}, digest {summary(resumed)["params_sha256"]} vs uninterrupted {whole}')
    print(f'killed in checkpoint 3, resumed from 2: {whole}')
    # A fresh run into a directory with steps would let a later --resume
    # take the earlier run's newest step (or mix shards): refused.
    p, _ = expect_failure(mpi(8) + [train, *args, '--checkpoint', d], 2,
                          f'--checkpoint {d} holds the steps of an earlier run ({d}/step-00000003, '
                          f'{d}/step-00000004): continue that run with --resume')
    if p.stderr.count('holds the steps of an earlier run') != 8:
        sys.exit('not every rank refused the used directory:\n' + p.stderr)
    torn = os.path.join(scratch, 'ck-torn')
    os.makedirs(os.path.join(torn, 'step-00000001', 'rank-0'))  # a first checkpoint that never completed
    expect_failure(mpi(8) + [train, *args, '--checkpoint', torn], 2,
                   f'--checkpoint {torn} holds incomplete steps of an earlier run ({torn}/step-00000001), which no '
                   'run can resume: delete them')
    not_a_directory = os.path.join(scratch, 'a-file')
    open(not_a_directory, 'w').close()
    expect_failure(mpi(8) + [train, *args, '--checkpoint', not_a_directory], 2,
                   f'--checkpoint {not_a_directory} is not a directory')
    # Resuming at or past --steps: nothing to train; said, exit 0 (a
    # requeued job that had finished), here and locally.
    done = run(mpi(8) + [train, *args, '--checkpoint', d, '--resume']).stdout.splitlines()
    if done != [json.dumps({'nothing_to_train': {'checkpoint': f'{d}/step-00000004', 'next_step': 4, 'steps': 4}},
                           separators=(',', ':'))]:
        sys.exit(f'resume at --steps: {done}')
    local = ['--schedule', '1f1b', '--stages', '2', '--micro-batches', '2', '--batch', '1', '--steps', '2',
             '--checkpoint', os.path.join(scratch, 'ck-local')]
    run([train, *local])
    said = run([train, *local, '--resume']).stdout
    if 'nothing to train: ' + os.path.join(scratch, 'ck-local', 'checkpoint.bin') + ' continues at step 2' not in said:
        sys.exit('local resume at --steps: ' + said)
    two = ['--schedule', '1f1b', '--stages', '2', '--micro-batches', '2', '--batch', '1', '--transport', 'mpi',
           '--checkpoint', os.path.join(scratch, 'ck-two')]
    run(mpi(2) + [train, *two, '--steps', '1'])
    header = run(mpi(2) + [train, *two, '--steps', '2', '--resume']).stdout
    if f'resumed from {scratch}/ck-two/step-00000001 at step 1' not in header:
        sys.exit('the resumed run does not name the step it resumed from:\n' + header)
    print('used directory refused; a resume with nothing to train says so; a resume names its step')
    os.remove(os.path.join(d, 'step-00000004', 'rank-1', 'checkpoint.bin'))
    refused, _ = expect_failure(mpi(8) + [train, *args, '--checkpoint', d, '--resume'], 2,
                                'step-00000004 is incomplete: rank 1 cannot read its shard')
    if refused.stderr.count('is incomplete: rank 1') != 8:
        sys.exit('not every rank refused the partial set:\n' + refused.stderr)
    expect_failure(mpi(8) + [train, *args, '--checkpoint', os.path.join(scratch, 'empty'), '--resume'], 2,
                   'no complete checkpoint to resume from')
    print('partial set and missing checkpoint refused')


def fnv1a(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def shard_sizes(d, step, ranks):
    return [os.path.getsize(os.path.join(d, f'step-{step:08d}', f'rank-{r}', 'checkpoint.bin')) for r in range(ranks)]


def compact_shards():
    """A shard holds only its rank's stages: with 1F1B D=4 (one stage per
    rank) every shard is under half the local whole-model checkpoint and
    the four add up to it (plus their headers); with Chimera k=2 (two
    stages per rank) they add up to twice it. A shard whose stage table was
    changed (stage 2 -> 3, checksum recomputed) is refused naming the rank
    and both stage sets; one changed without its checksum as corrupted;
    another rank's shard as foreign, a format-1 (whole-model) file by name."""
    base = ['--stages', '4', '--micro-batches', '4', '--batch', '1', '--json', '--steps', '2']
    for schedule, copies in (('1f1b', 1), ('chimera', 2)):
        local, d = os.path.join(scratch, 'whole-' + schedule), os.path.join(scratch, 'compact-' + schedule)
        run([train, '--schedule', schedule, *base, '--checkpoint', local])
        run(mpi(4) + [train, '--schedule', schedule, *base, '--transport', 'mpi', '--checkpoint', d])
        whole, shards = os.path.getsize(os.path.join(local, 'checkpoint.bin')), shard_sizes(d, 2, 4)
        if abs(sum(shards) - copies * whole) > 4 * 200 or (copies == 1 and max(shards) >= 0.5 * whole):
            sys.exit(f'{schedule}: shards {shards} bytes against a whole-model checkpoint of {whole}')
        print(f'{schedule} D=4: shards {shards} bytes, whole-model checkpoint {whole}')
    path = os.path.join(d, 'step-00000002', 'rank-2', 'checkpoint.bin')
    data = bytearray(open(path, 'rb').read())
    stage_at = 8 + 4 + 4 + 24 + 8 + 8 + 4 + 4 + 4  # magic, format, value size, model, step, seed, rank, D, count
    held = [int.from_bytes(data[stage_at + 20 * i:stage_at + 20 * i + 4], 'little') for i in range(2)]
    if held != [1, 2]:
        sys.exit(f'chimera D=4 rank 2 should hold stages 1, 2; its shard says {held}')
    data[stage_at + 20] = 3  # stage 2 -> 3: the table now says 1, 3
    open(path, 'wb').write(bytes(data[:-8]) + fnv1a(data[:-8]).to_bytes(8, 'little'))
    resume = mpi(4) + [train, '--schedule', 'chimera', *base, '--transport', 'mpi', '--checkpoint', d, '--resume']
    expect_failure(resume, 2, "rank 2's shard holds stage 3 where the schedule gives rank 2 stage 2 "
                              "(shard: stages 1, 3; schedule: stages 1, 2)")
    open(path, 'wb').write(bytes(data))  # the same change under the original checksum
    expect_failure(resume, 2, 'checksum mismatch')
    shutil.copy(os.path.join(d, 'step-00000002', 'rank-1', 'checkpoint.bin'), path)
    expect_failure(resume, 2, 'rank-2/checkpoint.bin: written by rank 1, not 2')
    shutil.copy(os.path.join(scratch, 'whole-chimera', 'checkpoint.bin'), path)
    expect_failure(resume, 2, 'rank-2/checkpoint.bin: a format-1 shard (a whole-model file per rank')
    print('tampered stage table, checksum, foreign shard, format-1 shard refused')


def nccl_emulator(exe):
    print(run(mpi(4) + [exe, 'semantics']).stdout.strip())
    print('non-blocking communicators:', run(mpi(4) + [exe, 'nonblocking']).stdout.strip())
    p = run(mpi(4) + [exe, 'wrong-id'])
    if p.stderr.count('the ranks passed different unique ids') != 4:
        sys.exit('a wrong unique id was not refused on every rank:\n' + p.stderr)
    print('wrong unique id: ncclCommInitRank fails on every rank')
    start = time.monotonic()
    p = run(mpi(4) + [exe, 'deadlock'], extra_env={'CHIMERA_NCCL_EMULATOR_TIMEOUT_MS': '1500'})
    if p.stderr.count('no progress for 1500 ms') != 2:
        sys.exit('the ungrouped exchange was not reported as a deadlock on ranks 0 and 1:\n' + p.stderr)
    print(f'ungrouped exchange: deadlock reported on both ranks, job ended after {time.monotonic() - start:.2f} s')


def nccl_watchdog(exe, transport, what):
    """Rank 3 stops (SIGSTOP: alive, silent) with the nccl transport. The
    emulated NCCL waits for ever, as NCCL does: the host-side watchdog
    (3 s without a comm group ending) of its partners names the group and
    its peer, aborts the communicators (the waiting work returns) and ends
    the job."""
    p, pids = long_job(3000, exe, transport)
    err = stop_rank_3(p, pids, f'SIGSTOP of rank 3 (nccl, {what})')
    # The first rank to give up ends the job: a partner of rank 3, or a
    # rank further along that waits for such a partner (named either way).
    report = re.search(r'no NCCL group ended for 3000 ms \(.*?\); still waiting for: .*(from|to) rank [0-3]', err)
    if not report:
        sys.exit(f'nccl, {what}: no watchdog report naming the group and its peer:\n' + err[-3000:])
    print(report.group(0))


def work_beside_reductions(exe, sync):
    """Chimera D=4 on 4 ranks over the nccl transport with every all-reduce
    held 300 ms; from the CUDA emulator's stream trace, how many kernels
    (compute) and point-to-point groups of other streams started while an
    all-reduce ran, over all ranks."""
    d = tempfile.mkdtemp(dir=scratch)
    run(mpi(4) + [exe, '--backend', 'cuda', '--transport', 'nccl', '--schedule', 'chimera', '--stages', '4',
                  '--micro-batches', '4', '--sync', sync, *common],
        extra_env={'CHIMERA_EMULATOR_TRACE': d, 'CHIMERA_NCCL_EMULATOR_REDUCE_DELAY_MS': '300'})
    counts = {'kernels': 0, 'p2p groups': 0}
    traces = os.listdir(d)
    if len(traces) != 4:
        sys.exit(f'--sync {sync}: expected a stream trace per rank, got {traces}')
    for name in traces:
        items = [line.split(' ', 3) for line in open(os.path.join(d, name)).read().splitlines()]
        items = [(stream, int(start), int(end), what) for stream, start, end, what in items]
        for stream, start, end, what in items:
            if what != 'ncclAllReduce':
                continue
            for other, begins, _, kind in items:
                if other != stream and start < begins < end:
                    if kind == 'nccl':
                        counts['p2p groups'] += 1
                    elif not kind.startswith(('cuda', 'nccl', 'work')):
                        counts['kernels'] += 1
    return counts


def nccl_overlap(exe):
    """Eager gradient sync overlaps the backward passes after it and their
    messages (reductions on a stream of their own, joined before the
    optimizer); with --sync end nothing runs beside the reductions."""
    eager, end = work_beside_reductions(exe, 'eager'), work_beside_reductions(exe, 'end')
    if eager['kernels'] == 0 or eager['p2p groups'] == 0:
        sys.exit(f'eager sync: nothing ran beside the held all-reduces: {eager}')
    if end['kernels'] != 0:
        sys.exit(f'--sync end: kernels ran beside the all-reduces, which come after the last backward pass: {end}')
    print(f'beside the held all-reduces: eager {eager}, end {end}')


class two_nodes:
    """Two nodes on one machine: two network namespaces joined by a veth
    pair (addresses from TEST-NET-1, 192.0.2.0/24, which exist only inside
    them), each process with its own hostname (a UTS namespace), so OpenMPI
    sees two hosts. mpirun runs on the first and starts its daemon on the
    second through a launch agent (`ip netns exec`) where a cluster uses
    ssh; ranks on one node use shared memory, between nodes TCP over the
    veth pair. Needs root, iproute2 and unshare (skip, 77, without)."""

    def __init__(self):
        if os.geteuid() != 0 or not shutil.which('ip') or not shutil.which('unshare'):
            print('two nodes need root, ip (iproute2) and unshare: skipped')
            sys.exit(77)
        tag = str(os.getpid())[-7:]
        self.hosts = {'192.0.2.1': f'chim{tag}a', '192.0.2.2': f'chim{tag}b'}
        self.agent = os.path.join(scratch, 'netns-agent')
        with open(self.agent, 'w') as f:
            f.write('#!/bin/sh\n# mpirun\'s launch agent: HOST COMMAND... -> COMMAND in that node\'s namespaces\n'
                    'host=$1; shift\ncase $host in\n' +
                    ''.join(f'  {ip}) node={ns};;\n' for ip, ns in self.hosts.items()) +
                    '  *) echo "netns-agent: unknown host $host" >&2; exit 255;;\nesac\n'
                    'exec ip netns exec "$node" unshare --uts sh -c "hostname $node && $*"\n')
        os.chmod(self.agent, 0o755)

    def __enter__(self):
        a, b = self.hosts.values()
        try:
            self.sh('ip', 'netns', 'add', a)
            self.sh('ip', 'netns', 'add', b)
            self.sh('ip', 'link', 'add', a, 'type', 'veth', 'peer', 'name', b)
            for ip, ns in self.hosts.items():
                self.sh('ip', 'link', 'set', ns, 'netns', ns)
                self.sh('ip', '-n', ns, 'addr', 'add', ip + '/24', 'dev', ns)
                self.sh('ip', '-n', ns, 'link', 'set', ns, 'up')
                self.sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        except subprocess.CalledProcessError as e:
            self.__exit__()
            print(f'cannot make two network namespaces here ({e.stderr.strip()}): skipped')
            sys.exit(77)
        return self

    def __exit__(self, *_):
        for ns in self.hosts.values():
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)

    @staticmethod
    def sh(*cmd):
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    def mpirun(self, np, *extra):
        """mpirun on the first node, np/2 ranks on each."""
        first = next(iter(self.hosts.values()))
        hosts = ','.join(f'{ip}:{np // 2}' for ip in self.hosts)
        return ['ip', 'netns', 'exec', first, 'unshare', '--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', first,
                mpirun, '-np', str(np), '--host', hosts, '--bind-to', 'none', '--mca', 'plm_rsh_agent', self.agent,
                '--mca', 'oob_tcp_if_include', '192.0.2.0/24', '--mca', 'btl_tcp_if_include', '192.0.2.0/24',
                # ranks print their own TCP error reports: mpirun's PMIx log
                # handler can crash on them while a job is torn down
                '--mca', 'orte_base_help_aggregate', '0', *extra]


def across_two_nodes(emulated):
    """The same digest as the local run with the ranks on two nodes: the mpi
    transport (Chimera np 4, 1F1B W=2 np 8) and, on the emulated NCCL with
    2 GPUs per node (4 ranks on one such node are refused: nccl-train), the
    nccl transport under MPI and with the file rendezvous in a directory
    both nodes see; a rank killed on the second node ends the job, named."""
    with two_nodes() as nodes:
        where = run(nodes.mpirun(4) + ['sh', '-c', 'echo $OMPI_COMM_WORLD_RANK $OMPI_COMM_WORLD_LOCAL_RANK $(hostname)'])
        placed = sorted(line.split() for line in where.stdout.splitlines())
        a, b = nodes.hosts.values()
        if placed != [['0', '0', a], ['1', '1', a], ['2', '0', b], ['3', '1', b]]:
            sys.exit(f'ranks (rank, local rank, host) not spread over the two nodes: {placed}')
        print(f'two nodes: ranks 0, 1 on {a}, ranks 2, 3 on {b}')
        chimera = ['--schedule', 'chimera', '--stages', '4', '--micro-batches', '4']
        same_answer(chimera, 4, launcher=nodes.mpirun)
        same_answer(['--schedule', '1f1b', '--stages', '4', '--micro-batches', '4', '--data-parallel', '2'], 8,
                    launcher=nodes.mpirun)
        # A rank of the second node dies: its node's daemon tells mpirun,
        # which names it and ends the ranks on both nodes.
        kill_mid_step('SIGKILL of rank 3 (on the second node)', nodes.mpirun)
        if emulated:
            global train
            train, cuda = emulated, ['--backend', 'cuda']
            gpus = ('-x', 'CHIMERA_EMULATED_GPUS=2')
            same_answer(chimera + ['--sync', 'eager'], 4, gpus, cuda, 'nccl', launcher=nodes.mpirun)
            rdzv = ['--rendezvous', 'file:' + tempfile.mkdtemp(dir=scratch), '--run-tag', 'two-nodes']
            same_answer(chimera, 4, gpus, cuda, 'nccl', rdzv, launcher=nodes.mpirun)


def nccl_file(exe):
    """--rendezvous file:DIR under mpirun (the emulated nccl.h's transport)."""
    rdzv = tempfile.mkdtemp(dir=scratch)
    cuda = ['--backend', 'cuda']

    def by_file(tag):
        return ['--rendezvous', 'file:' + rdzv, '--run-tag', tag]

    def no_file_left(what):
        if os.listdir(rdzv):
            sys.exit(f'{what}: the rendezvous directory still holds {os.listdir(rdzv)}')

    chimera = ['--schedule', 'chimera', '--stages', '4', '--micro-batches', '4', '--sync', 'eager']
    for again in range(2):  # a clean run removes its file: the same tag runs again
        same_answer(chimera, 4, train_extra=cuda, transport='nccl', rank_extra=by_file('T'))
        no_file_left(f'chimera np 4 (run {again + 1})')
    same_answer(['--schedule', '1f1b', '--stages', '4', '--micro-batches', '4', '--data-parallel', '2'], 8,
                train_extra=cuda, transport='nccl', rank_extra=by_file('dp2'))
    no_file_left('1f1b np 8')
    # Checkpoints (barrier, broadcast, all-gather on the NCCL control plane).
    base = [exe, *cuda, *chimera, '--batch', '1', '--json']
    whole = summary(run(base + ['--steps', '3']))['params_sha256']
    d = os.path.join(scratch, 'ck-file')
    run(mpi(4) + base + ['--steps', '2', '--checkpoint', d, '--transport', 'nccl', *by_file('ck1')])
    resumed = run(mpi(4) + base + ['--steps', '3', '--checkpoint', d, '--resume', '--transport', 'nccl',
                                   *by_file('ck2')])
    steps = [json.loads(line)['step'] for line in resumed.stdout.splitlines() if '"step"' in line]
    if steps != [2] or summary(resumed)['params_sha256'] != whole:
        sys.exit(f'file-mode resume: steps {steps}, digest {summary(resumed)["params_sha256"]} vs {whole}')
    print(f'file mode: checkpoint after step 2, resumed to 3: {whole}')
    # The digest check on the NCCL control plane: every rank exits 2.
    opts = [*cuda, '--schedule', 'chimera', '--stages', '4', '--steps', '1', '--batch', '1', '--transport', 'nccl',
            *by_file('mismatch')]
    p, seconds = expect_failure(mpi(2) + [exe, *opts, '--micro-batches', '4', ':', '-np', '2', exe, *opts,
                                          '--micro-batches', '8'], 2, 'rank 2 runs a different configuration')
    if p.stderr.count('rank 2 runs a different') != 4:
        sys.exit('not every rank reported the mismatch:\n' + p.stderr)
    no_file_left('mismatch')
    print(f'file mode: mismatch: every rank exits 2 in {seconds:.2f} s')
    p, _ = expect_failure(mpi(3) + [exe, *opts, '--micro-batches', '4'], 2,
                          'the world has 3 ranks; the schedule needs D x W = 4 x 1 = 4')
    if p.stderr.count('the world has 3 ranks') != 3:
        sys.exit('file mode: not every rank refused the world size:\n' + p.stderr)
    no_file_left('world size')
    nccl_watchdog(exe, (*cuda, '--transport', 'nccl', *by_file('hang')), 'file rendezvous')
    no_file_left('hang')


def rendezvous_failures(exe):
    """--rendezvous file: refusals, each process alone (no mpirun)."""
    d = tempfile.mkdtemp(dir=scratch)
    base = [exe, '--backend', 'cuda', '--transport', 'nccl', '--schedule', 'chimera', '--stages', '4',
            '--micro-batches', '4', '--steps', '1', '--batch', '1', '--rendezvous', 'file:' + d]
    launchers = ('CHIMERA_', 'SLURM_', 'OMPI_COMM_WORLD_', 'RANK', 'WORLD_SIZE', 'LOCAL_RANK')
    clean = {k: v for k, v in env.items() if not k.startswith(launchers)}

    def refused(cmd, code, needles, extra=None, limit=60):
        start = time.monotonic()
        p = run(cmd, expect=code, timeout=limit, extra_env=extra, base_env=clean)
        for needle in needles:
            if needle not in p.stderr:
                sys.exit(f'{" ".join(cmd)}: stderr lacks {needle!r}:\n{p.stderr[-3000:]}')
        return p, time.monotonic() - start

    # Rank 1 of 4 whose rank 0 never comes. MPI is made unusable
    # (OMPI_MCA_pml=bogus: MPI_Init would abort): the path must not touch it.
    late = os.path.join(d, 'chimera-late.nccl-id')
    p, seconds = refused(base + ['--run-tag', 'late', '--rendezvous-timeout', '2'], 1,
                         [f'rank 1 timed out after 2 s waiting for {late}', "run tag 'late'",
                          'not shared between the nodes'],
                         {'CHIMERA_RANK': '1', 'CHIMERA_WORLD_SIZE': '4', 'OMPI_MCA_pml': 'bogus'})
    if seconds > 30 or 'MPI' in p.stderr:
        sys.exit(f'timeout: took {seconds:.1f} s, or MPI was touched:\n{p.stderr[-3000:]}')
    print(f'rendezvous timeout (2 s): exit 1 after {seconds:.2f} s')
    stale = os.path.join(d, 'chimera-stale.nccl-id')
    with open(stale, 'w') as f:
        f.write('left by a crashed run')
    refused(base + ['--run-tag', 'stale'], 1, [f'{stale} already exists', 'choose another --run-tag'],
            {'CHIMERA_RANK': '0', 'CHIMERA_WORLD_SIZE': '4'})
    refused(base + ['--run-tag', 'stale'], 1, [stale, 'bad magic'], {'CHIMERA_RANK': '2', 'CHIMERA_WORLD_SIZE': '4'})
    listed = 'SLURM_PROCID SLURM_NTASKS SLURM_LOCALID'
    for extra, needle in [({}, 'none of the launcher variables is set'),
                          ({'CHIMERA_RANK': 'x', 'CHIMERA_WORLD_SIZE': '4'}, "CHIMERA_RANK='x' is not a number"),
                          ({'RANK': '4', 'WORLD_SIZE': '4', 'LOCAL_RANK': '0'}, 'are inconsistent')]:
        refused(base + ['--run-tag', 'env'], 2, [needle, listed], extra)
    refused(base, 2, ['needs --run-tag TAG'], {'CHIMERA_RANK': '0', 'CHIMERA_WORLD_SIZE': '4'})
    refused(base + ['--run-tag', '../x'], 2, ['[A-Za-z0-9._-]'])
    refused(base + ['--run-tag', 'x', '--rendezvous-timeout', '0'], 2, ['--rendezvous-timeout must be > 0'])
    refused([exe, '--transport', 'nccl', '--backend', 'cuda', '--rendezvous-timeout', '-1'], 2,
            ['--rendezvous-timeout must be > 0 seconds (got -1'])  # it bounds the transport's communicators too
    refused(base[:-2] + ['--rendezvous', 'files:' + d], 2, ['mpi, or file:DIR'])
    refused([exe, '--transport', 'mpi', '--rendezvous', 'file:' + d, '--run-tag', 'x'], 2,
            ['--rendezvous file: runs the nccl transport only'])
    if sorted(os.listdir(d)) != ['chimera-stale.nccl-id']:
        sys.exit(f'unexpected files left: {os.listdir(d)}')
    print('stale file, launcher variables, run tag, transport: refused')


if case == 'same-np4':
    zoo = [['--schedule', 'interleaved', '--stages', '4', '--micro-batches', '8'],
           ['--schedule', 'gems', '--stages', '4', '--micro-batches', '4'],
           ['--schedule', 'zb-h1', '--stages', '4', '--micro-batches', '8'],
           ['--schedule', 'dualpipev', '--stages', '4', '--micro-batches', '8'],
           ['--schedule', 'chimera', '--stages', '4', '--micro-batches', '4', '--split-backward']]
    for args in cases() + zoo:
        same_answer(args, 4)
elif case == 'same-np8':
    for args in cases():
        same_answer(args + ['--data-parallel', '2'], 8)
    same_answer(['--schedule', 'chimera', '--stages', '4', '--micro-batches', '4', '--data-parallel', '2'], 8,
                train_extra=['--rank-layout', 'stage-major'])
    same_answer(['--schedule', 'chimera', '--stages', '4', '--micro-batches', '8', '--pipelines', '4',
                 '--data-parallel', '2'], 8, train_extra=['--fp64'])
elif case == 'tcp':
    same_answer(['--schedule', 'chimera', '--stages', '4', '--micro-batches', '4', '--data-parallel', '2'], 8,
                mpi_extra=['--mca', 'btl', 'tcp,self'])
elif case == 'mismatch':
    base = ['--schedule', 'chimera', '--stages', '4', '--steps', '2', '--batch', '1', '--transport', 'mpi']
    cmd = mpi(2) + [train, *base, '--micro-batches', '4', ':', '-np', '2', train, *base, '--micro-batches', '8']
    p, seconds = expect_failure(cmd, 2, 'rank 2 runs a different configuration (--micro-batches) than rank 0')
    if p.stderr.count('rank 2 runs a different') != 4:
        sys.exit('not every rank reported the mismatch:\n' + p.stderr)
    print(f'mismatch: every rank exits 2 in {seconds:.2f} s')
    # Options that decide which collectives run: a rank that differs would
    # wait in one the others never call, so they are compared too.
    one = ['--schedule', '1f1b', '--stages', '2', '--micro-batches', '4', '--steps', '1', '--batch', '1',
           '--transport', 'mpi']
    ckpt = os.path.join(scratch, 'mismatch-checkpoint')
    for differs, first, second in [('--data-parallel', ['--data-parallel', '2'], ['--data-parallel', '1']),
                                   ('--checkpoint', ['--checkpoint', ckpt], []),  # set or not; the path may differ
                                   ('--resume', ['--checkpoint', ckpt, '--resume'], ['--checkpoint', ckpt]),
                                   ('--profile-out', ['--profile-out', os.path.join(scratch, 'p.json')], [])]:
        expect_failure(mpi(2) + [train, *one, *first, ':', '-np', '2', train, *one, *second], 2,
                       f'rank 2 runs a different configuration ({differs}) than rank 0', timeout=60)
    print('a different --data-parallel, --checkpoint, --resume or --profile-out: every rank exits 2')
    expect_failure(mpi(3) + [train, *base, '--micro-batches', '4'], 2,
                   'the world has 3 ranks; the schedule needs D x W = 4 x 1 = 4')
    print('world size: refused')
    expect_failure([train, *base, '--micro-batches', '4'], 2, 'the world has 1 ranks')
    print('started without mpirun (one rank): refused')
    expect_failure([train, *base[:-2], '--micro-batches', '4', '--transport', 'nccl'], 2,
                   '--transport nccl runs the cuda backend (--backend cuda)')
elif case == 'kill':
    kill_mid_step()
elif case == 'checkpoint':
    checkpoints()
    compact_shards()
elif case == 'nccl-train':
    # sys.argv[4]: chimera-train-emulated (the CUDA backend on the CUDA emulator)
    train = sys.argv[4]
    cuda = ['--backend', 'cuda']
    same_answer(['--schedule', 'chimera', '--stages', '4', '--micro-batches', '4', '--sync', 'eager'], 4,
                train_extra=cuda, transport='nccl')
    same_answer(['--schedule', '1f1b', '--stages', '4', '--micro-batches', '4', '--data-parallel', '2'], 8,
                train_extra=cuda, transport='nccl')
    # A node with 2 GPUs for 4 ranks: ranks 2 and 3 find none; the job ends
    # on every rank (MPI_Abort), naming the rule.
    p, seconds = expect_failure(mpi(4) + [train, '--schedule', 'chimera', '--stages', '4', '--micro-batches', '4', *cuda,
                                          *common, '--transport', 'nccl'], 1,
                                'is rank 2 on its node, which has 2 GPU(s): one rank per GPU',
                                extra_env={'CHIMERA_EMULATED_GPUS': '2'})
    print(f'missing GPU: the job ends in {seconds:.1f} s: ' + p.stderr.strip().splitlines()[0])
    nccl_watchdog(train, cuda + ['--transport', 'nccl'], 'MPI rendezvous')
    nccl_overlap(train)
elif case == 'two-nodes':
    across_two_nodes(sys.argv[4] if len(sys.argv) > 4 else None)
elif case == 'nccl-gpu':
    # chimera-train built with the real NCCL: a 1-rank smoke run on a GPU
    # gives the local run's digest; exit 77 (skip) without a usable GPU.
    probe = subprocess.run([train, '--backend', 'cuda', '--schedule', 'gpipe', '--stages', '1', '--steps', '0'],
                           capture_output=True, text=True, timeout=120, env=env)
    if probe.returncode != 0:
        print('no usable GPU: skipped\n' + probe.stderr.strip())
        sys.exit(77)
    gpu_args = ['--schedule', 'gpipe', '--stages', '1', '--micro-batches', '2', '--backend', 'cuda', *common]
    digest = same_answer(gpu_args[:6], 1, train_extra=gpu_args[6:8], transport='nccl')
    # The same rank without MPI: --rendezvous file:DIR on the real NCCL.
    rdzv = tempfile.mkdtemp(dir=scratch)
    p = run([train, *gpu_args, '--transport', 'nccl', '--rendezvous', 'file:' + rdzv, '--run-tag', 'gpu'],
            extra_env={'CHIMERA_RANK': '0', 'CHIMERA_WORLD_SIZE': '1'})
    if summary(p)['params_sha256'] != digest or os.listdir(rdzv):
        sys.exit(f'file rendezvous on the real NCCL: {summary(p)["params_sha256"]} vs {digest}, left {os.listdir(rdzv)}')
    print('file rendezvous, 1 rank, real NCCL: same digest, no file left')
elif case == 'nccl':
    nccl_emulator(sys.argv[4])
elif case == 'reduce':
    for np in (3, 4):
        print(run(mpi(np) + [sys.argv[4]]).stdout.strip())
elif case == 'control-plane':
    exe = sys.argv[4]
    for np in (1, 3, 4):
        rdzv = tempfile.mkdtemp(dir=scratch)
        print(f'np {np}:', run(mpi(np) + [exe, 'mpi']).stdout.strip(), run(mpi(np) + [exe, 'nccl', rdzv]).stdout.strip())
        if os.listdir(rdzv):
            sys.exit(f'rendezvous file left: {os.listdir(rdzv)}')
    # A rank that joins and then stays silent: the others' collective gives
    # up after the 2 s timeout and the job ends (NCCL would wait for ever).
    p, seconds = expect_failure(mpi(3) + [exe, 'nccl-silent', tempfile.mkdtemp(dir=scratch)], 1,
                                'did not complete within 2 s', timeout=60)
    if seconds > 20:
        sys.exit(f'the silent rank held the job for {seconds:.1f} s:\n{p.stderr[-2000:]}')
    print(f'control plane: silent rank 1 of 3, job ended after {seconds:.2f} s')
    p, seconds = expect_failure(mpi(3) + [exe, 'mpi-silent'], 1,
                                ': an all-gather (lengths) of every rank did not complete within 2 s '
                                '(--rendezvous-timeout)', timeout=60)
    if not re.search(r'mpi control plane, rank [02]: an all-gather', p.stderr):
        sys.exit('the silent rank was not reported by a waiting rank:\n' + p.stderr[-2000:])
    if seconds > 20:
        sys.exit(f'the silent rank held the job for {seconds:.1f} s:\n{p.stderr[-2000:]}')
    print(f'mpi control plane: silent rank 1 of 3, job ended after {seconds:.2f} s')
    # A rank that never joins the communicator: the others' non-blocking
    # ncclCommInitRank gives up after the 2 s timeout.
    p, seconds = expect_failure(mpi(4) + [exe, 'nccl-absent', tempfile.mkdtemp(dir=scratch)], 1,
                                "run tag 'control-plane-absent'): not done within 2 s (--rendezvous-timeout): "
                                'a rank did not join', timeout=60)
    if seconds > 20:
        sys.exit(f'the absent rank held the job for {seconds:.1f} s:\n{p.stderr[-2000:]}')
    print(f'control plane: rank 2 of 4 never joins, job ended after {seconds:.2f} s')
    # The same for the nccl transport's own communicators (non-blocking):
    # a rank that never creates the world communicator, or never splits it.
    for where, call in (('init', 'ncclCommInitRank of the world communicator (4 ranks)'),
                        ('split', "ncclCommSplit of stage 0's replica group")):
        p, seconds = expect_failure(mpi(4) + [exe, 'transport-absent', where], 1,
                                    f'{call}: not done within 2 s (--rendezvous-timeout): a rank did not '
                                    f'{"join" if where == "init" else "split it"}', timeout=60)
        if seconds > 20:
            sys.exit(f'the absent rank held the job for {seconds:.1f} s:\n{p.stderr[-2000:]}')
        print(f'nccl transport: rank 2 of 4 never {"joins" if where == "init" else "splits"}, '
              f'job ended after {seconds:.2f} s')
elif case == 'nccl-file':
    train = sys.argv[4]  # chimera-train-emulated
    nccl_file(train)
elif case == 'rendezvous-fail':
    rendezvous_failures(sys.argv[4])
elif case == 'hang':
    hang_mid_step()
else:
    sys.exit('unknown case ' + case)
print('ok')
