"""An interrupted benchmark keeps every target it finished (a real process: signals need one).

It is also the benchmark's real-CLI run: the allocator flag's restart, JSON and Markdown out."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_ctrl_c_during_a_later_group_keeps_the_earlier_groups_targets(tmp_path):
  paths = {"json": tmp_path / "b.json", "md": tmp_path / "b.md"}
  job = subprocess.Popen(
      [sys.executable, "-m", "experiments.benchmark", "--targets=adam,cache", "--steps=50",
       "--repeats=1", "--min_run_time=0.05", "--allocator=system", f"--output_json={paths['json']}",
       f"--output_markdown={paths['md']}"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  seen, deadline = [], time.monotonic() + 120
  while time.monotonic() < deadline:  # the cache group's first line: adam's targets are done
    line = job.stderr.readline()
    seen.append(line)
    if not line or "fresh processes" in line:
      break
  assert "fresh processes" in seen[-1], "".join(seen)
  job.send_signal(signal.SIGINT)
  _, rest = job.communicate(timeout=60)
  errors = [ln for ln in rest.splitlines() if ln.startswith("error:")]
  assert job.returncode == 130, rest
  assert "Traceback" not in rest and len(errors) == 1, rest
  assert "finished targets in" in errors[0], errors
  document = json.loads(paths["json"].read_text())
  assert document["complete"] is False
  assert document["machine"]["allocator"] == "system"  # the flag's real restart
  assert [t["name"] for t in document["targets"]] == [
      "numpy / scan per Adam step (50 steps)", "numpy / jit_step per Adam step (50 steps)",
      "fusions per Adam step (scan)"]  # every adam target, none of the cache group's
  assert all(t["measured"] is not None for t in document["targets"])
  markdown = paths["md"].read_text()
  assert "| target | measured | goal | result | detail |" in markdown
  assert "numpy / scan per Adam step" in markdown and "Interrupted" in markdown
