"""An interrupted benchmark keeps every target it finished (a real process: signals need one)."""

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
  names = [t["name"] for t in document["targets"]]
  assert any(n.startswith("numpy / scan per Adam step") for n in names), names
  assert not any("cache" in n for n in names), names
  markdown = paths["md"].read_text()
  assert "numpy / scan per Adam step" in markdown and "Interrupted" in markdown
