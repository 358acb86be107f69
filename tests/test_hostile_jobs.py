"""Hostile battery, round two: multi-process jobs and device counts.

A job's children die with it on any signal (SIGKILL included); processes started with different
flags are refused with one line before the first real collective (it used to abort inside XLA);
`--coordinator=0.0.0.0:P` says that it listens on IPv6 too; every device count is bounded before
anything is allocated. Jobs need real processes (marked slow); flag bounds run in this process.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from funcgrad import distributed
from tests.cli import run_in_process
from tests.helpers import ROOT
from tests.test_hostile import _alive, _children, assert_refused

BOUNDS = [
    ("experiments.compare", ["--simulate_cpu_devices=100000", "--sizes=3x4"],
     ["--simulate_cpu_devices"]),
    ("experiments.compare", ["--devices=100000", "--sizes=3x4"], ["--devices", "1024"]),
    ("experiments.compare", ["--mesh=2000x2000", "--sizes=3x4"], ["--mesh", "1..1024"]),
    ("experiments.distributed", ["--local_processes=2", "--local_devices=100000"],
     ["--local_devices"]),
    ("experiments.scaling", ["--device_counts=1,100000"], ["--device_counts", "1..1024"]),
]


@pytest.mark.parametrize("module, args, fragments", BOUNDS, ids=lambda v: str(v)[:40])
def test_every_device_count_is_bounded(module, args, fragments):
  assert_refused(run_in_process(module, *args), *fragments, limit_s=10.0)


def _job(*args):
  return subprocess.Popen([sys.executable, "-m", "experiments.distributed", *args], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _children_started(job, count=2, timeout=30):
  deadline, children = time.monotonic() + timeout, []
  while len(children) < count and time.monotonic() < deadline and job.poll() is None:
    time.sleep(0.1)
    children = _children(job.pid)
  assert len(children) >= count, job.communicate(timeout=5)
  return children


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                          (signal.SIGKILL, -9)], ids=["TERM", "HUP", "KILL"])
def test_a_jobs_children_die_with_it_on_any_signal(signum, code):
  job = _job("--local_processes=2", "--repeats=100000", "--timeout=60")
  children = _children_started(job)
  time.sleep(0.5)
  job.send_signal(signum)
  _, stderr = job.communicate(timeout=30)
  assert job.returncode == code, stderr
  if signum != signal.SIGKILL:
    job.seconds = 0.0
    job.stderr = stderr
    assert_refused(job, "interrupted", "stopped the 2 local processes", code=code)
  deadline = time.monotonic() + 10
  while [c for c in children if _alive(c)] and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not [c for c in children if _alive(c)], children


@pytest.mark.slow
def test_peers_whose_flags_differ_are_refused_before_the_first_collective():
  port = distributed.free_port()
  common = [f"--coordinator=127.0.0.1:{port}", "--num_processes=2", "--timeout=40"]
  first = _job(*common, "--process_id=0")
  second = _job(*common, "--process_id=1", "--size=32x32")
  outcomes = [p.communicate(timeout=60) for p in (first, second)]
  for process, (_, stderr) in zip((first, second), outcomes, strict=True):
    assert process.returncode == 1, stderr
    assert "Fatal Python error" not in stderr and "terminate" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "with other values" in errors[0], stderr
    assert "--size=" in errors[0]


@pytest.mark.slow
def test_a_wildcard_coordinator_says_it_listens_on_ipv6_too():
  port = distributed.free_port()
  job = _job(f"--coordinator=0.0.0.0:{port}", "--num_processes=2", "--process_id=0",
             "--timeout=2")
  _, stderr = job.communicate(timeout=60)
  notes = [ln for ln in stderr.splitlines() if ln.startswith("note:")]
  assert notes and "IPv6" in notes[0] and f"[::]:{port}" in notes[0], stderr
  assert job.returncode != 0  # nobody joined: one error line after the note
  assert len([ln for ln in stderr.splitlines() if ln.startswith("error:")]) == 1, stderr
  assert not os.path.exists(f"/proc/{job.pid}")
