"""What a warm persistent compilation cache saves on the first call, and when jit recompiles.

  python -m experiments.compile_cache [--workload=muladd_sum] [--shape=3x4] [--cache_dir=DIR]

Runs the first call of jit(value+grads) in two fresh subprocesses sharing one cache directory:
cold (empty) then warm (filled), each split by JAX's own compile events. Then, in this process,
counts compilations: a second call with the same shapes compiles nothing; a new shape compiles once.
"""

import tempfile

import jax
import numpy as np
from absl import flags

from experiments import _cli
from funcgrad import compile_cache
from funcgrad._tables import render_text
from funcgrad.bench import specs, workloads
from funcgrad.bench.report import format_seconds

_WORKLOAD = flags.DEFINE_enum("workload", "muladd_sum", list(workloads.TUTORIAL_WORKLOADS),
                              "Workload.")
_SHAPE = flags.DEFINE_string("shape", "3x4", "Input shape: NxD (or N for 1-D workloads).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Cache directory (default: a fresh temp dir).")

_STAGES = ("first_call_s", "trace_s", "lower_s", "compile_s", "cache_retrieval_s")
_COUNTS = ("compiles", "cache_hits", "cache_misses")


def _args(workload, shape, seed=0):
  return [jax.device_put(a) for a in workload.make_inputs(shape, np.float32, seed)]


def _recompilations(workload, shape) -> dict[str, int]:
  fn = jax.jit(workload.jax_value_and_grads())
  first, same, other = (_args(workload, s, seed) for s, seed in (
      (shape, 0), (shape, 1), (tuple(d + 1 for d in shape), 2)))
  counts = {}
  for label, args in (("first call", first), ("same shapes, new values", same),
                      ("new shape", other), ("that new shape again", other)):
    with compile_cache.compile_events() as events:
      jax.block_until_ready(fn(*args))
    counts[label] = events.compiles
  return counts


def main(argv: list[str]) -> int:
  del argv
  workload = workloads.get_workload(_WORKLOAD.value)
  (size,) = specs.parse_sizes(_SHAPE.value)
  shape = workload.shape_for(size)
  with tempfile.TemporaryDirectory(prefix="funcgrad-cache-") as tmp:
    cache_dir = _CACHE_DIR.value or tmp
    cold, warm = (compile_cache.first_call_in_fresh_process(cache_dir, workload.name, _SHAPE.value)
                  for _ in range(2))
  rows = [[k, format_seconds(cold[k]), format_seconds(warm[k])] for k in _STAGES]
  rows += [[k, str(cold[k]), str(warm[k])] for k in _COUNTS]
  print(f"first call of jit({workload.name} value+grads) on {'x'.join(map(str, shape))}, "
        f"each in a fresh process ({jax.default_backend()}):")
  print(render_text(["", "cold cache", "warm cache"], rows))
  ratio = warm["first_call_s"] / cold["first_call_s"]
  print(f"warm / cold first call: {ratio:.0%}\n")
  print("XLA compilations per call of one jitted function (in-memory cache):")
  counts = _recompilations(workload, shape)
  print(render_text(["call", "compilations"], [[k, str(v)] for k, v in counts.items()]))
  return 0


if __name__ == "__main__":
  _cli.run(main)
