"""The roofline: copy bandwidth with one and every core, the last-level cache, measured once."""

import dataclasses

import jax

from funcgrad.bench import roofline


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
