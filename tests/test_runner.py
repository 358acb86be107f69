"""The sweep: cross-check before timing, failures recorded, memory refusal, backend choice."""

import dataclasses

import jax
import numpy as np
import pytest

from funcgrad.bench import engines, runner
from funcgrad.bench.workloads import ABS_LOSS, MULADD_SUM

FAST = dict(min_run_time=0.01, seed=0, dtype=np.dtype(np.float32))


def _no_bandwidth(device):
  del device
  return 10.0


def _swapped_numpy(workload, inputs, device):
  """An engine with the tutorial's bug: grad_x and grad_y swapped."""
  prepared = engines.ENGINES["numpy"].prepare(workload, inputs, device)
  value, gx, gy, gz = prepared.first_output
  return dataclasses.replace(prepared, first_output=(value, gy, gx, gz))


def _raising(workload, inputs, device):
  del workload, inputs, device
  raise MemoryError("pretend the device ran out of memory")


SWAPPED = engines.Engine("swapped", "numpy with grad_x/grad_y swapped", None, _swapped_numpy)
RAISING = engines.Engine("raising", "always raises", None, _raising)


def test_sweep_rows_in_order_with_every_field():
  config = runner.SweepConfig(workloads=[MULADD_SUM, ABS_LOSS],
                              engines=[engines.ENGINES["numpy"], engines.ENGINES["jit"]],
                              backends=["cpu"], sizes=[(3, 4), (8, 8)], **FAST)
  seen = []
  results = runner.run_sweep(config, lambda r, i, n: seen.append((r.engine, i, n)),
                             bandwidth=_no_bandwidth)
  assert [(r.workload, tuple(r.shape), r.engine) for r in results] == [
      ("muladd_sum", (3, 4), "numpy"), ("muladd_sum", (3, 4), "jit"),
      ("muladd_sum", (8, 8), "numpy"), ("muladd_sum", (8, 8), "jit"),
      ("abs_loss", (12,), "numpy"), ("abs_loss", (12,), "jit"),
      ("abs_loss", (64,), "numpy"), ("abs_loss", (64,), "jit")]
  assert seen[-1] == ("jit", 8, 8)
  for r in results:
    assert r.ok and r.error is None and r.max_rel_err <= r.tolerance
    assert r.median_s > 0 and r.blocks >= 3 and r.calls_per_block >= 1
    assert r.gbps == pytest.approx(r.bytes / r.median_s / 1e9)
    assert r.pct_of_bandwidth == pytest.approx(100 * r.gbps / 10.0)
    assert r.backend == "cpu" and r.dtype == "float32"
  jit = results[1]
  assert jit.trace_s > 0 and jit.lower_s > 0 and jit.compile_s > 0 and jit.dispatch_s > 0
  assert jit.device_kind == jax.devices("cpu")[0].device_kind
  numpy_row = results[0]
  assert numpy_row.trace_s is None and numpy_row.dispatch_s is None and numpy_row.device == "host"


def test_wrong_output_is_marked_and_never_timed():
  config = runner.SweepConfig(workloads=[MULADD_SUM], engines=[SWAPPED, engines.ENGINES["numpy"]],
                              backends=["cpu"], sizes=[(3, 4)], **FAST)
  wrong, right = runner.run_sweep(config, bandwidth=_no_bandwidth)
  assert not wrong.ok and wrong.max_rel_err > wrong.tolerance
  assert "differs from the float64 reference" in wrong.error
  assert wrong.median_s is None and wrong.blocks is None  # not timed
  assert right.ok


def test_raising_row_is_recorded_and_sweep_goes_on():
  config = runner.SweepConfig(workloads=[MULADD_SUM], engines=[RAISING, engines.ENGINES["numpy"]],
                              backends=["cpu"], sizes=[(3, 4), (5, 5)], **FAST)
  results = runner.run_sweep(config, bandwidth=_no_bandwidth)
  assert [r.ok for r in results] == [False, True, False, True]
  assert results[0].error.startswith("MemoryError: pretend the device ran out of memory")
  assert results[0].max_rel_err is None


def test_memory_refusal_before_allocation():
  config = runner.SweepConfig(workloads=[MULADD_SUM], engines=[engines.ENGINES["numpy"]],
                              backends=["cpu"], sizes=[(3, 4), (1_000_000, 1_000_000)], **FAST)
  with pytest.raises(ValueError, match=r"Size 1000000x1000000 of muladd_sum needs about .* GiB"):
    runner.check_fits(config)
  runner.check_fits(dataclasses.replace(config, sizes=[(1000, 1000)]))


def test_footprint_estimate():
  # 3 inputs + 3 grads, each in float32 twice (NumPy + engine) and once in float64.
  assert runner.footprint_bytes(MULADD_SUM, (10, 10), np.dtype(np.float32)) == 100 * 6 * 16


def test_backends():
  assert runner.resolve_backends(None, False) == list(runner.platforms_present())
  assert runner.resolve_backends(["cpu"], False) == ["cpu"]
  with pytest.raises(ValueError, match="Unknown backend 'xpu'"):
    runner.resolve_backends(["xpu"], False)


@pytest.mark.skipif("gpu" in runner.platforms_present(), reason="a GPU is present")
def test_absent_backend_is_an_error_unless_skipped():
  with pytest.raises(ValueError, match="Backend 'gpu' is not present here.*--skip_unavailable"):
    runner.resolve_backends(["cpu", "gpu"], False)
  assert runner.resolve_backends(["cpu", "gpu"], True) == ["cpu"]
  with pytest.raises(ValueError, match="None of the backends"):
    runner.resolve_backends(["gpu"], True)
