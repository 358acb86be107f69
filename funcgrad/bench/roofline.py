"""The physical limits rows are compared with, measured once per backend.

Memory: copy bandwidth (bytes read plus bytes written). On the host it is measured with every
core this process may use (`os.sched_getaffinity`): one NumPy copy per thread over disjoint
slices, all threads released together, best of several; XLA's CPU code uses every core, so a
single-threaded copy would be the wrong limit (it is recorded too). On a GPU: a device-to-device
copy compiled by JAX. A row whose working set fits in the last-level cache is marked
`cache_resident` rather than compared with DRAM bandwidth.

Each peak is measured only where a row is compared with it (`measure(copy=..., matmul=...)`):
a sweep whose rows all fit in the cache never needs the copy bandwidth, one without a
compute-bound row never needs the matmul peak, and each costs about a second.
"""

import concurrent.futures
import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad.bench.timing import Timer

DEFAULT_ELEMENTS = 1 << 26  # 64M float32 = 256 MB per buffer: far past any CPU cache
COPY_REPEATS = 7  # a copy bandwidth is the best of this many timed copies
_SYSFS_CACHE = "/sys/devices/system/cpu/cpu0/cache"
_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


@dataclasses.dataclass(frozen=True)
class Roofline:
  """What one backend's rows are compared with.

  Attributes:
    copy_bandwidth_gbps: copy bandwidth with every usable core (host) or on the device (GPU);
      None when not measured (no row of the sweep is compared with it).
    copy_bandwidth_1thread_gbps: the host's single-threaded copy bandwidth (None on a GPU or
      when not measured).
    copy_threads: threads of the all-core host copy (None on a GPU or when not measured).
    llc_bytes: the host's last-level cache size from sysfs (None when unknown or on a GPU).
    peak_gflops: a large float32 matmul's rate (NumPy's BLAS on the host, JAX on a GPU): the
      arithmetic roofline of matmul-bound rows (None when not measured).
  """

  copy_bandwidth_gbps: float | None = None
  copy_bandwidth_1thread_gbps: float | None = None
  copy_threads: int | None = None
  llc_bytes: int | None = None
  peak_gflops: float | None = None

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def usable_cores() -> int:
  """The cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def _parse_cache_size(text: str) -> int | None:
  text = text.strip()
  if text[-1:] in _SIZE_UNITS and text[:-1].isdigit():
    return int(text[:-1]) * _SIZE_UNITS[text[-1]]
  return int(text) if text.isdigit() else None


def last_level_cache_bytes(root: str = _SYSFS_CACHE) -> int | None:
  """The size of the highest-level cache listed for cpu0 in sysfs (None when unreadable)."""
  best: tuple[int, int] | None = None
  try:
    entries = sorted(e for e in os.listdir(root) if e.startswith("index"))
  except OSError:
    return None
  for entry in entries:
    try:
      with open(os.path.join(root, entry, "level"), encoding="ascii") as f:
        level = int(f.read(16).strip())
      with open(os.path.join(root, entry, "size"), encoding="ascii") as f:
        size = _parse_cache_size(f.read(32))
    except (OSError, ValueError):
      continue
    if size is not None and (best is None or level > best[0]):
      best = (level, size)
  return best[1] if best else None


def host_copy_gbps(elements: int = DEFAULT_ELEMENTS, threads: int = 1,
                   repeats: int = COPY_REPEATS) -> float:
  """Best-of-`repeats` NumPy copy bandwidth in GB/s (read + write) with `threads` threads, each
  copying its own slice (NumPy releases the GIL while it copies)."""
  return _copy_gbps(*_copy_buffers(elements), threads, repeats)


def _copy_buffers(elements: int) -> tuple[np.ndarray, np.ndarray]:
  src = np.ones(elements, np.float32)
  return src, np.zeros_like(src)  # both touched now, so the timed copies never page-fault


def _copy_gbps(src: np.ndarray, dst: np.ndarray, threads: int, repeats: int) -> float:
  bounds = np.linspace(0, src.size, threads + 1).astype(int)
  slices = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
  if threads == 1:
    timer = Timer(functools.partial(np.copyto, dst, src), sync=lambda out: out)
    best = min(timer.timeit(1) for _ in range(repeats))
    return 2 * src.nbytes / best / 1e9
  barrier = threading.Barrier(threads + 1)

  def copy(pair):
    barrier.wait()
    np.copyto(*pair)

  best = float("inf")
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    for _ in range(repeats):
      futures = [pool.submit(copy, pair) for pair in slices]
      barrier.wait()  # every thread is at the start line: go
      start = time.perf_counter()
      for future in futures:
        future.result()
      best = min(best, time.perf_counter() - start)
  return 2 * src.nbytes / best / 1e9


def device_copy_gbps(device: jax.Device, elements: int = DEFAULT_ELEMENTS,
                     repeats: int = COPY_REPEATS) -> float:
  """Best-of-`repeats` device-to-device copy bandwidth through JAX, in GB/s (read + write)."""
  src = jax.device_put(jnp.ones(elements, jnp.float32), device)
  copy = jax.jit(jnp.copy)
  timer = Timer(functools.partial(copy, src))
  timer.timeit(2)  # compile and warm
  best = min(timer.timeit(1) for _ in range(repeats))
  return 2 * src.nbytes / best / 1e9


def host_matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
  """Best-of-`repeats` float32 n x n matmul rate through NumPy (its BLAS, all its threads)."""
  rng = np.random.default_rng(0)
  a, b = (rng.standard_normal((n, n), np.float32) for _ in range(2))
  out = np.empty((n, n), np.float32)
  np.matmul(a, b, out=out)  # warm: threads started, pages touched
  timer = Timer(functools.partial(np.matmul, a, b, out=out), sync=lambda result: result)
  best = min(timer.timeit(1) for _ in range(repeats))
  return 2 * n**3 / best / 1e9


def device_matmul_gflops(device: jax.Device, n: int = 8192, repeats: int = 5) -> float:
  """Best-of-`repeats` float32 n x n matmul rate through JAX on `device`."""
  a = jax.device_put(jnp.ones((n, n), jnp.float32), device)
  matmul = jax.jit(jnp.matmul)
  timer = Timer(functools.partial(matmul, a, a))
  timer.timeit(2)
  best = min(timer.timeit(1) for _ in range(repeats))
  return 2 * n**3 / best / 1e9


def measure(device: jax.Device, elements: int = DEFAULT_ELEMENTS, copy: bool = True,
            matmul: bool = True) -> Roofline:
  """The roofline for rows on `device`'s backend: the copy bandwidth (if `copy`) and the matmul
  rate (if `matmul`); the host's cache size always (it is read, not measured)."""
  if device.platform != "cpu":
    return Roofline(device_copy_gbps(device, elements) if copy else None,
                    peak_gflops=device_matmul_gflops(device) if matmul else None)
  measured = Roofline(llc_bytes=last_level_cache_bytes())
  if copy:
    threads = usable_cores()
    buffers = _copy_buffers(elements)  # one allocation for both copies (its page faults: ~0.4 s)
    one = _copy_gbps(*buffers, 1, COPY_REPEATS)
    every = _copy_gbps(*buffers, threads, COPY_REPEATS) if threads > 1 else one
    del buffers  # 512 MB, freed before the matmul
    measured = dataclasses.replace(measured, copy_bandwidth_gbps=max(one, every),
                                   copy_bandwidth_1thread_gbps=one, copy_threads=threads)
  return dataclasses.replace(measured, peak_gflops=host_matmul_gflops() if matmul else None)


_MEASURED: dict[jax.Device, Roofline] = {}


def measured_once(device: jax.Device, copy: bool = True, matmul: bool = True) -> Roofline:
  """`measure(device)`'s peaks, each measured once per process and only when asked for: every
  later sweep on the device compares with them (or with what `remeasured` found since).

  Measuring takes about a second per peak (copies of two 256 MB buffers, a 2048 matmul), which a
  process that runs many sweeps (the benchmark, a notebook, the tests) would otherwise pay per
  sweep.
  """
  known = _MEASURED.get(device)
  copy = copy and (known is None or known.copy_bandwidth_gbps is None)
  matmul = matmul and (known is None or known.peak_gflops is None)
  if known is None or copy or matmul:
    fresh = measure(device, copy=copy, matmul=matmul)
    known = fresh if known is None else _with_measured(known, fresh)
    _MEASURED[device] = known
  return known


_COPY_FIELDS = ("copy_bandwidth_gbps", "copy_bandwidth_1thread_gbps", "copy_threads")


def _with_measured(known: Roofline, fresh: Roofline) -> Roofline:
  """`known` with the peaks `fresh` measured (its None fields were not measured)."""
  update = {f: getattr(fresh, f) for f in _COPY_FIELDS if fresh.copy_bandwidth_gbps is not None}
  if fresh.peak_gflops is not None:
    update["peak_gflops"] = fresh.peak_gflops
  return dataclasses.replace(known, **update)


def exceeded(roofline: Roofline, gbps: float | None, gflops: float | None) -> bool:
  """Whether a row ran faster than a peak allows: the peak was measured while something else
  ran (a row can never copy faster than the copy bandwidth, or multiply faster than the peak)."""
  over_copy = gbps is not None and roofline.copy_bandwidth_gbps is not None and \
      gbps > roofline.copy_bandwidth_gbps
  over_flops = gflops is not None and roofline.peak_gflops is not None and \
      gflops > roofline.peak_gflops
  return over_copy or over_flops


def remeasured(device: jax.Device, previous: Roofline,
               measure_fn: Callable[[jax.Device], Roofline] | None = None) -> Roofline:
  """Measures the peaks of `previous` again after a row exceeded it, keeping the higher of each
  (`measure_fn`: by default `measure`, of the peaks `previous` has).

  The result is what later sweeps of this process compare with. A row still above it was
  measured against a disturbed peak, and says so.
  """
  if measure_fn is None:
    fresh = measure(device, copy=previous.copy_bandwidth_gbps is not None,
                    matmul=previous.peak_gflops is not None)
  else:
    fresh = measure_fn(device)
  known = [previous, fresh, *([_MEASURED[device]] if device in _MEASURED else [])]
  best = dataclasses.replace(
      previous,
      copy_bandwidth_gbps=max(filter(None, (r.copy_bandwidth_gbps for r in known)), default=None),
      peak_gflops=max(filter(None, (r.peak_gflops for r in known)), default=None))
  _MEASURED[device] = best
  return best

