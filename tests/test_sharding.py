"""Sharded placement and the runner over 1, 2, 4 and 8 simulated CPU devices."""

import json

import jax
import numpy as np
import pytest

from funcgrad import sharding
from tests.cli import run_in_fresh_process, run_in_process
from tests.helpers import assert_one_line_error, run_module


def test_parse_mesh():
  assert sharding.parse_mesh("4") == (4,)
  assert sharding.parse_mesh("2x2") == (2, 2)
  for bad in ("", "0", "2x", "2x2x2", "ax2"):
    with pytest.raises(ValueError, match="Invalid mesh"):
      sharding.parse_mesh(bad)


def test_single_device_mesh_and_errors():
  mesh = sharding.make_mesh((1,))
  x = sharding.shard(np.arange(12, dtype=np.float32).reshape(3, 4), mesh)
  assert "data=1 over 1 devices" in sharding.describe(x)
  np.testing.assert_array_equal(x, np.arange(12).reshape(3, 4))
  with pytest.raises(ValueError, match=r"Mesh 64 needs 64 devices.*--simulate_cpu_devices=64"):
    sharding.make_mesh((64,))
  assert sharding.describe(jax.device_put(np.ones(3))).startswith("1 device(s)")


def test_specs():
  mesh = sharding.make_mesh((1, 1))
  assert sharding.spec_for(2, mesh) == jax.sharding.PartitionSpec("data", "model")
  assert sharding.spec_for(1, mesh) == jax.sharding.PartitionSpec(("data", "model"))
  assert sharding.spec_for(2, sharding.make_mesh((1,))) == jax.sharding.PartitionSpec("data", None)


def test_cpu_device_count_cannot_change_after_start():
  jax.devices()
  with pytest.raises(ValueError, match="already initialised"):
    sharding.set_cpu_device_count(8)
  with pytest.raises(ValueError, match=r"--simulate_cpu_devices=0: expected a device count in 1"):
    sharding.set_cpu_device_count(0)


SHARDED = [(1, None), (2, None), (4, None), (8, None), (4, "2x2"), (8, "4x2")]
# Eager over simulated devices costs seconds per sweep (every op dispatched to each device): it
# runs on the widest 1-D and 2-D meshes, the compiled engines on every one. One size (16x8
# divides over every mesh here): tests/test_compare_cli.py sweeps several sizes through the same
# path.
EAGER_TOO = {(8, None), (8, "4x2")}


def _engines(devices, mesh):
  return ("jit", "eager", "jit_packed") if (devices, mesh) in EAGER_TOO else ("jit", "jit_packed")


@pytest.mark.slow
def test_sharded_rows_equal_single_device(tmp_path):
  """Every sharded sweep, each through compare's CLI path, in ONE fresh process (simulated
  devices must be set before JAX starts, but JAX need not start once per sweep), and in one test:
  parametrised, pytest-xdist's workers would each start that process."""
  runs = []
  for devices, mesh in SHARDED:
    args = ["--simulate_cpu_devices=8", f"--devices={devices}",
            f"--engines={','.join(_engines(devices, mesh))}",
            "--sizes=16x8", "--min_run_time=0.01",
            f"--output_json={tmp_path / f'{devices}-{mesh}.json'}"]
    runs.append(("experiments.compare", args + ([f"--mesh={mesh}"] if mesh else [])))
  outcomes = run_in_fresh_process(runs)
  for (devices, mesh), result in zip(SHARDED, outcomes, strict=True):
    case = f"{devices} devices, mesh {mesh}"
    assert result.returncode == 0, (case, result.stderr[-2000:])
    rows = json.loads((tmp_path / f"{devices}-{mesh}.json").read_text())["results"]
    assert len(rows) == 2 * len(_engines(devices, mesh)), case  # two workloads, one size
    assert {r["engine"] for r in rows} == set(_engines(devices, mesh)), case
    for r in rows:
      assert r["ok"] and r["max_rel_err"] <= 1e-5, (case, r)
      assert r["n_devices"] == devices, (case, r)
      assert f"over {devices} devices" in r["sharding"], (case, r)
      if mesh:
        assert "model=" in r["sharding"], (case, r)


@pytest.mark.slow
def test_scaling_experiment(tmp_path):
  path = tmp_path / "s.json"
  result = run_module("experiments.scaling", "--size=64x16", "--device_counts=1,2,4",
                      "--min_run_time=0.01", f"--output_json={path}")
  assert result.returncode == 0, result.stderr[-2000:]
  doc = json.loads(path.read_text())
  assert [r["n_devices"] for r in doc["strong"]] == [1, 2, 4]
  assert [r["shape"] for r in doc["weak"]] == [[64, 16], [128, 16], [256, 16]]
  assert all(r["ok"] for r in doc["strong"] + doc["weak"])
  assert "strong scaling" in result.stdout and "weak scaling" in result.stdout


@pytest.mark.parametrize("module, args, fragments", [
    ("experiments.compare", ["--devices=4", "--sizes=8x8"], ["needs 4 devices", "there is 1"]),
    ("experiments.compare", ["--devices=3", "--mesh=2x2"], ["--devices=3", "--mesh=2x2"]),
    ("experiments.compare", ["--mesh=2x"], ["'2x'", "--mesh"]),
    ("experiments.scaling", ["--device_counts=1,x"], ["--device_counts='1,x'"]),
])
def test_bad_sharding_input(module, args, fragments):
  assert_one_line_error(run_in_process(module, *args), *fragments)


# These simulate CPU devices first, which only a process whose JAX has not started can do.
@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: a fresh process per case
@pytest.mark.parametrize("module, args, fragments", [
    ("experiments.compare", ["--simulate_cpu_devices=4", "--mesh=2x2", "--sizes=3x4"],
     ["3x4", "not a multiple of 2"]),
    ("experiments.scaling", ["--device_counts=16"], ["needs 16 devices"]),
])
def test_bad_sharding_input_with_simulated_devices(module, args, fragments):
  assert_one_line_error(run_module(module, *args), *fragments)
