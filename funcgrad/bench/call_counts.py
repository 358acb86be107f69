"""Compilations during timed calls: a steady state that recompiles is not a steady state.

`counted(call)` wraps an engine's call so that every call, warm-ups and timed blocks alike,
adds to a `CallCounts`: how many calls ran and how many executables JAX asked XLA for during
them (`compile_cache.BACKEND_COMPILE_EVENT`, one listener for the whole process). Eager JAX
compiles each primitive once and then reuses it, so a healthy row counts 0 per call; eager
`lax.scan` / `lax.cond` (a new trace of their bodies per call) and a jitted function fed new
shapes or static values count one or more per call.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from funcgrad import compile_cache

_COMPILES = [0]  # process-wide, from the one listener
_LISTENING = [False]


def _on_duration(event: str, duration: float, **kwargs: Any) -> None:
  del duration, kwargs
  if event == compile_cache.BACKEND_COMPILE_EVENT:
    _COMPILES[0] += 1


def _listen() -> None:
  if not _LISTENING[0]:
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    _LISTENING[0] = True


@dataclasses.dataclass(slots=True)
class CallCounts:
  """Calls made through a `counted` call and the compilations during them.

  `compiling` keeps (call index, compilations) of the calls that compiled, so that the steady
  state can be told from a warm-up (another engine's `jax.clear_caches()` makes eager compile
  its primitives once more).
  """

  calls: int = 0
  compiles: int = 0
  compiling: list[tuple[int, int]] = dataclasses.field(default_factory=list)

  def per_call(self) -> float | None:
    """Compilations per call over the later half of the calls (the steady state)."""
    if not self.calls:
      return None
    half = self.calls // 2
    return sum(n for i, n in self.compiling if i >= half) / (self.calls - half)


def counted(call: Callable[[], Any]) -> tuple[Callable[[], Any], CallCounts]:
  """`call`, counting its calls and the compilations during them (two integer reads a call)."""
  _listen()
  counts = CallCounts()

  def counting_call():
    before = _COMPILES[0]
    out = call()
    compiled = _COMPILES[0] - before
    if compiled:
      counts.compiles += compiled
      counts.compiling.append((counts.calls, compiled))
    counts.calls += 1
    return out

  return counting_call, counts
