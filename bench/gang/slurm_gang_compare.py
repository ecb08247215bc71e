#!/usr/bin/env python3
"""Slurm's own gang scheduler alone, Slurm's gang scheduler with DynAMOS paging at its
switches (dynamosd --follow slurm), and DynAMOS's own gang scheduler inside a Slurm
allocation, on the Slurm test bed (scripts/slurm-testbed.sh).

    bench/gang/slurm_gang_compare.py [--build build] [--out DIR] [--policy adaptive]
        [--mem-per-node 384] [--overcommit 1.5] [--iterations 40] [--timeslice 5]
        [--schedulers slurm,slurm+dynamos,dynamos] [--repeat 1]

Per scheduler: a one-node, one-CPU test bed with PreemptMode=GANG (SchedulerTimeSlice
--timeslice), the node held to --mem-per-node MB by a memory cgroup (--limit-memory) and
swap on zram, and the same pair of dynamos-mpi-stencil jobs (one rank each, a fixed
number of iterations, footprints together --overcommit x the node's memory) submitted
with sbatch; Slurm suspends and resumes them every time slice. Under slurm+dynamos the
jobs carry --dynamos-paging=POLICY (dynamos_spank.so) and dynamosd --follow slurm pages
at Slurm's switches. Under dynamos one allocation of the node (salloc --mem) runs
`dynamos cluster up --slurm --quantum <time slice>` and the pair is submitted with
`dynamos submit --paging POLICY` (the node's memory limit from the allocation). Both
jobs' progress files are sampled every 5 ms.

Rows of DIR/results.json: scheduler, policy, workload, makespan_s (first progress to the
last job's end, wall clock), switch_gap_s (median, from the outgoing job's last progress
to the incoming job's first), switches, overlap (share of sampled time both progressed),
major_faults (both ranks), verified (both RESULT lines); DIR/results.md the same as a
table, one row per run (--repeat N runs the schedulers in turn N times, so that load from
elsewhere falls on both alike), then the median makespan per scheduler and its ratio
to Slurm alone. Needs root; brings the test bed up and down itself (none may be up).
"""
import argparse
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

STATE = os.environ.get("DYNAMOS_SLURM_TESTBED_DIR", "/run/dynamos-slurm-testbed")
MAGIC = 0x31474F52504E5944  # bench/workload/progress.hpp
DONE, FAILED = 2, 3


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def read_progress(path):
    """(pid, start_ns, work, updated_ns, state) or None before the file is initialised."""
    try:
        with open(path, "rb") as f:
            head = f.read(128)
    except OSError:
        return None
    if len(head) < 128 or struct.unpack_from("<Q", head, 0)[0] != MAGIC:
        return None
    pid = struct.unpack_from("<i", head, 16)[0]
    start = struct.unpack_from("<Q", head, 24)[0]
    work, _, updated = struct.unpack_from("<QQQ", head, 96)
    state = struct.unpack_from("<I", head, 120)[0]
    return pid, start, work, updated, state


def major_faults(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[9])
    except (OSError, IndexError, ValueError):
        return None


def sample(progress, timeout):
    """Samples both jobs until both are done or failed; returns the samples and the
    last major-fault count seen per job."""
    samples, faults, t_end = [], [None, None], time.time() + timeout
    last_fault_read = 0.0
    while time.time() < t_end:
        p = [read_progress(x) for x in progress]
        now = time.monotonic_ns()
        samples.append((now, p))
        if now / 1e9 - last_fault_read > 0.25:
            last_fault_read = now / 1e9
            for i, x in enumerate(p):
                if x and x[4] not in (DONE, FAILED):
                    f = major_faults(x[0])
                    faults[i] = f if f is not None else faults[i]
        if all(x and x[4] in (DONE, FAILED) for x in p):
            break
        time.sleep(0.005)
    return samples, faults


def analyse(samples, idle_s):
    """makespan, switch gaps and overlap from the progress samples. A switch is a job
    progressing again after at least idle_s without (it was suspended); its gap runs from
    the other job's last progress to this first one. Both jobs running for a moment (the
    node's jobs are not pinned to its one CPU) is no switch."""
    last_work = [None, None]
    last_update = [None, None]
    first_start = None
    end = None
    progressing_prev = None
    gaps, both, any_progress = [], 0, 0
    prev_t = None
    for t, p in samples:
        moved = [False, False]
        for i, x in enumerate(p):
            if not x:
                continue
            first_start = x[1] if first_start is None else min(first_start, x[1])
            if last_work[i] is not None and x[2] > last_work[i]:
                moved[i] = True
            if x[4] in (DONE, FAILED):
                end = max(end or 0, x[3])
            last_work[i] = x[2]
            if moved[i] or last_update[i] is None:
                other = 1 - i
                if (moved[i] and last_update[i] is not None and last_update[other] is not None
                        and x[3] - last_update[i] >= idle_s * 1e9 and progressing_prev == other):
                    # the first progress of i after the other job's last
                    gaps.append((x[3] - last_update[other]) / 1e9)
                if moved[i]:
                    progressing_prev = i
                last_update[i] = x[3]
        if prev_t is not None:
            if all(moved):
                both += 1
            if any(moved):
                any_progress += 1
        prev_t = t
    makespan = (end - first_start) / 1e9 if end and first_start else None
    return makespan, gaps, both / any_progress if any_progress else 0.0


def testbed(root, *args):
    return run([f"{root}/scripts/slurm-testbed.sh", *args])


def one_run(a, root, scheduler, out):
    bin_dir, lib = f"{a.build}/bin", f"{a.build}/lib"
    foot = int(a.mem_per_node * a.overcommit / 2)
    testbed(root, "up", "--nodes", "1", "--cpus-per-node", "1", "--mem-per-node",
            str(a.mem_per_node), "--gang", "--timeslice", str(a.timeslice), "--spank",
            f"{lib}/dynamos_spank.so", "--limit-memory", "--timeout", "30")
    env = dict(os.environ, SLURM_CONF=f"{STATE}/slurm.conf", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    work = tempfile.mkdtemp(prefix="dynamos-slurm-compare-")
    daemon = None
    progress = [f"{work}/{name}.progress" for name in ("a", "b")]
    outputs = [f"{out}/{scheduler}-{name}.out" for name in ("a", "b")]
    stencil = [f"{bin_dir}/dynamos-mpi-stencil", "--mem", f"{foot}M", "-n", str(a.iterations),
               "-q", "--progress-file"]
    try:
        if scheduler == "slurm+dynamos":
            daemon = subprocess.Popen(
                [f"{bin_dir}/dynamosd", "--follow", "slurm", "--follow-dir", f"{STATE}/spank",
                 "--follow-log", f"{out}/{scheduler}-switches.jsonl", "--paging-extension",
                 f"{lib}/libdynamos_ext_paging.so", "--log-level", "warning"],
                stdout=subprocess.DEVNULL, stderr=open(f"{out}/{scheduler}-dynamosd.log", "w"))
        if scheduler == "dynamos":
            # DynAMOS's own gang scheduler inside one allocation of the node, same quantum
            q = lambda v: "'" + v.replace("'", "'\\''") + "'"
            dyn = f"{bin_dir}/dynamos"
            inner = [f"{dyn} cluster up --slurm --quantum {a.timeslice}s --state-dir {work}/cluster"]
            for prog, output in zip(progress, outputs):
                inner.append(f"{dyn} submit --ranks 1 --nodes 1 --paging {a.policy} --output "
                             f"{q(output)} -- {' '.join(map(q, stencil))} {q(prog)}")
            inner += [f"{dyn} wait 1 --timeout {int(a.timeout)}",
                      f"{dyn} wait 2 --timeout {int(a.timeout)}",
                      f"{dyn} cluster down --state-dir {work}/cluster"]
            env["DYNAMOS_SOCKET"] = f"{work}/cluster/gangd.sock"
            daemon = subprocess.Popen(
                ["salloc", "-N", "1", f"--mem={a.mem_per_node}", "bash", "-c",
                 f"cd {work} && " + " && ".join(inner[:3]) + "; " + "; ".join(inner[3:])],
                env=env, stdout=open(f"{out}/{scheduler}-cluster.log", "w"),
                stderr=subprocess.STDOUT)
        else:
            for prog, output in zip(progress, outputs):
                opt = [f"--dynamos-paging={a.policy}"] if scheduler == "slurm+dynamos" else []
                cmd = f"exec mpirun -np 1 --oversubscribe {' '.join(stencil)} {prog}"
                run(["sbatch", "--parsable", *opt, "-n", "1", "-o", output, "--wrap", cmd],
                    env=env)
        samples, faults = sample(progress, a.timeout)
        time.sleep(1)
        verified = all('"verified":true' in open(o).read() for o in outputs if os.path.exists(o))
        verified = verified and all(os.path.exists(o) for o in outputs)
        makespan, gaps, overlap = analyse(samples, a.timeslice / 2)
        swap_note = run(["swapon", "--show=NAME,USED", "--noheadings"]).strip()
        return {
            "scheduler": scheduler,
            "policy": "demand" if scheduler == "slurm" else a.policy,
            "workload": "stencil",
            "makespan_s": makespan,
            "switch_gap_s": statistics.median(gaps) if gaps else None,
            "switches": len(gaps),
            "overlap": overlap,
            "major_faults": sum(f or 0 for f in faults),
            "verified": verified,
            "footprint_mb": foot,
            "mem_per_node_mb": a.mem_per_node,
            "timeslice_s": a.timeslice,
            "swap_at_end": swap_note,
        }
    finally:
        if daemon and scheduler == "dynamos":
            daemon.wait(timeout=60)  # salloc: the jobs are done, cluster down runs
        elif daemon:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
        subprocess.run(["scancel", "--state=RUNNING,SUSPENDED,PENDING", "-u", "root"],
                       env=env, capture_output=True)
        testbed(root, "down")
        subprocess.run(["rm", "-rf", work])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default="build")
    p.add_argument("--out", default="slurm-compare")
    p.add_argument("--policy", default="adaptive")
    p.add_argument("--mem-per-node", type=int, default=384)
    p.add_argument("--overcommit", type=float, default=1.5)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--timeslice", type=int, default=5)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--schedulers", default="slurm,slurm+dynamos,dynamos")
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("slurm_gang_compare: needs root")
    schedulers = a.schedulers.split(",")
    for s in schedulers:
        if s not in ("slurm", "slurm+dynamos", "dynamos"):
            sys.exit(f"slurm_gang_compare: unknown scheduler '{s}' (slurm, slurm+dynamos, dynamos)")
    if a.policy not in ("demand", "selective", "aggressive", "adaptive"):
        sys.exit(f"slurm_gang_compare: unknown policy '{a.policy}'")
    a.build = os.path.abspath(a.build)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.makedirs(a.out, exist_ok=True)
    a.out = os.path.abspath(a.out)
    zram = f"{root}/scripts/zram-swap.sh"
    run([zram, "up", "--size", f"{a.mem_per_node * 2}M", "--holder", str(os.getpid())])
    rows = []
    try:
        for n in range(a.repeat):
            for s in schedulers:
                print(f"slurm_gang_compare: {s}, run {n + 1}...", file=sys.stderr)
                rows.append(one_run(a, root, s, a.out))
                rows[-1]["run"] = n + 1
                print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        subprocess.run([zram, "down", "--holder", str(os.getpid())], capture_output=True)
    medians = {}
    for s in schedulers:
        m = [r["makespan_s"] for r in rows if r["scheduler"] == s and r["makespan_s"]]
        medians[s] = statistics.median(m) if m else None
    base = medians.get("slurm")
    summary = {s: {"makespan_s_median": m,
                   "makespan_ratio_to_slurm": m / base if m and base else None}
               for s, m in medians.items()}
    with open(f"{a.out}/results.json", "w") as f:
        json.dump({"command": sys.argv, "rows": rows, "summary": summary}, f, indent=1)
    with open(f"{a.out}/results.md", "w") as f:
        f.write("| scheduler | policy | makespan s | switch gap s | switches | overlap "
                "| major faults | verified |\n|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            def fmt(v):
                return f"{v:.3f}" if isinstance(v, float) else str(v)
            f.write(f"| {r['scheduler']} | {r['policy']} | {fmt(r['makespan_s'])} | "
                    f"{fmt(r['switch_gap_s'])} | {r['switches']} | {fmt(r['overlap'])} | "
                    f"{r['major_faults']} | {r['verified']} |\n")
        f.write("\n| scheduler | median makespan s | ratio to slurm |\n|---|---|---|\n")
        for s, v in summary.items():
            ratio = v["makespan_ratio_to_slurm"]
            m = v["makespan_s_median"]
            f.write(f"| {s} | {'' if m is None else f'{m:.3f}'} | "
                    f"{'' if ratio is None else f'{ratio:.3f}'} |\n")
    print(open(f"{a.out}/results.md").read())


if __name__ == "__main__":
    main()
