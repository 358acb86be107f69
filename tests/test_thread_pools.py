"""The thread-pool policy: its environment, how it is read back, and the restart that sets it."""

import json
import subprocess
import sys

import pytest

from funcgrad import thread_pools
from funcgrad.errors import UsageError
from tests.helpers import ROOT


def test_environment_per_policy():
  assert thread_pools.environment("spin") == {}
  assert thread_pools.environment("passive") == {"OMP_WAIT_POLICY": "PASSIVE",
                                                 "OPENBLAS_THREAD_TIMEOUT": "4"}
  with pytest.raises(UsageError, match="'lazy'.*spin, passive"):
    thread_pools.environment("lazy")


def test_in_use_needs_every_setting():
  assert thread_pools.in_use({}) == "spin"
  assert thread_pools.in_use({"OMP_WAIT_POLICY": "passive"}) == "spin"
  assert thread_pools.in_use({"OMP_WAIT_POLICY": "passive",
                              "OPENBLAS_THREAD_TIMEOUT": "4"}) == "passive"


@pytest.mark.slow
def test_passive_restarts_the_process_with_the_settings(tmp_path):
  """The real CLI: `--thread_pools=passive` restarts it, and the JSON records the policy."""
  path = tmp_path / "o.json"
  env = {k: v for k, v in __import__("os").environ.items()
         if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
  result = subprocess.run(
      [sys.executable, "-m", "experiments.optimize", "--loops=numpy", "--steps=10",
       "--min_run_time=0.01", "--thread_pools=passive", f"--output_json={path}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(path.read_text())["machine"]["thread_pools"] == "passive"
  assert "passive thread pools" in result.stdout
