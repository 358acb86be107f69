"""The flags several scripts share, each defined and validated once here.

A script calls `define_min_run_time(0.2, "per engine and case")` and so on at import, reads
`.value` in `main`, and gets the same name, help, range and error message as every other script.
Lists typed into flags are parsed by `funcgrad.shapes` (`parse_shapes`, `parse_names`,
`parse_ints`), whose errors name the flag.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from absl import flags

from funcgrad.experiments import _cli

if TYPE_CHECKING:
  from funcgrad.bench import baselines, case

MAX_MIN_RUN_TIME_S = 3600.0
DEFAULT_MAX_RUN_TIME_FACTOR = 30  # as case.DEFAULT_MAX_RUN_TIME_FACTOR (checked by a test)


def define_min_run_time(default: float, per: str) -> flags.FlagHolder[float]:
  """`--min_run_time`: seconds of timed blocks `per` ('per engine and case'), in (0, 3600]."""
  holder = flags.DEFINE_float("min_run_time", default, f"Seconds of timed blocks {per}, in "
                              f"(0, {MAX_MIN_RUN_TIME_S:g}].")
  _cli.in_range(holder, 0, MAX_MIN_RUN_TIME_S, low_open=True)
  return holder


def define_seed(what: str) -> flags.FlagHolder[int]:
  """`--seed`: a non-negative integer seeding `what`."""
  return flags.DEFINE_integer("seed", 0, f"Seed of {what}.", lower_bound=0,
                              upper_bound=_cli.MAX_SEED)


def define_output_json(what: str) -> flags.FlagHolder[str]:
  """`--output_json`: where the script writes its JSON (`what`: its top-level keys)."""
  return flags.DEFINE_string("output_json", None, f"Write {what} JSON here.")


def define_allocator() -> flags.FlagHolder[str]:
  """`--allocator` and `--thread_pools` (see `_cli.define_allocator_flag`)."""
  return _cli.define_allocator_flag()


@dataclasses.dataclass(frozen=True)
class PrecisionFlags:
  """`--precision`, `--max_run_time`, `--estimator` and `--isolation` of one script."""

  precision: flags.FlagHolder
  max_run_time: flags.FlagHolder
  estimator: flags.FlagHolder
  isolation: flags.FlagHolder

  def timing(self, min_run_time: float, seed: int, interleave: bool = True,
             baseline: str | None = None) -> case.Timing:
    """The case's `Timing` from these flags (checked: one `error:` line naming the flag)."""
    from funcgrad.bench import case  # noqa: PLC0415 - the bench modules import JAX
    max_run_time = self.max_run_time.value
    if self.precision.value is not None and max_run_time is None:
      max_run_time = DEFAULT_MAX_RUN_TIME_FACTOR * min_run_time
    timing = case.Timing(min_run_time, seed, interleave, self.precision.value, max_run_time,
                         self.estimator.value, self.isolation.value, baseline)
    timing.check()
    return timing


def define_precision_flags(precision: float | None = None,
                           max_run_time: float | None = None) -> PrecisionFlags:
  """`--precision` (default `precision`), `--max_run_time`, `--estimator` and `--isolation`:
  the stopping rule, the estimator and the isolation of a timing script."""
  from funcgrad.bench import intervals  # noqa: PLC0415 - the bench modules import JAX
  from funcgrad.bench import timing as timing_lib  # noqa: PLC0415
  return PrecisionFlags(
      flags.DEFINE_float("precision", precision, "Go on past --min_run_time until every "
                         "speedup's 95% interval has at most this relative half-width, in (0, "
                         "1) (e.g. 0.05), or until --max_run_time."),
      flags.DEFINE_float("max_run_time", max_run_time, "With --precision: the most seconds of "
                         "rounds per case (none: "
                         f"{DEFAULT_MAX_RUN_TIME_FACTOR} x --min_run_time)."),
      flags.DEFINE_string("estimator", intervals.DEFAULT_ESTIMATOR, "median (of per-round "
                          "ratios; the default, measured to agree better back to back on a "
                          "2-core VM) or min (ratio of the fastest blocks)."),
      flags.DEFINE_string("isolation", timing_lib.DEFAULT_ISOLATION, "cooldown (before each "
                          "block, wait until the other engines' threads sleep; the default, "
                          "docs/PERFORMANCE.md) or none (blocks back to back)."))


@dataclasses.dataclass(frozen=True)
class BaselineFlags:
  """`--save_baseline`, `--compare_to`, `--noise_threshold`, `--fail_on_regression`,
  `--allow_other_machine`."""

  save: flags.FlagHolder
  compare_to: flags.FlagHolder
  noise_threshold: flags.FlagHolder
  fail_on_regression: flags.FlagHolder
  allow_other_machine: flags.FlagHolder
  _read: dict[str, Any] = dataclasses.field(default_factory=dict)  # --compare_to's file, once

  def check(self) -> None:
    """The checks that need no import of the engines, first thing in a script: the flags, and
    the --compare_to file read and parsed (a missing or malformed one is refused in a second,
    not after the engines' imports and the copy-bandwidth measurement)."""
    from funcgrad.bench import baselines  # noqa: PLC0415 - the bench modules import JAX
    baselines.check_fail_on_regression(self.fail_on_regression.value, self.compare_to.value)
    baselines.check_threshold(self.noise_threshold.value)
    path = self.compare_to.value
    if path and path not in self._read:
      self._read[path] = baselines.load(path)  # read once: what is checked is what is compared

  def load(self, machine: dict[str, Any]) -> baselines.Baseline | None:
    """The baseline to compare with (None without --compare_to), checked before any timing."""
    from funcgrad.bench import baselines  # noqa: PLC0415 - the bench modules import JAX
    self.check()
    if not self.compare_to.value:
      return None
    old = self._read[self.compare_to.value]
    baselines.check_machine(old, machine, self.allow_other_machine.value)
    return old


def define_baseline_flags() -> BaselineFlags:
  """Saved baselines and change detection for the timing scripts."""
  from funcgrad.bench import baselines  # noqa: PLC0415 - the bench modules import JAX
  return BaselineFlags(
      flags.DEFINE_string("save_baseline", None, "Write the rows with their raw block times and "
                          "the machine here, for a later --compare_to."),
      flags.DEFINE_string("compare_to", None, "A baseline written by --save_baseline: adds a "
                          "table (and JSON `changes`) of new/old time per row with a 95% "
                          "interval and a verdict faster/slower/no change."),
      flags.DEFINE_float("noise_threshold", baselines.NOISE_THRESHOLD, "With --compare_to: a "
                         "change smaller than this share is 'no change'."),
      flags.DEFINE_bool("fail_on_regression", False, "With --compare_to: exit 1 when any row "
                        "is slower than the baseline (for CI)."),
      flags.DEFINE_bool("allow_other_machine", False, "With --compare_to: compare with a "
                        "baseline from another machine, JAX version or allocator."))
