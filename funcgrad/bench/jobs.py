"""A job's measurement: jit(value+grads) over every device of a multi-process job, checked.

`funcgrad.distributed` forms the job (coordinator, processes, watchdog); this module, part of
the runner, times and checks what the job computes.
"""

import dataclasses

import jax
import numpy as np
from jax.sharding import NamedSharding

from funcgrad import _compat, sharding
from funcgrad.bench.timing import Timer
from funcgrad.bench.workloads.model import Workload, max_rel_error, tolerance


@dataclasses.dataclass
class JobResult:
  """What process 0 reports."""

  process_id: int
  num_processes: int
  n_devices: int
  sharding: str
  shape: list[int]
  value: float
  max_rel_err: float
  max_rel_diff_vs_single_process: float
  median_s: float
  ok: bool


def run_sharded(workload: Workload, shape: tuple[int, ...], seed: int, repeats: int) -> JobResult:
  """Runs jit(value+grads) over every device of the job, gathers and checks the outputs.

  Every process must call this with the same arguments (they issue the same collectives).
  """
  inputs = workload.make_inputs(shape, np.float32, seed)  # the same numbers in every process
  mesh = sharding.make_mesh((jax.device_count(),))
  sharding.check_divisible(shape, mesh)
  spec = NamedSharding(mesh, sharding.spec_for(len(shape), mesh))
  args = [jax.make_array_from_callback(shape, spec, lambda index, a=a: a[index]) for a in inputs]
  fn = jax.jit(workload.jax_value_and_grads())
  outputs = jax.block_until_ready(fn(*args))
  # Timing: a fixed number of calls, identical in every process (adaptive sizing could make
  # processes issue different numbers of collectives and deadlock).
  timer = Timer(lambda: fn(*args))
  blocks = [timer.timeit(repeats) / repeats for _ in range(5)]
  gathered = _compat.process_allgather(outputs)
  flat = tuple(np.asarray(leaf) for leaf in jax.tree.leaves(gathered))
  reference = workload.expected(inputs)
  want, scales = reference.outputs, reference.scales
  # The same jitted function on unsharded inputs on one local device: the single-process run.
  single = fn(*(jax.device_put(a, jax.local_devices()[0]) for a in inputs))
  local = tuple(np.asarray(leaf) for leaf in jax.tree.leaves(single))
  diff = max_rel_error(flat, local, scales)  # relative, as against the reference
  err = max_rel_error(flat, want, scales)
  return JobResult(
      process_id=jax.process_index(), num_processes=jax.process_count(),
      n_devices=jax.device_count(), sharding=sharding.describe(args[0]), shape=list(shape),
      value=float(flat[0]), max_rel_err=err, max_rel_diff_vs_single_process=diff,
      median_s=float(np.median(blocks)),
      ok=bool(err <= tolerance(np.float32) and diff <= tolerance(np.float32)))

