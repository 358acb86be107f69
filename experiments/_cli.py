"""What every experiment shares: flag errors and user errors as one line, exit 2, no traceback.

This module defines no flags (absl flag names are global; each script defines its own).
"""

import sys
from collections.abc import Callable

from absl import app, flags, logging

from funcgrad.errors import UsageError

EXIT_USAGE = 2


def define_allocator_flag() -> flags.FlagHolder[str]:
  """`--allocator`, for the scripts that time things (each defines it once, by calling this)."""
  from funcgrad import allocator  # noqa: PLC0415 - only the scripts that call this need it

  return flags.DEFINE_enum(
      "allocator", "auto", list(allocator.ALLOCATORS), "Memory allocator for this run (restarts "
      f"the process with LD_PRELOAD): auto = the first installed of "
      f"{', '.join(allocator.AUTO_ORDER)} (fastest first, measured: see BUILD.md), else the "
      "system's; mimalloc comes with pip install -e '.[fast]'.",
      module_name=sys.argv[0])  # listed by --help as the calling script's own flag


def fail(message: str) -> None:
  """Prints one `error:` line to stderr and exits with status 2."""
  sys.stderr.write(f"error: {message}\n")
  sys.exit(EXIT_USAGE)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
    raise  # unreachable: fail() exits


def run(main: Callable[[list[str]], int | None]) -> None:
  """`absl.app.run(main)`, with bad flags and user errors reported as one line."""

  def guarded(argv: list[str]) -> int | None:
    if len(argv) > 1:
      fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag (see --help).")
    if not flags.FLAGS["verbosity"].present:
      # JAX logs its backend probing ("Unable to initialize backend 'tpu'") at INFO; keep stderr
      # for what matters. --verbosity=0 brings it back.
      logging.set_verbosity(logging.WARNING)
    try:
      return main(argv)
    except UsageError as e:  # only these: any other exception is a bug and keeps its traceback
      fail(str(e))

  app.run(guarded, flags_parser=_parse_flags)
