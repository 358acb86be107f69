"""Ratios with intervals, from block times alone: the estimators and the stopping rule.

No rows here, only numbers, so that the timing loop (`runner`) and the reports (`speedups`,
`baselines`) share one definition of a ratio, its interval and when it is precise enough.
"""

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from funcgrad.errors import UsageError

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
ESTIMATORS = ("median", "min")
DEFAULT_ESTIMATOR = "median"  # chosen from measured back-to-back agreement: docs/PERFORMANCE.md


def per_round_ratios(engine_blocks: Sequence[float],
                     baseline_blocks: Sequence[float]) -> np.ndarray:
  """engine / baseline block time, round by round (over the rounds both have)."""
  n = min(len(engine_blocks), len(baseline_blocks))
  return np.asarray(engine_blocks[:n], np.float64) / np.asarray(baseline_blocks[:n], np.float64)


def bootstrap_median_interval(values: Sequence[float], seed: int = 0,
                              resamples: int = BOOTSTRAP_RESAMPLES,
                              confidence: float = CONFIDENCE) -> tuple[float, float, float]:
  """(median, low, high): the median of `values` and its percentile bootstrap interval.

  Raises:
    ValueError: for no values.
  """
  values = np.asarray(values, np.float64)
  if values.size == 0:
    raise ValueError("No values to bootstrap.")
  rng = np.random.default_rng(seed)
  samples = rng.choice(values, size=(resamples, values.size), replace=True)
  medians = np.median(samples, axis=1)
  tail = 100 * (1 - confidence) / 2
  low, high = np.percentile(medians, [tail, 100 - tail])
  return float(np.median(values)), float(low), float(high)


def ratio_interval(engine_blocks: Sequence[float], baseline_blocks: Sequence[float],
                   estimator: str = DEFAULT_ESTIMATOR, seed: int = 0,
                   resamples: int = BOOTSTRAP_RESAMPLES,
                   confidence: float = CONFIDENCE) -> tuple[float, float, float]:
  """(ratio, low, high): engine over baseline time with a paired bootstrap interval over rounds.

  `median`: the median of per-round ratios (a drift longer than a round cancels within it).
  `min`: min(engine blocks) / min(baseline blocks), BenchmarkTools.jl's estimator under noise
  that only ever adds time; the interval resamples whole rounds, pairs kept.

  Raises:
    ValueError: an unknown estimator or no rounds.
  """
  if estimator == "median":
    return bootstrap_median_interval(per_round_ratios(engine_blocks, baseline_blocks), seed,
                                     resamples, confidence)
  if estimator != "min":
    raise ValueError(f"Unknown estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}.")
  n = min(len(engine_blocks), len(baseline_blocks))
  if n == 0:
    raise ValueError("No values to bootstrap.")
  e = np.asarray(engine_blocks[:n], np.float64)
  b = np.asarray(baseline_blocks[:n], np.float64)
  picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
  samples = e[picks].min(axis=1) / b[picks].min(axis=1)
  tail = 100 * (1 - confidence) / 2
  low, high = np.percentile(samples, [tail, 100 - tail])
  return float(e.min() / b.min()), float(low), float(high)


def relative_half_width(ratio: float, low: float, high: float) -> float:
  """Half the interval's width over the ratio (inf for a ratio that is not positive)."""
  return (high - low) / 2 / ratio if ratio > 0 else math.inf


def precision_rule(baseline: str, precision: float, estimator: str = DEFAULT_ESTIMATOR,
                   seed: int = 0) -> Callable[[Mapping[str, Sequence[float]]], bool]:
  """A stopping rule for `timing.time_rounds`: true once every engine's speedup against
  `baseline` has a relative half-width of at most `precision`: the same bootstrap, with the
  same seed, as the reported interval, so a case that stopped here is reported resolved."""
  def reached(per_call_s: Mapping[str, Sequence[float]]) -> bool:
    base = per_call_s.get(baseline)
    if not base:
      return True  # nothing to compare with: more rounds cannot help
    for name, blocks in per_call_s.items():
      if name == baseline or not blocks:
        continue
      ratio, low, high = ratio_interval(blocks, base, estimator, seed)
      if relative_half_width(ratio, low, high) > precision:
        return False
    return True
  return reached


def check_precision(precision: float | None, min_run_time: float,
                    max_run_time: float | None, prefix: str = "--") -> None:
  """Refuses a precision target outside (0, 1) or a time cap below the floor (`prefix`: "--"
  names the CLI's flags, "" the Python API's parameters).

  Raises:
    UsageError: naming the flag, its value and what is allowed.
  """
  if precision is not None and not 0 < precision < 1:  # NaN fails both comparisons
    raise UsageError(f"Invalid {prefix}precision={precision!r}: a relative half-width strictly "
                     "between 0 and 1 (e.g. 0.05 for +-5%).")
  if max_run_time is not None and not max_run_time >= min_run_time:
    raise UsageError(f"Invalid {prefix}max_run_time={max_run_time!r}: it must be at least "
                     f"{prefix}min_run_time={min_run_time!r} (seconds per case).")


def check_estimator(estimator: str, prefix: str = "--") -> None:
  """Raises UsageError for an estimator not in ESTIMATORS."""
  if estimator not in ESTIMATORS:
    raise UsageError(f"Invalid {prefix}estimator={estimator!r}: valid: {', '.join(ESTIMATORS)}.")
