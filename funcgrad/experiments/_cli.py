"""What every experiment shares: flag errors and user errors as one line, exit 2, no traceback.

Also: numbers checked at parse time (finite, within a stated range), output paths checked before
any work, flagfiles refused unless they are small regular files, and Ctrl-C as one line (saying
what was kept) with exit status 130.

This module defines no flags (absl flag names are global; each script defines its own).
"""

import gc
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from absl import app, flags, logging

from funcgrad import files, outputs, peers
from funcgrad.errors import UsageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C
MAX_SEED = 2**32 - 1  # NumPy's RandomState takes seeds in [0, 2**32)
MAX_FLAGFILE_BYTES = 2**20
_MAX_FLAGFILE_DEPTH = 8

_on_interrupt: list[Callable[[], str]] = []
_running_main = False


def _sigint(signum: int, frame: Any) -> None:
  del signum, frame
  if _running_main:
    raise KeyboardInterrupt  # unwinds `finally` blocks (files closed, children killed) first
  _interrupted()  # still importing or parsing: nothing to clean up


signal.signal(signal.SIGINT, _sigint)  # from import on: Ctrl-C during JAX's import is one line


def define_allocator_flag() -> flags.FlagHolder[str]:
  """`--allocator` and `--thread_pools`, for the scripts that time things (each defines them once,
  by calling this, and calls `restart_as_asked` first thing in main)."""
  from funcgrad import allocator, thread_pools  # noqa: PLC0415 - only the timing scripts need it

  flags.DEFINE_enum(
      "thread_pools", "spin", list(thread_pools.POLICIES), "How the peers' worker threads wait "
      "(restarts the process): spin = each library's default; passive = OMP_WAIT_POLICY=PASSIVE "
      "and OPENBLAS_THREAD_TIMEOUT=4, so that idle NumPy and torch workers do not take the cores "
      "from the next engine in interleaved rounds (docs/PERFORMANCE.md).",
      module_name=sys.argv[0])
  return flags.DEFINE_enum(
      "allocator", "auto", list(allocator.ALLOCATORS), "Memory allocator for this run (restarts "
      f"the process with LD_PRELOAD): auto = the first installed of "
      f"{', '.join(allocator.AUTO_ORDER)} (fastest first, measured: see BUILD.md), else the "
      "system's; mimalloc comes with pip install -e '.[fast]'.",
      module_name=sys.argv[0])  # listed by --help as the calling script's own flag


def restart_as_asked(allocator_name: str) -> str:
  """Runs this process under `--allocator` and `--thread_pools`, restarting it once if needed."""
  from funcgrad import allocator, thread_pools  # noqa: PLC0415

  return allocator.reexec_with(
      allocator_name, environ=thread_pools.environment(flags.FLAGS["thread_pools"].value))


def fail(message: str) -> None:
  """Prints one `error:` line to stderr and exits with status 2."""
  sys.stderr.write(f"error: {message}\n")
  sys.exit(EXIT_USAGE)


def in_range(holder: flags.FlagHolder, low: float, high: float, low_open: bool = False) -> None:
  """Refuses, when flags are parsed, a value of a float flag that is not finite or not within
  [low, high] ((low, high] with `low_open`); the message names the flag and the range."""
  interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"

  def valid(value: float | None) -> bool:
    if value is None:
      return True
    above = value > low if low_open else value >= low
    return math.isfinite(value) and above and value <= high

  flags.register_validator(holder, valid, message=f"expected a finite number in {interval}")


def on_interrupt(callback: Callable[[], str]) -> None:
  """Registers what Ctrl-C reports (e.g. `lambda: "kept 12 rows in out.jsonl"`)."""
  _on_interrupt.append(callback)


def _count_lines(path: str) -> int:
  try:
    with files.open_regular(path, 2**40, "Output") as f:
      return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(2**20), b""))
  except UsageError:
    return 0


def check_outputs(paths: Mapping[str, str | None], streamed: str | None = None) -> None:
  """`outputs.check_output_paths(paths)` before any work; with `streamed` (the flag of a JSONL
  output), Ctrl-C then reports how many rows that file gained and where.

  Raises:
    UsageError: naming the flag whose path cannot be written, or two flags naming one file.
  """
  outputs.check_output_paths(paths)
  path = paths.get(streamed) if streamed else None
  if path:
    before = _count_lines(path) if os.path.isfile(path) else 0
    on_interrupt(lambda: f"kept {_count_lines(path) - before} finished rows in {path}")


def _interrupted() -> None:
  kept = "; ".join(callback() for callback in _on_interrupt) or "nothing was written"
  sys.stderr.write(f"error: interrupted (Ctrl-C); {kept}.\n")
  sys.stderr.flush()
  sys.exit(EXIT_INTERRUPTED)


def _flagfiles(argv: list[str]) -> list[str]:
  found = []
  for i, arg in enumerate(argv):
    name, eq, value = arg.lstrip("-").partition("=")
    if arg.startswith("-") and name == "flagfile":
      found.append(value if eq else (argv[i + 1] if i + 1 < len(argv) else ""))
  return found


def check_flagfiles(argv: list[str], depth: int = 0) -> None:
  """Refuses a --flagfile (and the flagfiles it names) that is not a small regular file, before
  absl opens it (absl would wait on a FIFO, or read /dev/zero until memory runs out).

  Raises:
    UsageError: naming the flagfile and what is wrong.
  """
  for path in _flagfiles(argv):
    if depth >= _MAX_FLAGFILE_DEPTH:
      raise UsageError(f"--flagfile={path!r}: flagfiles nest deeper than {_MAX_FLAGFILE_DEPTH}.")
    text = files.read_regular(path, MAX_FLAGFILE_BYTES, "--flagfile")
    check_flagfiles(text.decode("utf-8", "replace").split(), depth + 1)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    check_flagfiles(argv)
    return flags.FLAGS(argv)
  except (flags.Error, UsageError) as e:
    fail(str(e))
    raise  # unreachable: fail() exits


def _bad_platforms(error: BaseException) -> bool:
  """Whether `error` is JAX failing to start the platforms the user set in JAX_PLATFORMS (the
  environment's mistake, not a bug): JAX raises RuntimeError, or in some versions an
  AssertionError, from its backend set-up."""
  if not os.environ.get("JAX_PLATFORMS"):
    return False
  frames = traceback.extract_tb(error.__traceback__)
  return any(frame.filename.endswith(("xla_bridge.py", "backend.py")) for frame in frames) or \
      "Unable to initialize backend" in str(error)


def run(main: Callable[[list[str]], int | None]) -> None:
  """`absl.app.run(main)`, with bad flags and user errors reported as one line."""

  def guarded(argv: list[str]) -> int | None:
    if len(argv) > 1:
      fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag (see --help).")
    verbose = flags.FLAGS["verbosity"].present
    if not verbose:
      # JAX logs its backend probing ("Unable to initialize backend 'tpu'") at INFO, TensorFlow
      # and XLA their C++ notices; keep stderr for what matters. --verbosity=0 brings them back.
      logging.set_verbosity(logging.WARNING)
    peers.set_native_log_level(verbose)  # before main: TensorFlow's import, JAX's backends
    global _running_main
    _running_main = True
    # What the imports built lives as long as the process: out of the cyclic collector's sight,
    # a full collection (~40 ms over JAX's ~110k objects here) never lands in a timed first call.
    gc.freeze()
    try:
      return main(argv)
    except UsageError as e:  # only these: any other exception is a bug and keeps its traceback
      fail(str(e))
    except (RuntimeError, AssertionError) as e:
      if not _bad_platforms(e):
        raise
      fail(f"JAX_PLATFORMS={os.environ['JAX_PLATFORMS']!r} names a platform JAX cannot start "
           f"here ({str(e).splitlines()[0][:200]}); unset it, or set one of cpu, cuda, tpu that "
           "is installed.")
    except KeyboardInterrupt:
      _interrupted()

  app.run(guarded, flags_parser=_parse_flags)
