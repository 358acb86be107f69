"""JAX's persistent compilation cache, and what a first call spends its time on.

`jax.jit` keeps compiled executables in memory per input shape; the persistent cache keeps them on
disk across processes. By default JAX skips caching anything that compiled in under a second or is
small, which is every function in this tutorial, so `enable_persistent_cache` lowers both bars.
JAX reports each stage of a compilation through `jax.monitoring`; `compile_events` listens.
"""

import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
from jax.experimental.compilation_cache import compilation_cache as _persistent_cache

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
CACHE_MISS_EVENT = "/jax/compilation_cache/cache_misses"
CACHE_RETRIEVAL_EVENT = "/jax/compilation_cache/cache_retrieval_time_sec"


def enable_persistent_cache(directory: str) -> None:
  """Caches every compiled executable under `directory` (created if needed)."""
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


@contextlib.contextmanager
def persistent_cache_disabled() -> Iterator[None]:
  """Compiles inside the block neither read nor write the persistent cache.

  JAX decides once per process whether the cache is in use, so the switch is followed by a reset
  of that decision on the way in and on the way out.
  """
  enabled = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  _persistent_cache.reset_cache()
  try:
    yield
  finally:
    jax.config.update("jax_enable_compilation_cache", enabled)
    _persistent_cache.reset_cache()


@dataclasses.dataclass
class CompileEvents:
  """What JAX reported inside a `compile_events()` block.

  Attributes:
    seconds: summed duration per duration event.
    counts: occurrences per event (duration events and plain events alike).
  """

  seconds: dict[str, float] = dataclasses.field(default_factory=dict)
  counts: dict[str, int] = dataclasses.field(default_factory=dict)

  @property
  def compile_requests(self) -> int:
    """Executables JAX asked the backend for: XLA compilations plus persistent-cache loads."""
    return self.counts.get(BACKEND_COMPILE_EVENT, 0)

  @property
  def compiles(self) -> int:
    """Real XLA compilations: requests that the persistent cache did not answer."""
    return self.compile_requests - self.cache_hits

  @property
  def cache_hits(self) -> int:
    return self.counts.get(CACHE_HIT_EVENT, 0)

  @property
  def cache_misses(self) -> int:
    return self.counts.get(CACHE_MISS_EVENT, 0)

  def stage_seconds(self) -> dict[str, float]:
    """trace / lower / compile / cache-retrieval seconds (0.0 for a stage that did not run)."""
    return {name: self.seconds.get(event, 0.0) for name, event in (
        ("trace_s", TRACE_EVENT), ("lower_s", LOWER_EVENT), ("compile_s", BACKEND_COMPILE_EVENT),
        ("cache_retrieval_s", CACHE_RETRIEVAL_EVENT))}


@contextlib.contextmanager
def compile_events() -> Iterator[CompileEvents]:
  """Records JAX's compilation events inside the `with` block.

  Examples:
    >>> import jax.numpy as jnp
    >>> f = jax.jit(lambda x: x * 2)
    >>> a, b, c = jnp.ones(3), jnp.zeros(3), jnp.ones(4)
    >>> with compile_events() as events:
    ...   _ = f(a); _ = f(b); _ = f(c)  # the same shape twice, then a new shape
    >>> events.compiles
    2
  """
  events = CompileEvents()

  def on_duration(event: str, duration: float, **kwargs) -> None:
    del kwargs
    events.seconds[event] = events.seconds.get(event, 0.0) + duration
    events.counts[event] = events.counts.get(event, 0) + 1

  def on_event(event: str, **kwargs) -> None:
    del kwargs
    events.counts[event] = events.counts.get(event, 0) + 1

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  jax.monitoring.register_event_listener(on_event)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(on_duration)
    jax.monitoring.unregister_event_listener(on_event)


def first_call_breakdown(fn: Callable[..., Any], *args: Any) -> dict[str, float | int]:
  """Times one synced call of `jax.jit(fn)` and splits it by JAX's own compile events.

  Meant for a fresh process (or after `jax.clear_caches()`): then the call traces, lowers, and
  either compiles or loads from the persistent cache.

  Returns:
    first_call_s, trace_s, lower_s, compile_s (backend time, a cache load included),
    cache_retrieval_s, compiles (real XLA compilations), cache_hits, cache_misses.
  """
  jitted = jax.jit(fn)
  with compile_events() as events:
    start = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    first_call = time.perf_counter() - start
  return {"first_call_s": first_call, **events.stage_seconds(), "compiles": events.compiles,
          "cache_hits": events.cache_hits, "cache_misses": events.cache_misses}


def first_call_in_fresh_process(cache_dir: str, workload: str = "muladd_sum",
                                shape: str = "3x4") -> dict[str, float | int]:
  """`first_call_breakdown` of a workload's jit(value+grads), in a new Python process that uses
  the persistent cache in `cache_dir`.

  Raises:
    RuntimeError: the measuring process failed (its stderr's tail in the message).
  """
  result = subprocess.run(
      [sys.executable, "-m", "funcgrad.compile_cache", cache_dir, workload, shape],
      capture_output=True, text=True, check=False, timeout=300)
  if result.returncode != 0:
    raise RuntimeError(f"measuring subprocess failed: {result.stderr.strip()[-2000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def _measure_in_this_process(cache_dir: str, workload_name: str, shape_text: str) -> None:
  """The fresh process's side of `first_call_in_fresh_process`: prints one JSON line."""
  import numpy as np  # noqa: PLC0415 - only the measuring process needs these

  from funcgrad.bench import specs, workloads  # noqa: PLC0415

  enable_persistent_cache(cache_dir)
  workload = workloads.get_workload(workload_name)
  (size,) = specs.parse_sizes(shape_text)
  args = [jax.device_put(a) for a in workload.make_inputs(workload.shape_for(size), np.float32, 0)]
  print(json.dumps(first_call_breakdown(workload.jax_value_and_grads(), *args)))


if __name__ == "__main__":
  _measure_in_this_process(*sys.argv[1:4])
