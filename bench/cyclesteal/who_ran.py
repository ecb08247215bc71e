#!/usr/bin/env python3
"""Who ran on a host thread's CPU while it waited for one.

Reads a trace of the kernel's sched events written by bench/cyclesteal/trace_run.sh
(sched_switch, sched_wakeup, sched_wakeup_new, sched_process_fork) and the pids it
recorded, and splits the host threads' wait (runnable, not running) by what ran on that
CPU meanwhile: the guests, other host threads, the benchmark itself, kernel threads.
Waits in the first 0.5 s of each host process (start-up: exec, filling the working set,
starting threads) are reported apart from the rest (the bursts).

  bench/cyclesteal/who_ran.py DIR              (DIR as written by trace_run.sh)
  bench/cyclesteal/who_ran.py record DIR PID   (trace_run.sh's recorder: every 0.5 s,
      the processes in the host and guest groups of the benchmark PID)
"""
import bisect
import collections
import glob
import os
import re
import sys
import time

SWITCH = re.compile(r'\[(\d+)\].*?\s(\d+\.\d+): sched_switch: prev_comm=(.*?) prev_pid=(\d+) '
                    r'prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)')
WAKEUP = re.compile(r'\s(\d+\.\d+): sched_wakeup(?:_new)?: comm=.*? pid=(\d+) ')
FORK = re.compile(r'sched_process_fork: comm=.*? pid=(\d+) child_comm=.*? child_pid=(\d+)')
STARTUP_S = 0.5


def pids(path):
    try:
        return {int(x) for x in open(path).read().split()}
    except FileNotFoundError:
        return set()


def closure(roots, parent):
    """The roots and every thread or process they created."""
    out = set(roots)
    grew = True
    while grew:
        grew = False
        for child, p in parent.items():
            if p in out and child not in out:
                out.add(child)
                grew = True
    return out


def record(d, bench):
    node = f'/sys/fs/cgroup/cpu/dynamos-bench-cyclesteal-{bench}'
    if not os.path.isdir('/sys/fs/cgroup/cpu'):
        node = f'/sys/fs/cgroup/dynamos-bench-cyclesteal-{bench}'  # cgroup v2

    def procs(path):
        try:
            return open(path).read().split()
        except OSError:
            return []

    seen = {'host_with_guests': set(), 'host_alone': set(), 'guest': set()}
    while os.path.exists(f'/proc/{bench}'):
        guest = [p for f in glob.glob(node + '/guests/**/cgroup.procs', recursive=True)
                 for p in procs(f)] + procs(node + '/nice/cgroup.procs')
        seen['guest'].update(guest)
        seen['host_with_guests' if guest else 'host_alone'].update(procs(node + '/host/cgroup.procs'))
        time.sleep(0.5)
    for name, values in seen.items():
        with open(f'{d}/{name}', 'w') as f:
            f.write('\n'.join(sorted(values)) + '\n')


def main():
    if len(sys.argv) == 4 and sys.argv[1] == 'record':
        return record(sys.argv[2], sys.argv[3])
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    lines = open(d + '/trace').read().splitlines()
    parent = {}
    for line in lines:
        m = FORK.search(line)
        if m:
            parent[int(m.group(2))] = int(m.group(1))
    guests = closure(pids(d + '/guest'), parent)
    for phase in ('host_with_guests', 'host_alone'):
        roots = pids(d + '/' + phase)
        if roots:
            report(phase, lines, closure(roots, parent), guests, parent)


def report(phase, lines, host, guests, parent):
    def root_of(pid):
        while parent.get(pid) in host:
            pid = parent[pid]
        return pid

    ready, current, first = {}, {}, {}
    runs = collections.defaultdict(list)  # cpu -> [(start, end, pid, comm)]
    waits = []  # (cpu, start, end, start-up?)
    run_s = 0.0
    for line in lines:
        m = WAKEUP.search(line)
        if m:
            pid = int(m.group(2))
            running = {c[0] for c in current.values()}
            if pid in host and pid not in ready and pid not in running:
                ready[pid] = float(m.group(1))
            continue
        m = SWITCH.search(line)
        if not m:
            continue
        cpu, t = int(m.group(1)), float(m.group(2))
        prev, state, nxt = int(m.group(4)), m.group(5), int(m.group(7))
        if cpu in current:
            pid, since, comm = current[cpu]
            runs[cpu].append((since, t, pid, comm))
            if pid in host:
                run_s += t - since
        current[cpu] = (nxt, t, m.group(6))
        if nxt in host:
            first.setdefault(root_of(nxt), t)
        if prev in host:
            if state.startswith('R'):
                ready[prev] = t  # preempted: runnable from now on
            else:
                ready.pop(prev, None)
        if nxt in host and nxt in ready:
            t0 = ready.pop(nxt)
            waits.append((cpu, t0, t, t0 - first[root_of(nxt)] < STARTUP_S))

    starts = {c: [r[0] for r in rs] for c, rs in runs.items()}
    split = {True: collections.Counter(), False: collections.Counter()}
    total = {True: 0.0, False: 0.0}
    for cpu, t0, t1, startup in waits:
        total[startup] += t1 - t0
        rs = runs[cpu]
        i = max(bisect.bisect_right(starts[cpu], t0) - 1, 0)
        while i < len(rs) and rs[i][0] < t1:
            s, e, pid, comm = rs[i]
            overlap = min(e, t1) - max(s, t0)
            if overlap > 0:
                who = 'guest' if pid in guests else 'host' if pid in host else comm
                split[startup][who] += overlap
            i += 1
    print(f'{phase}: host threads ran {run_s:.3f} s, waited {sum(total.values()) * 1e3:.1f} ms '
          f'(share {sum(total.values()) / max(run_s, 1e-9):.4f}) in {len(first)} process(es)')
    for startup, label in ((True, 'start-up'), (False, 'bursts')):
        parts = ', '.join(f'{k} {v * 1e3:.1f}' for k, v in split[startup].most_common(8))
        print(f'  {label}: waited {total[startup] * 1e3:.1f} ms; meanwhile ran (ms): {parts}')


if __name__ == '__main__':
    main()
