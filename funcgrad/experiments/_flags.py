"""The flags several scripts share, each defined and validated once here.

A script calls `define_min_run_time(0.2, "per engine and case")` and so on at import, reads
`.value` in `main`, and gets the same name, help, range and error message as every other script.
Lists typed into flags are parsed by `funcgrad.shapes` (`parse_shapes`, `parse_names`,
`parse_ints`), whose errors name the flag.
"""

from absl import flags

from funcgrad.experiments import _cli

MAX_MIN_RUN_TIME_S = 3600.0


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
