"""The first call of a workload's jit(value+grads), measured in a fresh Python process.

A first call's cost depends on what the process has already done (imported, traced, lowered,
compiled), so every measurement here starts a new interpreter:
`python -m funcgrad.bench.first_call TIER CACHE_DIR WORKLOAD SHAPE` prints one JSON line.

Tiers:
  persistent: `jax.jit` with JAX's persistent compilation cache in CACHE_DIR (an empty
    directory gives the cold first call, a filled one the warm).
  executable: `compile_cache.load_or_compile` with the executable cache in CACHE_DIR, then the
    call; a hit neither traces nor lowers.
"""

import gc
import json
import subprocess
import sys
import time
from typing import Any

import jax
import numpy as np

from funcgrad import compile_cache
from funcgrad.errors import UsageError

TIERS = ("persistent", "executable")


def first_call_in_fresh_process(cache_dir: str, workload: str = "muladd_sum",
                                shape: tuple[int, ...] = (3, 4),
                                tier: str = "persistent") -> dict[str, Any]:
  """The first call's time and JAX's compile events, from a new Python process.

  Args:
    cache_dir: the tier's cache directory (created if needed).
    workload: a `funcgrad.bench.workloads` name.
    shape: the inputs' shape (as the workload takes it).
    tier: one of TIERS.

  Returns:
    first_call_s, trace_s, lower_s, compile_s, cache_retrieval_s, compiles, cache_hits,
    cache_misses; the executable tier adds status ('hit', 'miss', ...) and key_s (its
    cache_retrieval_s is the entry's read, check and load).

  Raises:
    UsageError: an unknown tier.
    RuntimeError: the measuring process failed (its stderr's tail in the message).
  """
  if tier not in TIERS:
    raise UsageError(f"Unknown tier {tier!r}. Valid: {', '.join(TIERS)}.")
  result = subprocess.run(
      [sys.executable, "-m", "funcgrad.bench.first_call", tier, cache_dir, workload,
       "x".join(map(str, shape))], capture_output=True, text=True, check=False, timeout=300)
  if result.returncode != 0:
    raise RuntimeError(f"measuring subprocess failed: {result.stderr.strip()[-2000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def _executable_first_call(fn, args, cache_dir: str) -> dict[str, Any]:
  with compile_cache.compile_events() as events:
    start = time.perf_counter()
    compiled, info = compile_cache.load_or_compile(fn, args, cache_dir)
    jax.block_until_ready(compiled(*args))
    first_call = time.perf_counter() - start
  # The cache retrieval of this tier is load_or_compile's read, check and load of the entry.
  return {"first_call_s": first_call, **events.stage_seconds(), "cache_retrieval_s": info.load_s,
          "compiles": events.compiles, "cache_hits": int(info.status == "hit"),
          "cache_misses": int(info.status != "hit"), "status": info.status, "key_s": info.key_s}


def measure_here(tier: str, cache_dir: str, workload_name: str, shape_text: str) -> dict[str, Any]:
  """The fresh process's side of `first_call_in_fresh_process`."""
  from funcgrad.bench import workloads  # noqa: PLC0415 - not needed by the parent process

  workload = workloads.get_workload(workload_name)
  shape = tuple(int(d) for d in shape_text.split("x"))
  args = [jax.device_put(a) for a in workload.make_inputs(shape, np.float32, 0)]
  fn = workload.jax_value_and_grads()
  if tier == "executable":
    return _executable_first_call(fn, args, cache_dir)
  compile_cache.enable_persistent_cache(cache_dir)
  return compile_cache.first_call_breakdown(fn, *args)


if __name__ == "__main__":
  gc.freeze()  # as the experiments' entry point does: no full collection in the timed call
  print(json.dumps(measure_here(*sys.argv[1:5])))
