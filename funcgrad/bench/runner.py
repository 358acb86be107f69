"""The sweep: backends x workloads x sizes x engines, each output checked, then timed.

For every row: make the inputs from the seed (once per size, shared by every engine), prepare
the engine (its first call is timed there), compare that first output with the float64 NumPy
reference, and only then time the steady state. A row that raises is recorded with its error and
the sweep goes on; `on_result` sees each row as it finishes so it can be streamed to disk.
"""

import dataclasses
import math
import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from funcgrad import sharding
from funcgrad.bench import roofline
from funcgrad.bench.engines import Engine, Prepared
from funcgrad.bench.timing import Timer
from funcgrad.bench.workloads import Workload, max_rel_error, tolerance
from funcgrad.devices import CUDA_INSTALL_HINT, platforms_present

MEMORY_HEADROOM = 0.5  # refuse sizes whose estimated footprint exceeds this share of free memory


@dataclasses.dataclass
class Result:
  """One measured row. Times in seconds; fields that do not apply are None."""

  workload: str
  engine: str
  backend: str
  device: str | None
  device_kind: str | None
  shape: list[int]
  dtype: str
  n_elements: int
  n_devices: int = 1
  sharding: str | None = None
  trace_s: float | None = None
  lower_s: float | None = None
  compile_s: float | None = None
  first_call_s: float | None = None
  dispatch_s: float | None = None
  median_s: float | None = None
  iqr_s: float | None = None
  min_s: float | None = None
  mean_s: float | None = None
  std_s: float | None = None
  blocks: int | None = None
  calls_per_block: int | None = None
  bytes: int | None = None
  gbps: float | None = None
  bandwidth_gbps: float | None = None
  pct_of_bandwidth: float | None = None
  max_rel_err: float | None = None
  tolerance: float | None = None
  ok: bool = False
  noisy: bool | None = None
  error: str | None = None

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """What to sweep."""

  workloads: Sequence[Workload]
  engines: Sequence[Engine]
  backends: Sequence[str]
  sizes: Sequence[tuple[int, ...]]
  dtype: np.dtype
  min_run_time: float = 0.2
  seed: int = 0
  mesh_shape: tuple[int, ...] | None = None  # shardable engines spread their inputs over it

  def cases(self) -> list[tuple[str, Workload, tuple[int, ...], Engine]]:
    """Every (backend, workload, shape, engine) row, in sweep order."""
    return [(b, w, w.shape_for(s), e) for b in self.backends for w in self.workloads
            for s in self.sizes for e in self.engines]


def resolve_backends(requested: Sequence[str] | None, skip_unavailable: bool) -> list[str]:
  """The backends to sweep: all present by default; absent ones are an error unless skipped.

  Raises:
    ValueError: an unknown or absent backend (the message lists those present).
  """
  present = platforms_present()
  if not requested:
    return list(present)
  chosen = []
  for backend in requested:
    if backend not in ("cpu", "gpu", "tpu"):
      raise ValueError(f"Unknown backend {backend!r}. Valid: cpu, gpu, tpu "
                       f"(present here: {', '.join(present)}).")
    if backend in present:
      chosen.append(backend)
    elif not skip_unavailable:
      hint = f" {CUDA_INSTALL_HINT}" if backend == "gpu" else ""
      raise ValueError(f"Backend {backend!r} is not present here (present: {', '.join(present)})."
                       f" Pass --skip_unavailable to sweep only those present.{hint}")
  if not chosen:
    raise ValueError(f"None of the backends {list(requested)} is present "
                     f"(present: {', '.join(present)}).")
  return chosen


def available_memory_bytes(backend: str) -> int | None:
  """Free memory where a backend's arrays live: device memory on a GPU, MemAvailable on the host."""
  if backend != "cpu":
    stats = jax.devices(backend)[0].memory_stats() or {}
    if "bytes_limit" in stats:
      return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return None
  try:
    with open("/proc/meminfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def footprint_bytes(workload: Workload, shape: tuple[int, ...], dtype: np.dtype) -> int:
  """Estimated peak bytes for one row: inputs and outputs in `dtype`, for the NumPy copy and the
  engine's copy, plus the float64 reference of both."""
  arrays = workload.n_inputs + len(workload.argnums)
  return math.prod(shape) * arrays * (2 * np.dtype(dtype).itemsize + 8)


def check_mesh(config: SweepConfig) -> None:
  """Refuses a mesh that needs more devices than a backend has, or sizes it cannot split evenly.

  Raises:
    ValueError: naming the mesh, the device count or the size.
  """
  if not config.mesh_shape:
    return
  for backend in config.backends:
    mesh = sharding.make_mesh(config.mesh_shape, jax.devices(backend))
    for workload in config.workloads:
      for size in config.sizes:
        sharding.check_divisible(workload.shape_for(size), mesh)


def check_fits(config: SweepConfig) -> None:
  """Refuses, before anything is allocated, sizes whose footprint would not fit in memory.

  Raises:
    ValueError: naming the size, the estimate and the memory available.
  """
  for backend in config.backends:
    available = available_memory_bytes(backend)
    if available is None:
      continue
    for workload in config.workloads:
      for size in config.sizes:
        shape = workload.shape_for(size)
        need = footprint_bytes(workload, shape, config.dtype)
        if need > MEMORY_HEADROOM * available:
          raise ValueError(
              f"Size {'x'.join(map(str, size))} of {workload.name} needs about "
              f"{need / 2**30:.1f} GiB on {backend}, more than {MEMORY_HEADROOM:.0%} of the "
              f"{available / 2**30:.1f} GiB available: refused before allocating. Pick a smaller "
              f"--sizes.")


def _measure(prepared: Prepared, result: Result, min_run_time: float) -> None:
  timer = Timer(prepared.call, prepared.sync)
  stats = timer.blocked_autorange(min_run_time=min_run_time)
  for field in ("median_s", "iqr_s", "min_s", "mean_s", "std_s", "blocks", "calls_per_block",
                "noisy"):
    setattr(result, field, getattr(stats, field))
  if prepared.measure_dispatch:
    result.dispatch_s = timer.dispatch_time(stats.calls_per_block)


def run_case(backend: str, workload: Workload, shape: tuple[int, ...], engine: Engine,
             inputs: tuple[np.ndarray, ...], reference: tuple[Any, tuple[float, ...]],
             dtype: np.dtype, min_run_time: float, bandwidth_gbps: float | None,
             mesh: Mesh | None = None) -> Result:
  """Prepares, checks, then times one row; any exception becomes the row's `error`."""
  result = Result(workload=workload.name, engine=engine.name, backend=backend, device=None,
                  device_kind=None, shape=list(shape), dtype=np.dtype(dtype).name,
                  n_elements=math.prod(shape), tolerance=tolerance(dtype),
                  bytes=workload.bytes_moved(shape, np.dtype(dtype).itemsize),
                  bandwidth_gbps=bandwidth_gbps)
  try:
    device = jax.devices(backend)[0]
    if mesh is not None and engine.shardable:
      prepared = engine.prepare(workload, inputs, device, mesh=mesh)
    else:
      prepared = engine.prepare(workload, inputs, device)
    result.device, result.device_kind = prepared.device, prepared.device_kind
    result.n_devices, result.sharding = prepared.n_devices, prepared.sharding
    for stage, seconds in prepared.stages.items():
      setattr(result, stage, seconds)
    want, scales = reference
    result.max_rel_err = max_rel_error(prepared.to_numpy(prepared.first_output), want, scales)
    result.ok = bool(result.max_rel_err <= result.tolerance)
    if not result.ok:
      result.error = (f"output differs from the float64 reference: max relative error "
                      f"{result.max_rel_err:.3g} > {result.tolerance:g}; not timed")
      return result
    _measure(prepared, result, min_run_time)
  except Exception as e:  # noqa: BLE001 - a failing row is data; the sweep goes on.
    result.ok = False
    result.error = f"{type(e).__name__}: {e}".strip()
    last = traceback.extract_tb(e.__traceback__)[-1:]
    if last:
      result.error += f" (at {os.path.basename(last[0].filename)}:{last[0].lineno})"
    return result
  result.gbps = result.bytes / result.median_s / 1e9
  if bandwidth_gbps:
    result.pct_of_bandwidth = 100 * result.gbps / bandwidth_gbps
  return result


def run_sweep(config: SweepConfig,
              on_result: Callable[[Result, int, int], None] = lambda r, i, n: None,
              bandwidth: Callable[[jax.Device], float] = roofline.copy_bandwidth_gbps
              ) -> list[Result]:
  """Runs every case of `config`, calling `on_result(result, index, total)` after each.

  Returns:
    The results in sweep order.
  """
  cases = config.cases()
  meshes = {b: sharding.make_mesh(config.mesh_shape, jax.devices(b))
            for b in config.backends} if config.mesh_shape else {}
  results: list[Result] = []
  bandwidths: dict[str, float] = {}
  inputs_for: dict[tuple[str, tuple[int, ...]], Any] = {}
  for backend, workload, shape, engine in cases:
    if backend not in bandwidths:
      bandwidths[backend] = bandwidth(jax.devices(backend)[0])
    key = (workload.name, shape)
    if key not in inputs_for:
      inputs_for.clear()  # one size's inputs alive at a time
      inputs = workload.make_inputs(shape, config.dtype, config.seed)
      inputs_for[key] = (inputs, workload.reference(*inputs))
    inputs, reference = inputs_for[key]
    result = run_case(backend, workload, shape, engine, inputs, reference, config.dtype,
                      config.min_run_time, bandwidths[backend], meshes.get(backend))
    results.append(result)
    on_result(result, len(results), len(cases))
  return results
