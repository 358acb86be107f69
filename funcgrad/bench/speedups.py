"""Speedups that hold on a noisy machine: per-round ratios, a bootstrap interval, break-even.

With interleaved rounds, block i of every engine of a case ran in round i, within a second or so
of each other; the ratio of two engines' blocks in one round cancels a drift that lasts longer
than a round. The speedup is the median of those per-round ratios, with a 95% bootstrap interval
over rounds (resampling rounds with replacement, seeded).
"""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from funcgrad.bench.intervals import (  # noqa: F401 - re-exported: speedups' own vocabulary
  BOOTSTRAP_RESAMPLES,
  CONFIDENCE,
  DEFAULT_ESTIMATOR,
  ESTIMATORS,
  bootstrap_median_interval,
  check_estimator,
  check_precision,
  per_round_ratios,
  precision_rule,
  ratio_interval,
  relative_half_width,
)
from funcgrad.bench.runner import Result
from funcgrad.errors import UsageError

DEFAULT_BASELINE = "jit"


@dataclasses.dataclass(frozen=True, slots=True)
class Speedup:
  """How much faster `baseline` is than `engine` on one (backend, workload, shape).

  Attributes:
    ratio: median over rounds of engine time / baseline time (> 1: the baseline is faster).
    ci_low, ci_high: the 95% bootstrap interval of that median.
    rounds: the rounds the ratio is over.
    break_even_calls: calls after which the baseline's extra first-call cost is paid back by its
      faster steady state (None when it never pays back).
    break_even_calls_warm: the same against the engine already warm (its first call costing no
      more than a steady one): what a long-running process that has run the engine before sees.
    half_width: (ci_high - ci_low) / 2 / ratio, the interval's relative half-width.
    resolved: half_width <= the precision target (None when no target was set).
    estimator: `median` (of per-round ratios) or `min` (ratio of the per-engine minima).
  """

  backend: str
  workload: str
  shape: list[int]
  engine: str
  baseline: str
  ratio: float
  ci_low: float
  ci_high: float
  rounds: int
  break_even_calls: int | None
  break_even_calls_warm: int | None = None
  half_width: float | None = None
  resolved: bool | None = None
  estimator: str = DEFAULT_ESTIMATOR

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def break_even_calls(engine: Result, baseline: Result) -> int | None:
  """Calls after which the baseline, counting its first call, has spent less time than `engine`.

  The baseline's extra one-time cost is what its first call costs beyond a steady call (trace,
  lower, compile), less the same for the engine; each later call saves the difference of their
  steady-state medians. None when the baseline is not faster per call (it never pays back).
  """
  times = (engine.first_call_s, engine.median_s, baseline.first_call_s, baseline.median_s)
  if any(t is None for t in times):
    return None
  saving = engine.median_s - baseline.median_s
  if saving <= 0:
    return None
  extra = (baseline.first_call_s - baseline.median_s) - (engine.first_call_s - engine.median_s)
  return max(1, math.ceil(extra / saving)) if extra > 0 else 1


def break_even_calls_warm(engine: Result, baseline: Result) -> int | None:
  """`break_even_calls` against `engine` warm: all of the baseline's first-call cost beyond a
  steady call must be paid back (None when the baseline is not faster per call)."""
  if any(t is None for t in (engine.median_s, baseline.first_call_s, baseline.median_s)):
    return None
  saving = engine.median_s - baseline.median_s
  if saving <= 0:
    return None
  return max(1, math.ceil((baseline.first_call_s - baseline.median_s) / saving))


def check_baseline(baseline: str, engines: Sequence[str], names: tuple[str, str] = (
    "--baseline", "--engines")) -> None:
  """Refuses a `baseline` that is not one of `engines`.

  Args:
    baseline: the engine the others are compared with.
    engines: the engines of the comparison.
    names: what the caller calls them (the CLI's flags, or the Python API's parameters).

  Raises:
    UsageError: naming the baseline and the engines.
  """
  if baseline not in engines:
    raise UsageError(f"Invalid {names[0]}={baseline!r}: it is not in {names[1]} "
                     f"({', '.join(engines)}). Pick one of those.")


def default_baseline(engines: Sequence[str]) -> str | None:
  """`jit` when it is swept, else the first engine (None for no engines)."""
  return DEFAULT_BASELINE if DEFAULT_BASELINE in engines else next(iter(engines), None)


def speedups(results: Sequence[Result], baseline: str, seed: int = 0,
             estimator: str = DEFAULT_ESTIMATOR,
             precision: float | None = None) -> list[Speedup]:
  """The baseline's speedup over every other timed engine, per (backend, workload, shape)."""
  cases: dict[tuple[str, str, tuple[int, ...]], dict[str, Result]] = {}
  for r in results:
    cases.setdefault((r.backend, r.workload, tuple(r.shape)), {})[r.engine] = r
  out = []
  for (backend, workload, shape), rows in cases.items():
    base = rows.get(baseline)
    if base is None or not base.block_times_s:
      continue
    for name, row in rows.items():
      if name == baseline or not row.block_times_s:
        continue
      ratio, low, high = ratio_interval(row.block_times_s, base.block_times_s, estimator, seed)
      half = relative_half_width(ratio, low, high)
      out.append(Speedup(backend, workload, list(shape), name, baseline, ratio, low, high,
                         min(len(row.block_times_s), len(base.block_times_s)),
                         break_even_calls(row, base), break_even_calls_warm(row, base), half,
                         None if precision is None else bool(half <= precision), estimator))
  return out
