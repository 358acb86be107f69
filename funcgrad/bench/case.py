"""What the runner runs: a `Case` (one backend, workload and shape, its engines, dtype, timing and
placement), and a `Sweep` that expands backends x workloads x sizes into cases.

A case is built once, from the flags (`experiments.compare`) or from `funcgrad.compare`, and
flows unchanged through `runner.run_sweep`, which checks every case before it times any.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax
import numpy as np
from jax.sharding import Mesh

from funcgrad import sharding
from funcgrad.bench import intervals
from funcgrad.bench import timing as timing_lib
from funcgrad.shapes import Shape

if TYPE_CHECKING:
  from funcgrad.bench.engines import Engine
  from funcgrad.bench.workloads.model import Workload


DEFAULT_MAX_RUN_TIME_FACTOR = 30  # with a precision target and no cap: 30 x min_run_time


@dataclasses.dataclass(frozen=True)
class Timing:
  """How a case is timed.

  Attributes:
    min_run_time: seconds of timed blocks per engine.
    seed: seeds the inputs (the same numbers for every engine), the round order and the
      bootstrap of the speedups.
    interleave: one block of each engine per round (False: each engine's blocks back to back).
    precision: rounds go on past min_run_time until every speedup against `baseline` has a 95%
      interval of at most this relative half-width (None: stop at min_run_time).
    max_run_time: with a precision target, the most seconds of rounds per case.
    estimator: `median` or `min` (`intervals.ESTIMATORS`): the speedup the stopping rule asks of.
    isolation: `cooldown` (before each block, wait until the other engines' threads sleep) or
      `none` (`timing.ISOLATIONS`).
    baseline: the engine speedups are against (None: jit when timed, else the first).
  """

  min_run_time: float = 0.2
  seed: int = 0
  interleave: bool = True
  precision: float | None = None
  max_run_time: float | None = None
  estimator: str = intervals.DEFAULT_ESTIMATOR
  isolation: str = timing_lib.DEFAULT_ISOLATION
  baseline: str | None = None

  def check(self, prefix: str = "--") -> None:
    """Refuses a bad precision target, time cap, estimator or isolation (one line each;
    `prefix` "--" names the CLI's flags, "" the Python API's parameters).

    Raises:
      UsageError: naming the flag, its value and what is allowed.
    """
    intervals.check_precision(self.precision, self.min_run_time, self.max_run_time, prefix)
    intervals.check_estimator(self.estimator, prefix)
    timing_lib.check_isolation(self.isolation, prefix)


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where an engine runs: what its `prepare` gets beside the workload and the inputs.

  Attributes:
    device: the device of a single-device run (the first of the backend).
    mesh: shardable engines spread their inputs over it (None: one device).
    cache_dir: cacheable engines load or store their compiled executables here.
  """

  device: jax.Device
  mesh: Mesh | None = None
  cache_dir: str | None = None

  def for_engine(self, engine: Engine) -> Placement:
    """What `engine` sees: the mesh only if it shards, the cache only if it caches."""
    return Placement(self.device, self.mesh if engine.shardable else None,
                     self.cache_dir if engine.cacheable else None)


@dataclasses.dataclass(frozen=True)
class Case:
  """One (backend, workload, shape) and everything needed to run and time it."""

  backend: str
  workload: Workload
  shape: Shape
  engines: tuple[Engine, ...]
  dtype: np.dtype
  timing: Timing = Timing()
  placement: Placement | None = None  # None: the backend's first device, no mesh, no cache

  def where(self) -> Placement:
    return self.placement or Placement(jax.devices(self.backend)[0])


def placement(backend: str, mesh_shape: Sequence[int] | None = None,
              cache_dir: str | None = None) -> Placement:
  """The placement of `backend`'s cases: its first device, and a mesh of `mesh_shape` if given.

  Raises:
    UsageError: a mesh needing more devices than the backend has (from `sharding.make_mesh`).
  """
  devices = jax.devices(backend)
  mesh = sharding.make_mesh(tuple(mesh_shape), devices) if mesh_shape else None
  return Placement(devices[0], mesh, cache_dir)


@dataclasses.dataclass(frozen=True)
class Sweep:
  """Backends x workloads x sizes, every case with the same engines, dtype, timing and placement
  rule."""

  workloads: Sequence[Workload]
  engines: Sequence[Engine]
  backends: Sequence[str]
  sizes: Sequence[Shape]
  dtype: np.dtype
  timing: Timing = Timing()
  mesh_shape: tuple[int, ...] | None = None
  cache_dir: str | None = None

  def cases(self) -> list[Case]:
    """Every case, in sweep order (a shape once per workload).

    Raises:
      UsageError: a size that does not fit a workload, or a mesh a backend cannot make.
    """
    cases = []
    for backend in self.backends:
      where = placement(backend, self.mesh_shape, self.cache_dir)
      for workload in self.workloads:
        for shape in dict.fromkeys(workload.check_size(s) for s in self.sizes):
          cases.append(Case(backend, workload, shape, tuple(self.engines), np.dtype(self.dtype),
                            self.timing, where))
    return cases


def rows(cases: Sequence[Case]) -> int:
  """How many rows `cases` make (one per engine of each)."""
  return sum(len(c.engines) for c in cases)
