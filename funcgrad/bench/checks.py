"""Everything refused before anything is allocated or timed: absent backends, meshes that do
not fit, and cases whose footprint would not fit in memory (the rule is `funcgrad.limits`').

`runner.run_sweep` runs `check_cases` itself, so `experiments.compare` and `funcgrad.compare`
refuse the same things with the same messages.
"""

import math
from collections.abc import Sequence

import jax
import numpy as np

from funcgrad import limits, sharding
from funcgrad.bench.case import Case
from funcgrad.bench.workloads.model import Workload
from funcgrad.devices import CUDA_INSTALL_HINT, platforms_present
from funcgrad.errors import UsageError
from funcgrad.shapes import Shape, format_shape


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
  if backend == "cpu":
    return limits.host_memory_bytes()
  stats = jax.devices(backend)[0].memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
  return None


def input_bytes(workload: Workload, shape: Shape, dtype: np.dtype) -> int:
  """The bytes one call moves at least (inputs and outputs once), or an estimate of two arrays."""
  least = workload.least_bytes(shape, dtype)
  return 2 * math.prod(shape) * np.dtype(dtype).itemsize if least is None else least


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
  limits.check_memory(need, f"Shapes {', '.join(format_shape(s) for s in shapes)}",
                      available_memory_bytes(backend))


def check_mesh(cases: Sequence[Case]) -> None:
  """Refuses cases whose mesh cannot split their sizes evenly, or whose workload's inputs are not
  split over devices.

  Raises:
    UsageError: naming the mesh, the size or the workload.
  """
  for case in cases:
    mesh = case.where().mesh
    if mesh is None:
      continue
    if not case.workload.shardable:
      raise UsageError(f"A device mesh does not apply to workload {case.workload.name}: its "
                       "inputs are not split over devices. Run it on one device.")
    if case.workload.batch_args is None:
      sharding.check_divisible(case.shape, mesh)
    else:
      sharding.check_batch_divisible(case.shape[0], mesh)  # BATCHx... / SEQx...: rows split


def check_fits(cases: Sequence[Case]) -> None:
  """Refuses, before anything is allocated, cases whose footprint would not fit in memory.

  Raises:
    UsageError: naming the size, the estimate and the memory available.
  """
  available = {b: available_memory_bytes(b) for b in dict.fromkeys(c.backend for c in cases)}
  for case in cases:
    free = available[case.backend]
    need = footprint_bytes(case.workload, case.shape, case.dtype, max(1, len(case.engines)))
    if free is not None and need > limits.MEMORY_HEADROOM * free:
      n = len(case.engines)
      engines, fix = ((f"{n} engine{'s' if n > 1 else ''}", "a smaller size or fewer engines")
                      if case.engines else ("even one engine", "a smaller size"))
      raise UsageError(
          f"Size {format_shape(case.shape)} of {case.workload.name} needs about "
          f"{need / 2**30:.1f} GiB on {case.backend} for {engines}, more than "
          f"{limits.MEMORY_HEADROOM:.0%} of the {free / 2**30:.1f} GiB available: refused "
          f"before allocating. Pick {fix}.")


def check_cases(cases: Sequence[Case]) -> None:
  """Every check above that concerns cases (the runner's first step).

  Raises:
    UsageError: the first thing refused.
  """
  check_mesh(cases)
  check_fits(cases)
