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
from funcgrad.shapes import Shape

if TYPE_CHECKING:
  from funcgrad.bench.engines import Engine
  from funcgrad.bench.workloads.model import Workload


@dataclasses.dataclass(frozen=True)
class Timing:
  """How a case is timed.

  Attributes:
    min_run_time: seconds of timed blocks per engine.
    seed: seeds the inputs (the same numbers for every engine), the round order and the
      bootstrap of the speedups.
    interleave: one block of each engine per round (False: each engine's blocks back to back).
  """

  min_run_time: float = 0.2
  seed: int = 0
  interleave: bool = True


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
