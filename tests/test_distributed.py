"""Real multi-process jobs on 127.0.0.1 (gloo): agreement, dead or missing peers, a busy port."""

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from funcgrad import distributed
from tests.cli import run_in_process
from tests.helpers import ROOT, assert_one_line_error, run_module


def _join(port, process_id, *extra):
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.distributed", f"--coordinator=127.0.0.1:{port}",
       "--num_processes=2", f"--process_id={process_id}", *extra],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_process_job_agrees_with_one_process(tmp_path):
  path = tmp_path / "job.json"
  result = run_module("experiments.distributed", "--local_processes=2", "--local_devices=2",
                      "--size=64x32", f"--output_json={path}")
  assert result.returncode == 0, result.stderr
  assert "on 4 devices in 2 processes" in result.stdout
  assert "all processes agree with the single-process run" in result.stdout
  job = json.loads(path.read_text())
  assert job["num_processes"] == 2 and job["n_devices"] == 4 and job["ok"]
  assert job["max_rel_err"] <= 1e-5 and job["max_rel_diff_vs_single_process"] <= 1e-5
  assert "[Gloo]" not in result.stdout


@pytest.mark.slow
def test_abs_loss_job():
  result = run_module("experiments.distributed", "--local_processes=2", "--workload=abs_loss",
                      "--size=1024")
  assert result.returncode == 0, result.stderr
  assert "abs_loss value+grads on 4 devices" in result.stdout


@pytest.mark.slow
def test_a_killed_process_makes_the_survivor_exit_within_the_timeout():
  timeout = 10  # seconds, from each process's start: both join (2-5 s on 2 cores) before the kill
  port = distributed.free_port()
  survivor, victim = (_join(port, i, "--repeats=200000", f"--timeout={timeout}") for i in (0, 1))
  try:
    deadline = time.monotonic() + 60
    line = ""
    while "joined" not in line and time.monotonic() < deadline:
      line = victim.stderr.readline()
      if not line and victim.poll() is not None:
        break
    assert "joined" in line, victim.stderr.read()
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    _, err = survivor.communicate(timeout=60)
    assert survivor.returncode != 0
    assert time.monotonic() - killed_at < timeout + 5
    # Either gloo reports the lost peer at once, or the watchdog fires at the timeout.
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
  finally:
    for p in (survivor, victim):
      if p.poll() is None:
        p.kill()
      p.communicate()


@pytest.mark.slow
def test_a_process_that_never_joins():
  started = time.monotonic()
  result = run_module("experiments.distributed",
                      f"--coordinator=127.0.0.1:{distributed.free_port()}", "--num_processes=2",
                      "--process_id=0", "--timeout=2", timeout=60)
  assert time.monotonic() - started < 2 + 15
  assert_one_line_error(result, "did not finish within 2 s")


def test_coordinator_port_in_use():
  with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    result = run_in_process("experiments.distributed", f"--coordinator=127.0.0.1:{port}",
                            "--num_processes=2", "--process_id=0", "--timeout=5")
  assert_one_line_error(result, f"port {port}", "in use")


@pytest.mark.parametrize("args, fragments", [
    ([], ["--coordinator", "--local_processes"]),
    (["--coordinator=localhost", "--num_processes=2", "--process_id=0"], ["'localhost'"]),
    (["--coordinator=127.0.0.1:1234", "--num_processes=2", "--process_id=2"],
     ["--process_id=2", "0..1"]),
    (["--local_processes=0"], ["--local_processes=0"]),
])
def test_bad_input(args, fragments):
  assert_one_line_error(run_in_process("experiments.distributed", *args), *fragments)


def test_parse_address():
  assert distributed.parse_address("10.0.0.1:1234") == ("10.0.0.1", 1234)
  for bad in ("1234", "host:", "host:99999", ":80"):
    with pytest.raises(ValueError, match="Invalid coordinator"):
      distributed.parse_address(bad)
