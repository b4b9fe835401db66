"""Tests of scripts/cargo_test_lanes.py's job runner and scheduler, with real processes.

    python3 -m unittest discover -s scripts -p 'test_*.py'
"""

import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cargo_test_lanes as lanes  # noqa: E402


def alive(pid):
    """Whether a process runs (a zombie waiting for its reaper counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_ended(pid, within=5.0):
    end = time.monotonic() + within
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    return not alive(pid)


class RunJob(unittest.TestCase):
    def test_a_job_within_its_time_keeps_its_output_and_exit_status(self):
        code, out, timed_out = lanes.run_job(["sh", "-c", "echo one; echo two >&2; exit 3"], timeout=30)
        self.assertEqual((code, timed_out), (3, False))
        self.assertEqual(sorted(out.split()), ["one", "two"])

    def test_a_job_just_under_its_timeout_passes(self):
        code, out, timed_out = lanes.run_job(["sh", "-c", "sleep 0.5; echo done"], timeout=3)
        self.assertEqual((code, out, timed_out), (0, "done\n", False))

    def test_a_hanging_job_is_stopped_with_its_children_and_keeps_what_it_printed(self):
        # The job starts a child (as a test binary starts nodes), prints, then waits for ever.
        script = "sleep 300 & echo child $!; wait"
        start = time.monotonic()
        code, out, timed_out = lanes.run_job(["sh", "-c", script], timeout=1, grace=5)
        self.assertTrue(timed_out)
        self.assertNotEqual(code, 0)
        self.assertLess(time.monotonic() - start, 5, "SIGTERM ends a job that does not ignore it")
        child = int(out.split()[1])
        self.assertTrue(wait_ended(child), f"the job's child {child} was left running")

    def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(self):
        script = "trap '' TERM; sleep 300 & echo child $!; wait"
        start = time.monotonic()
        code, out, timed_out = lanes.run_job(["sh", "-c", script], timeout=1, grace=1)
        took = time.monotonic() - start
        self.assertTrue(timed_out)
        self.assertNotEqual(code, 0)
        self.assertGreaterEqual(took, 2, "SIGKILL comes only after the grace")
        self.assertLess(took, 10)
        self.assertTrue(wait_ended(int(out.split()[1])))


class Arguments(unittest.TestCase):
    def test_a_timeout_that_is_not_a_positive_finite_number_is_refused_before_anything_runs(self):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cargo_test_lanes.py")
        for bad in ["0", "-5", "nan", "inf", "soon"]:
            out = subprocess.run(
                [sys.executable, script, "--job-timeout", bad], capture_output=True, text=True, timeout=30
            )
            self.assertEqual(out.returncode, 2, f"--job-timeout {bad}: {out.stderr}")
            self.assertIn("--job-timeout", out.stderr)
            self.assertNotIn("jobs (test binaries", out.stdout, "nothing was run")


class SchedulerRules(unittest.TestCase):
    def run_all(self, labels, nlanes):
        """Runs jobs that each hold for 0.2 s; returns the largest sets of labels seen running at once."""
        sched = lanes.Scheduler([(label, None) for label in labels], nlanes)
        seen = []
        lock = threading.Lock()

        def worker():
            while True:
                job = sched.take()
                if job is None:
                    return
                with lock:
                    seen.append(frozenset(sched.running))
                time.sleep(0.2)
                sched.done(job[0])

        threads = [threading.Thread(target=worker) for _ in range(nlanes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        return seen

    def test_lanes_run_together_up_to_their_number(self):
        seen = self.run_all(["--test a", "--test b", "--test c", "--test d"], 3)
        self.assertEqual(max(len(s) for s in seen), 3)

    def test_an_alone_job_never_runs_beside_another(self):
        alone = next(iter(lanes.ALONE))
        seen = self.run_all(["--test a", alone, "--test b", "--test c"], 3)
        for running in seen:
            if alone in running:
                self.assertEqual(running, {alone})

    def test_the_two_readme_jobs_never_run_together(self):
        ports = sorted(lanes.DEFAULT_PORTS - lanes.ALONE) + sorted(lanes.DEFAULT_PORTS & lanes.ALONE)
        seen = self.run_all(ports + ["--test a", "--test b"], 3)
        self.assertTrue(all(len(s & lanes.DEFAULT_PORTS) <= 1 for s in seen))


if __name__ == "__main__":
    unittest.main()
