import jax
import numpy as np

import funcgrad as fg
from funcgrad import compile_cache
from tests.helpers import run_module


def _args(shape, seed):
  rng = np.random.default_rng(seed)
  return [jax.device_put(rng.standard_normal(shape).astype(np.float32)) for _ in range(3)]


def test_recompilation_counts():
  jax.clear_caches()  # other tests may have compiled this function for these shapes
  fn = jax.jit(fg.muladd_sum_grads)
  a, b, c = _args((3, 4), 0), _args((3, 4), 1), _args((5, 4), 2)
  counts = []
  for args in (a, b, c, c):
    with compile_cache.compile_events() as events:
      jax.block_until_ready(fn(*args))
    counts.append(events.compiles)
  assert counts == [1, 0, 1, 0]  # same shape: nothing; new shape: once


def test_first_call_breakdown_in_process():
  jax.clear_caches()
  result = compile_cache.first_call_breakdown(fg.muladd_sum_grads, *_args((2, 3), 0))
  assert result["compiles"] == 1 and result["cache_hits"] == 0
  assert result["first_call_s"] >= result["compile_s"] > 0
  assert result["trace_s"] > 0 and result["lower_s"] > 0


def test_persistent_cache_cold_then_warm_in_fresh_processes():
  result = run_module("experiments.compile_cache", "--workload=muladd_sum", "--shape=3x4")
  assert result.returncode == 0, result.stderr
  lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
  assert lines["compiles"] == ["1", "0"]  # cold compiles; warm loads from the cache
  assert lines["cache_hits"] == ["0", "1"]
  assert lines["cache_misses"] == ["1", "0"]
  assert "warm / cold first call:" in result.stdout
  for call, count in (("first", "1"), ("same", "0"), ("new", "1"), ("that", "0")):
    assert lines[call][-1] == count
