"""What a warm cache saves on the first call, tier by tier, and when jit recompiles.

  python -m experiments.compile_cache [--workload=muladd_sum] [--shape=3x4] [--cache_dir=DIR]

Runs the first call of jit(value+grads) in fresh subprocesses: cold (an empty persistent cache),
warm persistent cache (JAX's, filled by the cold run: still traces and lowers), and warm
executable cache (funcgrad's `compile_cache.load_or_compile`, filled by a run before: neither
traces nor lowers), each split by JAX's own compile events. Then, in this process, counts
compilations: a second call with the same shapes compiles nothing; a new shape compiles once.
"""

import os
import tempfile

import jax
import numpy as np
from absl import flags

from funcgrad import compile_cache
from funcgrad._tables import render_text
from funcgrad.bench import workloads
from funcgrad.bench.first_call import first_call_in_fresh_process
from funcgrad.bench.report import format_seconds
from funcgrad.experiments import _cli
from funcgrad.shapes import parse_shape

_WORKLOAD = flags.DEFINE_enum("workload", "muladd_sum", list(workloads.TUTORIAL_WORKLOADS),
                              "Workload.")
_SHAPE = flags.DEFINE_string("shape", "3x4", "Input shape: NxD (or N for 1-D workloads).")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None, "Cache directory, holding persistent/ and executable/ (default: a fresh "
    "temp dir). Loading an executable runs it: use a directory only you can write.")

_STAGES = ("first_call_s", "trace_s", "lower_s", "compile_s", "cache_retrieval_s")
_COUNTS = ("compiles", "cache_hits", "cache_misses")
_COLUMNS = ("cold", "warm persistent cache", "warm executable cache")


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


def _three_tiers(cache_dir: str, workload: str, shape: tuple[int, ...]) -> list[dict]:
  persistent, executable = (os.path.join(cache_dir, d) for d in ("persistent", "executable"))
  cold = first_call_in_fresh_process(persistent, workload, shape)
  warm = first_call_in_fresh_process(persistent, workload, shape)
  first_call_in_fresh_process(executable, workload, shape, tier="executable")  # fills it
  loaded = first_call_in_fresh_process(executable, workload, shape, tier="executable")
  return [cold, warm, loaded]


def main(argv: list[str]) -> int:
  del argv
  workload = workloads.get_workload(_WORKLOAD.value)
  shape = workload.check_size(parse_shape(_SHAPE.value, "--shape", max_rank=2))
  if _CACHE_DIR.value:  # asked for explicitly: an unusable one is an error, not a cold run
    compile_cache.check_parent_dir(_CACHE_DIR.value, "--cache_dir")
    for tier in ("persistent", "executable"):
      compile_cache.check_cache_dir(os.path.join(_CACHE_DIR.value, tier))
  with tempfile.TemporaryDirectory(prefix="funcgrad-cache-") as tmp:
    columns = _three_tiers(_CACHE_DIR.value or tmp, workload.name, shape)
  rows = [[k, *(format_seconds(c[k]) for c in columns)] for k in _STAGES]
  rows += [[k, *(str(c[k]) for c in columns)] for k in _COUNTS]
  print(f"first call of jit({workload.name} value+grads) on {'x'.join(map(str, shape))}, "
        f"each in a fresh process ({jax.default_backend()}):")
  print(render_text(["", *_COLUMNS], rows))
  cold = columns[0]["first_call_s"]
  for label, column in zip(_COLUMNS[1:], columns[1:], strict=True):
    print(f"{label} / cold first call: {column['first_call_s'] / cold:.0%}")
  print("(the executable cache's retrieval is reading, checking and loading its entry)\n")
  print("XLA compilations per call of one jitted function (in-memory cache):")
  counts = _recompilations(workload, shape)
  print(render_text(["call", "compilations"], [[k, str(v)] for k, v in counts.items()]))
  return 0


if __name__ == "__main__":
  _cli.run(main)
