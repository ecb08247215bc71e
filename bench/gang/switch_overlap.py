#!/usr/bin/env python3
"""Full gang switch and overlap, from the jobs' side.

  switch_overlap.py PROBE_DIR ROUNDS_JSONL QUANTUM_S

PROBE_DIR holds dynamos-switch-probe's files (one a rank: its run segments and its
cgroup, which names its node and job); ROUNDS_JSONL is gangd's round log (time_ns is
written when a round ends, total_ms after its decision: decision = time_ns - total_ms).

Per round that stopped one job and started the other on every node, and per node:
  out_stop  the last instant a rank of the outgoing job ran before the incoming job's
            first run (it is frozen after that; a later run belongs to a later change, such
            as the incoming job ending within the window),
  in_start  the first instant a rank of the incoming job ran after the decision.
Two readings of "every incoming rank running" (docs/gang.md, the latency section):
  runnable   thawed, on a run queue: max(out_stop over nodes, the last agent's thaw)
             - decision, the thaw from the round log (running_ms: agents thaw only once
             the kernel reports every outgoing task frozen): full_switch_ms_*;
  first ran  the instant the last incoming rank actually ran: max over nodes of
             max(out_stop, in_start) - decision, which adds the wait of a thawed rank
             for a CPU held by another runnable task (a neighbouring virtual node's rank,
             other work): first_ran_ms_*.
The overlap is
the time in which ranks of both jobs ran on one node within half a quantum of the
decision (the two jobs progressing at once). Prints one JSON object.
"""
import glob
import json
import os
import sys


def read_probes(directory):
    """{node: {job: [(start, end), ...]}} from the probes' files."""
    nodes = {}
    for path in glob.glob(os.path.join(directory, "probe-*.txt")):
        with open(path) as f:
            head = f.readline().split()
            cgroup = head[head.index("cgroup") + 1] if "cgroup" in head else ""
            segs = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
        parts = [p for p in cgroup.split("/") if p]
        if len(parts) < 2:
            continue
        node, job = parts[-2], parts[-1]
        nodes.setdefault(node, {}).setdefault(job, []).extend(segs)
    for jobs in nodes.values():
        for segs in jobs.values():
            segs.sort()
    return nodes


def clipped(segs, lo, hi):
    return [(max(s, lo), min(e, hi)) for s, e in segs if e > lo and s < hi]


def run_time(segs):
    return sum(e - s for s, e in segs)


def both_ran(a, b):
    """Time covered by a segment of a and one of b at once (each list disjoint, sorted)."""
    total, i, j = 0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def merged(segs):
    out = []
    for s, e in sorted(segs):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round((len(v) - 1) * p)))]


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    nodes = read_probes(sys.argv[1])
    half = int(float(sys.argv[3]) * 1e9 / 2)
    decisions = []
    with open(sys.argv[2]) as f:
        for line in f:
            r = json.loads(line)
            if r.get("failed", 0) == 0 and r.get("switched", 0) == r.get("nodes", -1):
                decisions.append((r["time_ns"] - int(r["total_ms"] * 1e6), r["running_ms"]))
    full, first_ran, overlap_ns, window_ns, rounds = [], [], 0, 0, 0
    for d, thawed_ms in decisions:
        lo, hi = d - half, d + half
        worst, stopped, ok, both, window = 0, 0, True, 0, 0
        for jobs in nodes.values():
            if len(jobs) != 2:
                ok = False
                break
            (ja, a), (jb, b) = jobs.items()
            a, b = merged(clipped(a, lo, hi)), merged(clipped(b, lo, hi))
            before_a, before_b = run_time(clipped(a, lo, d)), run_time(clipped(b, lo, d))
            out, inc = (a, b) if before_a >= before_b else (b, a)
            after_in = [s for s, _ in inc if s >= d]
            if not out or not after_in:
                ok = False  # not a switch between the two jobs here (one ended or not begun)
                break
            first_in = min(after_in)
            # The outgoing job's runs up to the incoming job's first run: a run that starts
            # after it belongs to a later change (the incoming job ended within the window
            # and the outgoing one was thawed again), not to this switch.
            out_stop = max(e for s, e in out if s < first_in)
            worst = max(worst, max(out_stop, first_in) - d)
            stopped = max(stopped, out_stop - d)
            both += both_ran(a, b)
            window += hi - lo
        if ok:
            rounds += 1
            overlap_ns += both
            window_ns += window
            full.append(max(stopped / 1e6, thawed_ms))
            first_ran.append(worst / 1e6)
    result = {
        "rounds_measured": rounds,
        "full_switch_ms_p50": pct(full, 0.5),
        "full_switch_ms_p99": pct(full, 0.99),
        "full_switch_ms_max": max(full) if full else None,
        "first_ran_ms_p50": pct(first_ran, 0.5),
        "first_ran_ms_p99": pct(first_ran, 0.99),
        "first_ran_ms_max": max(first_ran) if first_ran else None,
        "overlap_ms": round(overlap_ns / 1e6, 3),
        "overlap": round(overlap_ns / window_ns, 6) if window_ns else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
