"""The roofline: copy bandwidth with one and every core, the last-level cache, measured once and
only where a row is compared with it."""

import dataclasses

import jax
import numpy as np
import pytest

from funcgrad.bench import roofline, runner
from funcgrad.bench.case import Sweep
from funcgrad.bench.engines import ENGINES
from funcgrad.bench.workloads import WORKLOADS


def test_host_copy_moves_bytes_with_one_and_two_threads():
  for threads in (1, 2):
    gbps = roofline.host_copy_gbps(elements=1 << 20, threads=threads, repeats=2)
    assert 0.1 < gbps < 10_000  # GB/s: read plus write of 4 MB, best of two


def test_last_level_cache_is_the_highest_level_listed(tmp_path):
  for index, (level, size) in enumerate([("1", "32K"), ("3", "32768K"), ("2", "1M")]):
    folder = tmp_path / f"index{index}"
    folder.mkdir()
    (folder / "level").write_text(level + "\n")
    (folder / "size").write_text(size + "\n")
  (tmp_path / "index9").mkdir()  # unreadable entries are skipped, not fatal
  assert roofline.last_level_cache_bytes(str(tmp_path)) == 32 << 20
  assert roofline.last_level_cache_bytes(str(tmp_path / "absent")) is None


def test_measured_once_per_device():
  device = jax.devices("cpu")[0]
  first = roofline.measured_once(device)
  assert roofline.measured_once(device) is first
  assert first.copy_bandwidth_gbps >= first.copy_bandwidth_1thread_gbps > 0
  assert first.peak_gflops > 0 and first.copy_threads == roofline.usable_cores()


def test_a_row_above_a_peak_exceeds_it():
  peaks = roofline.Roofline(copy_bandwidth_gbps=20.0, peak_gflops=94.0)
  assert roofline.exceeded(peaks, 21.0, None) and roofline.exceeded(peaks, None, 150.0)
  assert not roofline.exceeded(peaks, 19.0, 90.0) and not roofline.exceeded(peaks, None, None)
  assert not roofline.exceeded(roofline.Roofline(20.0), None, 1e6)  # no matmul peak measured


def test_remeasured_keeps_the_higher_peaks_for_later_sweeps():
  device = jax.devices("cpu")[0]
  before = roofline.measured_once(device)
  disturbed = dataclasses.replace(before, copy_bandwidth_gbps=1.0, peak_gflops=1.0)
  fresh = dataclasses.replace(before, copy_bandwidth_gbps=30.0, peak_gflops=0.5)
  del roofline._MEASURED[device]  # as if nothing better were known yet
  try:
    best = roofline.remeasured(device, disturbed, measure_fn=lambda d: fresh)
    assert (best.copy_bandwidth_gbps, best.peak_gflops) == (30.0, 1.0)
    assert roofline.measured_once(device) is best
  finally:
    roofline._MEASURED[device] = before


def test_a_peak_is_measured_only_when_asked_for():
  device = jax.devices("cpu")[0]
  nothing = roofline.measure(device, copy=False, matmul=False)
  assert nothing.copy_bandwidth_gbps is None and nothing.copy_threads is None
  assert nothing.peak_gflops is None
  assert nothing.llc_bytes == roofline.last_level_cache_bytes()  # read, not measured
  matmul = roofline.measure(device, elements=1 << 20, copy=False)
  assert matmul.peak_gflops > 0 and matmul.copy_bandwidth_gbps is None


@pytest.fixture
def measured(monkeypatch):
  """What `measured_once` asks `measure` for, with nothing measured yet (fake, instant peaks)."""
  asked = []

  def measure(device, copy=True, matmul=True):
    del device
    asked.append((copy, matmul))
    return roofline.Roofline(20.0 if copy else None, 10.0 if copy else None,
                             2 if copy else None, 1 << 20, 90.0 if matmul else None)

  monkeypatch.setattr(roofline, "measure", measure)
  monkeypatch.setattr(roofline, "_MEASURED", {})
  return asked


def test_measured_once_measures_a_missing_peak_later_and_keeps_the_known_one(measured):
  device = jax.devices("cpu")[0]
  first = roofline.measured_once(device, copy=False)
  assert (first.copy_bandwidth_gbps, first.peak_gflops) == (None, 90.0)
  assert roofline.measured_once(device, copy=False) is first  # nothing new: nothing measured
  both = roofline.measured_once(device)
  assert (both.copy_bandwidth_gbps, both.copy_threads, both.peak_gflops) == (20.0, 2, 90.0)
  assert measured == [(False, True), (True, False)]


def _cases(workload, *shapes):
  return Sweep([WORKLOADS[workload]], [ENGINES["jit"]], ["cpu"], list(shapes), np.float32).cases()


def test_a_sweep_gets_only_the_peaks_its_rows_are_compared_with(measured):
  # The fake roofline's cache is 1 MB.
  (cached,) = runner.measure_rooflines(_cases("muladd_sum", (3, 4))).values()
  assert cached.copy_bandwidth_gbps is None and cached.peak_gflops is None
  assert measured == [(False, False)]  # a 3x4 sum fits in the cache: no copy to compare with
  runner.measure_rooflines(_cases("muladd_sum", (3, 4), (1000, 1000)))
  assert measured[-1] == (True, False)  # 1000x1000 floats do not fit in 1 MB
  runner.measure_rooflines(_cases("mlp", (16, 32)))
  assert measured[-1] == (False, True)  # a compute-bound model is compared with the matmul peak


def test_remeasured_measures_again_only_the_peaks_it_had(measured):
  device = jax.devices("cpu")[0]
  best = roofline.remeasured(device, roofline.Roofline(peak_gflops=50.0))  # a disturbed peak
  assert measured == [(False, True)]  # no copy bandwidth was asked for: none is measured now
  assert (best.copy_bandwidth_gbps, best.peak_gflops) == (None, 90.0)
