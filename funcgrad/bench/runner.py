"""The sweep: backends x workloads x sizes, every engine checked, then timed in rounds.

For one (backend, workload, shape), `run_case` makes the inputs from the seed (shared by every
engine), prepares every engine (its first call is timed there) and checks that first output
against the float64 reference; then it times the engines that passed in interleaved rounds (see
`timing.time_rounds`). A row that raises is recorded with its error, an engine a workload does
not implement is marked so, and the sweep goes on; `on_result` sees each row as it is final so
it can be streamed to disk.
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
from funcgrad.bench import roofline as roofline_lib
from funcgrad.bench.engines import Engine, NotImplementedForWorkload, Prepared
from funcgrad.bench.timing import Timer, per_call_stats, time_rounds
from funcgrad.bench.workload import Reference, Workload, max_rel_error
from funcgrad.devices import CUDA_INSTALL_HINT, platforms_present
from funcgrad.errors import UsageError
from funcgrad.shapes import Shape, format_shape

MEMORY_HEADROOM = 0.5  # refuse sizes whose estimated footprint exceeds this share of free memory

# A row's status.
OK, WRONG, FAILED, NOT_IMPLEMENTED = "ok", "wrong", "failed", "not_implemented"


@dataclasses.dataclass(slots=True)
class Result:
  """One row: a workload at one shape on one engine and backend. Seconds; None: not applicable.

  `block_times_s` holds every timed block's per-call time (like torch.utils.benchmark's
  `Measurement.raw_times`); with interleaving, block i of every engine of a case ran in round i.
  """

  workload: str
  engine: str
  backend: str
  shape: list[int]
  dtype: str
  n_elements: int
  status: str = "pending"
  bound: str = "memory"
  device: str | None = None
  device_kind: str | None = None
  n_devices: int = 1
  sharding: str | None = None
  reference: str | None = None
  trace_s: float | None = None
  lower_s: float | None = None
  compile_s: float | None = None
  compiles: int | None = None
  executable_cache: str | None = None
  first_call_s: float | None = None
  dispatch_s: float | None = None
  median_s: float | None = None
  iqr_s: float | None = None
  min_s: float | None = None
  mean_s: float | None = None
  std_s: float | None = None
  blocks: int | None = None
  calls_per_block: int | None = None
  block_times_s: list[float] | None = None
  interleaved: bool | None = None
  steps_per_call: int | None = None
  bytes: int | None = None
  gbps: float | None = None
  bandwidth_gbps: float | None = None
  pct_of_bandwidth: float | None = None
  cache_resident: bool | None = None
  flops: int | None = None
  gflops: float | None = None
  peak_gflops: float | None = None
  pct_of_peak_flops: float | None = None
  max_rel_err: float | None = None
  tolerance: float | None = None
  ok: bool = False
  noisy: bool | None = None
  error: str | None = None
  peak_disturbed: bool | None = None  # above its peak even after re-measuring it

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """What to sweep, and how to time it."""

  workloads: Sequence[Workload]
  engines: Sequence[Engine]
  backends: Sequence[str]
  sizes: Sequence[Shape]
  dtype: np.dtype
  min_run_time: float = 0.2
  seed: int = 0
  mesh_shape: tuple[int, ...] | None = None  # shardable engines spread their inputs over it
  interleave: bool = True
  cache_dir: str | None = None  # cacheable engines load or store their executables here

  def cases(self) -> list[tuple[str, Workload, Shape]]:
    """Every (backend, workload, shape), in sweep order (a shape once per workload)."""
    cases = []
    for backend in self.backends:
      for workload in self.workloads:
        shapes = dict.fromkeys(workload.check_size(s) for s in self.sizes)
        cases += [(backend, workload, shape) for shape in shapes]
    return cases

  def rows(self) -> int:
    return len(self.cases()) * len(self.engines)


def resolve_backends(requested: Sequence[str] | None, skip_unavailable: bool) -> list[str]:
  """The backends to sweep: all present by default; absent ones are an error unless skipped.

  Raises:
    UsageError: an unknown or absent backend (the message lists those present).
  """
  present = platforms_present()
  if not present:
    raise UsageError("JAX can reach no platform here (is JAX_PLATFORMS set to one that is not "
                     "installed?); unset JAX_PLATFORMS or install the backend.")
  if not requested:
    return list(present)
  chosen = []
  for backend in dict.fromkeys(requested):
    if backend not in ("cpu", "gpu", "tpu"):
      raise UsageError(f"Unknown backend {backend!r} in --backends. Valid: cpu, gpu, tpu "
                       f"(present here: {', '.join(present)}).")
    if backend in present:
      chosen.append(backend)
    elif not skip_unavailable:
      hint = f" {CUDA_INSTALL_HINT}" if backend == "gpu" else ""
      raise UsageError(f"Backend {backend!r} in --backends is not present here (present: "
                       f"{', '.join(present)}). Pass --skip_unavailable to sweep only those "
                       f"present.{hint}")
  if not chosen:
    raise UsageError(f"None of the backends {list(requested)} in --backends is present "
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


def input_bytes(workload: Workload, shape: Shape, dtype: np.dtype) -> int:
  """The bytes one call moves at least (inputs and outputs once), or an estimate of two arrays."""
  if workload.bytes_moved is not None:
    return workload.bytes_moved(shape, np.dtype(dtype).itemsize)
  return 2 * math.prod(shape) * np.dtype(dtype).itemsize


def footprint_bytes(workload: Workload, shape: Shape, dtype: np.dtype, engines: int = 1) -> int:
  """Estimated peak bytes for one case: every engine's inputs and outputs in `dtype` (all are
  alive together while they are timed in rounds), plus the float64 reference."""
  moved = input_bytes(workload, shape, dtype)
  return moved * (engines + 1) + moved * 8 // np.dtype(dtype).itemsize


def check_shape_memory(shapes: Sequence[Shape], dtype: np.dtype, backend: str = "cpu",
                       copies: int = 4) -> None:
  """Refuses, before allocating, arrays of `shapes` whose `copies` would not fit in memory.

  Raises:
    UsageError: naming the shapes, the estimate and the memory available.
  """
  need = copies * sum(math.prod(s) for s in shapes) * max(8, np.dtype(dtype).itemsize)
  available = available_memory_bytes(backend)
  if available is not None and need > MEMORY_HEADROOM * available:
    raise UsageError(f"Shapes {', '.join(format_shape(s) for s in shapes)} need about "
                     f"{need / 2**30:.1f} GiB, more than {MEMORY_HEADROOM:.0%} of the "
                     f"{available / 2**30:.1f} GiB available: refused before allocating.")


def check_mesh(config: SweepConfig) -> None:
  """Refuses a mesh that needs more devices than a backend has, sizes it cannot split evenly, or
  workloads whose inputs are not split.

  Raises:
    UsageError: naming the mesh, the device count, the size or the workload.
  """
  if not config.mesh_shape:
    return
  for backend in config.backends:
    mesh = sharding.make_mesh(config.mesh_shape, jax.devices(backend))
    for _, workload, shape in config.cases():
      if not workload.shardable:
        raise UsageError(f"--devices/--mesh do not apply to workload {workload.name}: its inputs "
                         "are not split over devices. Run it without them.")
      if workload.batch_args is None:
        sharding.check_divisible(shape, mesh)
      else:
        sharding.check_batch_divisible(shape[0], mesh)  # BATCHx... / SEQx...: rows split
    del mesh


def check_fits(config: SweepConfig) -> None:
  """Refuses, before anything is allocated, sizes whose footprint would not fit in memory.

  Raises:
    UsageError: naming the size, the estimate and the memory available.
  """
  for backend in config.backends:
    available = available_memory_bytes(backend)
    if available is None:
      continue
    for _, workload, shape in config.cases():
      need = footprint_bytes(workload, shape, config.dtype, max(1, len(config.engines)))
      if need > MEMORY_HEADROOM * available:
        raise UsageError(
            f"Size {format_shape(shape)} of {workload.name} needs about {need / 2**30:.1f} GiB "
            f"on {backend} for {len(config.engines)} engines, more than {MEMORY_HEADROOM:.0%} "
            f"of the {available / 2**30:.1f} GiB available: refused before allocating. Pick a "
            "smaller --sizes or fewer --engines.")


def _error_text(e: BaseException) -> str:
  text = f"{type(e).__name__}: {e}".strip().splitlines()[0] if str(e).strip() else \
      type(e).__name__
  last = traceback.extract_tb(e.__traceback__)[-1:]
  if last:
    text += f" (at {os.path.basename(last[0].filename)}:{last[0].lineno})"
  return text


def new_result(backend: str, workload: Workload, shape: Shape, engine: Engine,
               dtype: np.dtype, roofline: roofline_lib.Roofline | None) -> Result:
  """A row before anything ran: what it is, the bytes and FLOPs it must move and compute."""
  itemsize = np.dtype(dtype).itemsize
  moved = workload.bytes_moved(shape, itemsize) if workload.bytes_moved else None
  result = Result(workload=workload.name, engine=engine.name, backend=backend, shape=list(shape),
                  dtype=np.dtype(dtype).name, n_elements=math.prod(shape), bytes=moved,
                  flops=workload.flops(shape) if workload.flops else None,
                  tolerance=workload.tolerance(dtype),
                  steps_per_call=workload.steps if workload.kind == "train" else None,
                  bound=workload.bound)
  if roofline is not None:
    result.bandwidth_gbps = roofline.copy_bandwidth_gbps
    result.peak_gflops = roofline.peak_gflops
    if moved is not None and roofline.llc_bytes is not None:
      result.cache_resident = moved <= roofline.llc_bytes
  return result


def prepare_and_check(engine: Engine, workload: Workload, inputs: tuple[Any, ...],
                      reference: Reference, device: jax.Device, mesh: Mesh | None,
                      result: Result, cache_dir: str | None = None) -> Prepared | None:
  """Prepares one engine and checks its first output; fills `result`; None unless it passed."""
  try:
    extra = {"cache_dir": cache_dir} if cache_dir and engine.cacheable else {}
    prepared = engine.prepare(workload, inputs, device, mesh=mesh if engine.shardable else None,
                              **extra)
    result.device, result.device_kind = prepared.device, prepared.device_kind
    result.n_devices, result.sharding = prepared.n_devices, prepared.sharding
    stages = prepared.stages
    result.first_call_s, result.trace_s = stages.first_call_s, stages.trace_s
    result.lower_s, result.compile_s = stages.lower_s, stages.compile_s
    result.compiles, result.executable_cache = stages.compiles, stages.executable_cache
    result.reference = reference.label
    result.max_rel_err = max_rel_error(prepared.first_output, reference.outputs,
                                       reference.scales)
  except NotImplementedForWorkload as e:
    result.status, result.error = NOT_IMPLEMENTED, str(e)
    return None
  except UsageError:
    raise  # a bad request for the whole sweep, not a failed row
  except Exception as e:  # noqa: BLE001 - a failing row is data; the sweep goes on.
    result.status, result.error = FAILED, _error_text(e)
    return None
  if not result.max_rel_err <= result.tolerance:
    result.status = WRONG
    result.error = (f"output differs from the {reference.label} reference: max relative error "
                    f"{result.max_rel_err:.3g} > {result.tolerance:g}; not timed")
    return None
  return prepared


def _fill_timing(result: Result, per_call_s: list[float], calls: int, interleaved: bool,
                 dispatch_s: float | None) -> None:
  stats = per_call_stats(per_call_s, calls)
  result.median_s, result.iqr_s, result.min_s = stats.median_s, stats.iqr_s, stats.min_s
  result.mean_s, result.std_s, result.noisy = stats.mean_s, stats.std_s, stats.noisy
  result.blocks, result.calls_per_block = stats.blocks, calls
  result.block_times_s, result.interleaved = list(per_call_s), interleaved
  result.dispatch_s = dispatch_s
  if result.bytes is not None and result.median_s > 0:
    result.gbps = result.bytes / result.median_s / 1e9
    if result.bandwidth_gbps and not result.cache_resident:
      result.pct_of_bandwidth = 100 * result.gbps / result.bandwidth_gbps
  if result.flops is not None and result.median_s > 0:
    result.gflops = result.flops / result.median_s / 1e9
    if result.peak_gflops:
      result.pct_of_peak_flops = 100 * result.gflops / result.peak_gflops
  result.status, result.ok = OK, True


def _set_peaks(result: Result, roofline: roofline_lib.Roofline) -> None:
  result.bandwidth_gbps, result.peak_gflops = roofline.copy_bandwidth_gbps, roofline.peak_gflops
  if result.gbps is not None and result.pct_of_bandwidth is not None:
    result.pct_of_bandwidth = 100 * result.gbps / result.bandwidth_gbps
  if result.gflops is not None and result.peak_gflops:
    result.pct_of_peak_flops = 100 * result.gflops / result.peak_gflops


def recheck_peaks(results: Sequence[Result], roofline: roofline_lib.Roofline | None,
                  remeasure: Callable[[roofline_lib.Roofline], roofline_lib.Roofline]) -> None:
  """A row faster than a peak allows means the peak was measured while something else ran:
  measure it again (`remeasure`), compare every row of the case with the higher peaks, and mark
  a row still above them `peak_disturbed` (its share is then not a result)."""
  timed = [r for r in results if r.status == OK]
  if roofline is None or not any(_above(roofline, r) for r in timed):
    return
  better = remeasure(roofline)
  for result in timed:
    _set_peaks(result, better)
    result.peak_disturbed = _above(better, result)


def _above(roofline: roofline_lib.Roofline, result: Result) -> bool:
  """Whether the share a row is shown with (of the matmul peak if compute-bound, else of the
  copy bandwidth, not for a cache-resident row) is above 100%."""
  compute = result.bound == "compute"
  gbps = result.gbps if not compute and result.pct_of_bandwidth is not None else None
  return roofline_lib.exceeded(roofline, gbps, result.gflops if compute else None)


Progress = Callable[[str, Result], None]  # (what is happening: 'preparing' / 'timing', row)


def run_case(backend: str, workload: Workload, shape: Shape, engines: Sequence[Engine],
             dtype: np.dtype, min_run_time: float = 0.2, seed: int = 0,
             roofline: roofline_lib.Roofline | None = None, mesh: Mesh | None = None,
             interleave: bool = True, progress: Progress = lambda what, row: None,
             cache_dir: str | None = None) -> list[Result]:
  """Every engine of one (backend, workload, shape): prepared and checked, then timed in rounds.

  Returns:
    One row per engine, in `engines` order.
  """
  device = jax.devices(backend)[0]
  inputs = workload.make_inputs(shape, np.dtype(dtype), seed)
  results = [new_result(backend, workload, shape, e, dtype, roofline) for e in engines]
  try:
    reference = workload.expected(inputs)
  except Exception as e:  # noqa: BLE001 - the function itself fails: every row says why
    for result in results:
      result.status, result.error = FAILED, f"the reference run failed: {_error_text(e)}"
    return results
  prepared: dict[str, tuple[Prepared, Result]] = {}
  for engine, result in zip(engines, results, strict=True):
    progress("preparing", result)
    ready = prepare_and_check(engine, workload, inputs, reference, device, mesh, result,
                              cache_dir)
    if ready is not None:
      prepared[engine.name] = (ready, result)
  if prepared:
    progress("timing", next(iter(prepared.values()))[1])
    timers = {name: Timer(p.call, p.sync) for name, (p, _) in prepared.items()}
    rounds = time_rounds(timers, min_run_time, seed, interleave)
    for name, (p, result) in prepared.items():
      calls = rounds.calls_per_block[name]
      dispatch = timers[name].dispatch_time(calls) if p.measure_dispatch else None
      _fill_timing(result, rounds.per_call_s[name], calls, interleave, dispatch)
  recheck_peaks(results, roofline,
                lambda old: roofline_lib.remeasured(jax.devices(backend)[0], old))
  return results


LONG_RUN_S = 120.0  # a sweep expected to take longer than this says so before it starts


def minimum_seconds(config: SweepConfig) -> float:
  """A lower bound on a sweep's time: every row's timed blocks and re-warms (compiles extra)."""
  return config.rows() * config.min_run_time * 1.2


def long_run_note(config: SweepConfig) -> str | None:
  """One line announcing a long sweep before it starts (None for a short one)."""
  seconds = minimum_seconds(config)
  if seconds < LONG_RUN_S:
    return None
  return (f"note: {config.rows()} rows x --min_run_time={config.min_run_time:g} s: at least "
          f"{seconds / 60:.0f} minutes before compiles; every finished row is kept in "
          "--output_jsonl if given.")


def measure_rooflines(backends: Sequence[str]) -> dict[str, roofline_lib.Roofline]:
  """Each backend's roofline, measured once per process (`roofline.measured_once`)."""
  return {b: roofline_lib.measured_once(jax.devices(b)[0]) for b in backends}


def run_sweep(config: SweepConfig,
              on_result: Callable[[Result, int, int], None] = lambda r, i, n: None,
              rooflines: dict[str, roofline_lib.Roofline] | None = None,
              progress: Progress = lambda what, row: None) -> list[Result]:
  """Runs every case of `config`, calling `on_result(result, index, total)` for each row.

  Args:
    config: what to sweep.
    on_result: sees each row once it is final (to stream it to disk).
    rooflines: per backend, what rows are compared with (measured here when None).
    progress: told what is happening before each engine is prepared and each case is timed.

  Returns:
    The results in sweep order.
  """
  rooflines = measure_rooflines(config.backends) if rooflines is None else rooflines
  meshes = {b: sharding.make_mesh(config.mesh_shape, jax.devices(b))
            for b in config.backends} if config.mesh_shape else {}
  results: list[Result] = []
  total = config.rows()
  for backend, workload, shape in config.cases():
    for result in run_case(backend, workload, shape, config.engines, config.dtype,
                           config.min_run_time, config.seed, rooflines.get(backend),
                           meshes.get(backend), config.interleave, progress,
                           config.cache_dir):
      results.append(result)
      on_result(result, len(results), total)
  return results
