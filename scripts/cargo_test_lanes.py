#!/usr/bin/env python3
"""Runs every test `cargo test --workspace` runs, several test binaries at a time.

`cargo test` runs its test binaries one after another, and most of ours are end-to-end tests that
wait on 1-second blocks, 10-second slots and process start-ups far more than they compute: one after
another they took about 24 minutes of CI's 38. This script asks cargo for the same test binaries
(`cargo test --workspace --no-run --message-format=json`), then runs each with its own
`cargo test --workspace --test <name>` (so cargo sets the environment, the working directory and
the features exactly as for `cargo test --workspace`), LANES of them at once, longest first.
Doc tests run as one more job. Binaries whose tests assert on timing under load are run alone.

Each binary's output is printed whole when it ends (never interleaved), then a table of times and
the failures. The exit status is 1 if any binary failed or if cargo listed none.

    scripts/cargo_test_lanes.py [--lanes N] [--job-timeout SECONDS] [-- <test binary arguments>]

A job that runs longer than --job-timeout (default 1,200 s: the longest took 225 s beside two
others) is stopped with its whole process group, the nodes and brokers its tests started included
(SIGTERM, then SIGKILL 15 s later); what it printed so far is shown and it counts as failed. A hanging
test then costs CI 20 minutes and names itself, instead of taking CI's 90 and saying nothing.

cargo-nextest would do this, but it cannot be installed here without building it from source (no
prebuilt binary can be downloaded), which would cost CI more than it saves.
"""

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

# Seconds each job took with --test-threads 2, one after another (its label: the cargo selection).
# They only order the queue, longest first, to pack the lanes; a job not listed counts as 20 s
# (measured 2026-12-07, one after another, on this machine: 1,075 s in all).
MEASURED = {
    "--test days": 136,
    "--test e2e: the rest": 70,
    "--test e2e: bridge_flood:: bridge_load::": 30,
    "--test readme_sim": 83,
    "--test network": 67,
    "--test network_sync": 62,
    "--test readme_commands": 52,
    "--test market": 45,
    "--test crash": 45,
    "--test adversary_p2p": 40,
    "--test bench_smoke": 31,
    "--test artifacts_fresh": 31,
    "--test adversary_blocks": 31,
    "--test adversary_sync": 29,
    "--test adversary_seal": 29,
    "--test rpc_surface": 26,
    "--test node_core": 22,
    "--test keeper": 19,
    "--test state_on_disk": 15,
    "--test adversary_rpc_load": 15,
    "--test reorg": 14,
    "--test compat_foundry": 13,
    "--test adversary_pool": 13,
    "--test adversary_gas": 12,
    "--test rpc_debug": 9,
    "--test explorer": 7,
    "--lib": 17,
    "--test foundry": 5,
    "--test clique_rpc": 5,
    "--test busy_node": 4,
    "--test systemd_units": 3,
    "--test adversary_rpc": 3,
    "--test chain_files": 2,
    "--test keys_at_rest": 2,
    "--test tx_lookup": 2,
    "--test state_trie": 1,
    "--test rpc_params": 1,
    "--test dev_tempdir": 1,
    "--test accounts": 1,
    "--test tx_gossip": 1,
    "--test adversary_reorg": 1,
    "--test sim_cli": 1,
    "--bins": 1,
    "--doc": 5,
}

# Jobs with tests that load the machine themselves and assert on wall-clock time (block gaps under
# 50 concurrent worst-case calls; a meter's readings committed while a broker-speed MQTT flood runs,
# which also takes both cores from whatever runs beside it), and the simulator's runs (5-second
# slots whose meter readings must reach the chain within the slot's grace period: three of the five
# days failed beside two other jobs, and the README's short run beside the network tests): they run
# with no other job beside them.
ALONE = {
    "--test adversary_rpc_load",
    "--test e2e: bridge_flood:: bridge_load::",
    "--test days",
    "--test readme_sim",
}

# Jobs that use the README's default ports (8545, 30303, 1883: the commands exactly as written),
# so never two at once; each binary runs its own such tests one at a time.
DEFAULT_PORTS = {"--test readme_commands", "--test readme_sim"}

# Binaries whose load-making tests (the filters) run as an alone job of their own, and the rest of
# the binary as an ordinary job.
SPLIT = {"--test e2e": ["bridge_flood::", "bridge_load::"]}

DEFAULT_WEIGHT = 20.0

# Seconds a stopped job's process group gets between SIGTERM and SIGKILL.
KILL_GRACE = 15.0


def test_jobs(args):
    """(label, cargo command) for every test binary `cargo test --workspace` runs, and the doc tests.

    Every command keeps `--workspace`, so the features cargo resolves (and so the binaries it built)
    are those of `cargo test --workspace`: selecting one package would resolve its own features and
    rebuild its dependencies. Unit tests of the libraries and of the binaries are one job each (they
    take seconds); each integration test is a job."""
    out = subprocess.run(
        ["cargo", "test", "--workspace", "--no-run", "--message-format=json-render-diagnostics"],
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    ).stdout
    selections = set()
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg["profile"]["test"]:
            continue
        kind = msg["target"]["kind"][0]
        if kind == "bin":
            selections.add(("--bins",))
        elif kind in ("lib", "rlib", "cdylib", "staticlib", "dylib", "proc-macro"):
            selections.add(("--lib",))
        else:
            selections.add((f"--{kind}", msg["target"]["name"]))
    if not selections:
        return []
    jobs = []
    for sel in sorted(selections):
        label = " ".join(sel)
        cmd = ["cargo", "test", "--workspace", *sel, "--", *args]
        filters = SPLIT.get(label)
        if filters:
            jobs.append((f"{label}: {' '.join(filters)}", cmd + filters))
            jobs.append((f"{label}: the rest", cmd + [a for f in filters for a in ("--skip", f)]))
        else:
            jobs.append((label, cmd))
    jobs.append(("--doc", ["cargo", "test", "--workspace", "--doc"]))
    return jobs


def run_job(cmd, timeout, grace=KILL_GRACE):
    """Runs one job in a process group of its own: (exit status, output, whether it timed out).

    Past `timeout` seconds the whole group gets SIGTERM (a test binary's children, such as the node
    processes and brokers it started, are in it unless they made their own), and SIGKILL if any of
    it is still running `grace` seconds later; the output printed until then is kept."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out, False
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    # The job's own process may be gone while others of its group still hold on: end them too.
    _signal_group(proc.pid, signal.SIGKILL)
    return proc.returncode, out, True


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class Scheduler:
    """Hands out jobs in queue order, at most `lanes` at once: a job of ALONE runs with no other
    (nothing starts while one waits at the head of the queue), and no two jobs of DEFAULT_PORTS run
    at once (a lane takes the next job that may start instead of waiting)."""

    def __init__(self, jobs, lanes):
        self.queue = list(jobs)
        self.lanes = lanes
        self.running = set()
        self.cond = threading.Condition()

    def _may_start(self, label):
        if len(self.running) >= self.lanes or self.running & ALONE:
            return False
        if label in ALONE:
            return not self.running
        return not (label in DEFAULT_PORTS and self.running & DEFAULT_PORTS)

    def take(self):
        """The next job that may start, waiting for one; None when the queue is empty."""
        with self.cond:
            while self.queue:
                for i, job in enumerate(self.queue):
                    if self._may_start(job[0]):
                        self.running.add(job[0])
                        return self.queue.pop(i)
                    if job[0] in ALONE:
                        break
                self.cond.wait()
            return None

    def done(self, label):
        with self.cond:
            self.running.discard(label)
            self.cond.notify_all()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=3, help="test binaries at once (default 3)")
    parser.add_argument(
        "--job-timeout",
        type=float,
        default=1200.0,
        help="seconds a job may run before its process group is stopped and it fails (default 1200)",
    )
    parser.add_argument("args", nargs="*", help="arguments for every test binary (after --)")
    opts = parser.parse_args()
    if opts.lanes < 1:
        parser.error("--lanes must be at least 1")
    if not (opts.job_timeout > 0 and math.isfinite(opts.job_timeout)):
        parser.error("--job-timeout must be a positive, finite number of seconds")

    try:
        jobs = test_jobs(opts.args)
    except subprocess.CalledProcessError as e:
        print(f"the tests do not build (cargo test --no-run exited {e.returncode}; its errors are above)", flush=True)
        return 1
    if not jobs:
        print("cargo listed no test binary", flush=True)
        return 1
    # Alone jobs first (nothing else is running yet), then the longest first.
    jobs.sort(key=lambda j: (j[0] not in ALONE, -MEASURED.get(j[0], DEFAULT_WEIGHT)))
    print(f"{len(jobs)} jobs (test binaries and doc tests), {opts.lanes} at a time", flush=True)

    scheduler = Scheduler(jobs, opts.lanes)
    results = []
    passed = [0]
    printing = threading.Lock()

    def worker():
        while True:
            job = scheduler.take()
            if job is None:
                return
            label, cmd = job
            start = time.monotonic()
            code, out, timed_out = run_job(cmd, opts.job_timeout)
            took = time.monotonic() - start
            scheduler.done(label)
            ok = code == 0 and not timed_out
            if timed_out:
                status = f"FAILED (timed out after {opts.job_timeout:.0f} s; its process group was stopped)"
            else:
                status = "ok" if ok else f"FAILED (exit {code})"
            with printing:
                print(f"\n--> {label}: {status} ({took:.0f} s){' [alone]' if label in ALONE else ''}", flush=True)
                print(out, end="", flush=True)
                results.append((label, ok, took))
                passed[0] += sum(int(m) for m in re.findall(r"^test result: \w+\. (\d+) passed", out, re.M))

    threads = [threading.Thread(target=worker) for _ in range(opts.lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    print("\ntest binaries by time:")
    for label, ok, took in sorted(results, key=lambda r: -r[2]):
        print(f"  {took:6.0f} s  {'ok    ' if ok else 'FAILED'}  {label}")
    print(f"{passed[0]} tests passed in {len(results)} jobs")
    failed = [label for label, ok, _ in results if not ok]
    if failed:
        print(f"failed: {' '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
