"""The roofline: copy bandwidth with one and every core, the last-level cache, measured once."""

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
