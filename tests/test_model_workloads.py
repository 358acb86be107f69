"""mlp, mlp_train and attention through the runner: every engine checked, sizes refused clearly."""

import os

import jax
import numpy as np
import pytest

from funcgrad import nn
from funcgrad.bench import engines, runner
from funcgrad.bench.case import Placement, Sweep, Timing
from funcgrad.bench.workloads import WORKLOADS
from funcgrad.bench.workloads.model import max_rel_error
from funcgrad.errors import UsageError

SIZES = {"mlp": (16, 32), "mlp_train": (16, 32), "attention": (16, 128)}
FAST = dict(timing=Timing(min_run_time=0.01, seed=0), dtype=np.dtype(np.float32))


def _engine_or_skip(name):
  engine = engines.ENGINES[name]
  if not engine.available():
    if os.environ.get("FUNCGRAD_REQUIRE_PEERS"):
      pytest.fail(f"{engine.requires} must be installed here (FUNCGRAD_REQUIRE_PEERS is set)")
    pytest.skip(f"{engine.requires} not installed")
  return engine


ENGINE_NAMES = ("numpy", "eager", "jit", "jit_packed", "jit_scan", "torch_eager", "tf_eager",
                "tf_function", "tf_xla")


def _quick(name: str, engine_name: str) -> bool:
  """In the quick subset (-m "not slow", within 90 s): JAX's own compiled engines and NumPy on
  every model. The eager rows (every op dispatched on its own: 2-5 s each on 2 cores) and the
  peers' (1.5-4 s) are `slow`; tests/test_engines.py checks the eager engine and the peers on
  the tutorial's workloads in the quick subset."""
  return engine_name != "eager" and engines.ENGINES[engine_name].requires is None


@pytest.mark.parametrize("name, engine_name", [
    pytest.param(n, e, marks=() if _quick(n, e) else pytest.mark.slow, id=f"{e}-{n}")
    for n in SIZES for e in ENGINE_NAMES])
def test_every_engine_agrees_with_the_float64_reference(name, engine_name):
  engine = _engine_or_skip(engine_name)
  workload = WORKLOADS[name]
  inputs = workload.make_inputs(workload.check_size(SIZES[name]), np.float32, 1)
  reference = workload.expected(inputs)
  training_gap = workload.kind == "train" and engine_name in (
      "jit_packed", "tf_eager", "tf_function", "tf_xla")
  scan_gap = workload.kind != "train" and engine_name == "jit_scan"
  assert (engine.missing(workload) is not None) == (training_gap or scan_gap), engine_name
  if training_gap or scan_gap:
    return
  prepared = engine.prepare(workload, inputs, Placement(jax.devices("cpu")[0]))
  error = max_rel_error(prepared.first_output, reference.outputs, reference.scales)
  assert error <= workload.tolerance(np.float32), (engine_name, name, error)


def test_mlp_train_check_catches_a_missing_update():
  workload = WORKLOADS["mlp_train"]
  inputs = workload.make_inputs((16, 32), np.float32, 0)
  reference = workload.expected(inputs)
  params, _, _ = inputs
  loss = reference.outputs[-1]
  unchanged = (*(np.asarray(leaf) for leaf in jax.tree.leaves(params)), loss)
  assert max_rel_error(unchanged, reference.outputs, reference.scales) > \
      workload.tolerance(np.float32)


@pytest.mark.parametrize("name, size, message", [
    ("mlp", (3,), "mlp size '3' must be BATCHxWIDTH"),
    ("attention", (16, 100), "DIM must be a positive multiple of 64"),
    ("mlp_train", (0, 4), "BATCHxWIDTH"),
])
def test_sizes_that_do_not_fit_are_refused(name, size, message):
  with pytest.raises(UsageError, match=message):
    WORKLOADS[name].check_size(size)


def test_rows_carry_flops_and_the_matmul_roofline():
  sweep = Sweep(workloads=[WORKLOADS["mlp"]], engines=[engines.ENGINES["jit"]],
                backends=["cpu"], sizes=[(16, 32)], **FAST)
  from funcgrad.bench.roofline import Roofline
  (row,) = runner.run_sweep(sweep.cases(), rooflines={"cpu": Roofline(10.0, peak_gflops=50.0)})
  assert row.ok and row.bound == "compute"
  assert row.flops == nn.mlp_flops(16, 32)
  assert row.gflops == pytest.approx(row.flops / row.median_s / 1e9)
  assert row.pct_of_peak_flops == pytest.approx(100 * row.gflops / 50.0)


def test_data_parallel_mlp_equals_one_device():
  # The CPU backend has one device unless simulated: a 1-device mesh still goes through the
  # batch split and parameter replication.
  sweep = Sweep(workloads=[WORKLOADS["mlp"]], engines=[engines.ENGINES["jit"]],
                backends=["cpu"], sizes=[(16, 32)], mesh_shape=(1,), **FAST)
  (row,) = runner.run_sweep(sweep.cases(), rooflines={})  # the mesh checked there
  assert row.ok and row.n_devices == 1 and row.max_rel_err <= row.tolerance


@pytest.mark.slow
def test_models_through_the_real_cli_split_over_simulated_devices(tmp_path):
  from tests.helpers import run_module

  path = tmp_path / "m.json"
  result = run_module("experiments.compare", "--workloads=mlp,attention", "--sizes=64x128",
                      "--engines=numpy,jit", "--simulate_cpu_devices=4", "--devices=4",
                      "--min_run_time=0.01", f"--output_json={path}")
  assert result.returncode == 0, result.stderr[-2000:]
  import json

  rows = json.loads(path.read_text())["results"]
  jit = [r for r in rows if r["engine"] == "jit"]
  assert len(jit) == 2 and all(r["ok"] and r["n_devices"] == 4 for r in jit)
  assert all("over 4 devices" in r["sharding"] for r in jit)
  assert all(r["flops"] > 0 and r["bound"] == "compute" for r in rows)
