"""What every experiment shares: flag errors and user errors as one line, exit 2, no traceback.

Also: numbers checked at parse time (finite, within a stated range), output paths checked before
any work, flagfiles refused unless they are small regular files, a flag given twice warned of,
`JAX_PLATFORMS` and `XLA_FLAGS` checked before JAX starts, and Ctrl-C, SIGTERM and SIGHUP as one
line (saying what was kept: every registered `on_interrupt` callback writes its outputs first)
with exit status 130, 143 and 129. Error lines are bounded in length and control characters in
them escaped. `--help` exits 0; a closed stdout (`| head`) ends the script quietly.

This module defines no flags (absl flag names are global; each script defines its own).
"""

import gc
import math
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from absl import app, flags, logging

from funcgrad import devices, files, outputs, peers
from funcgrad.errors import UsageError
from funcgrad.experiments import (
    DEFAULT_ALLOCATOR,
    DEFAULT_THREAD_POOLS,
    SIGNAL_NAMES,
    early_exit,
    install_early_signal_handlers,
    signals_held,
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C
MAX_SEED = 2**32 - 1  # NumPy's RandomState takes seeds in [0, 2**32)
MAX_FLAGFILE_BYTES = 2**20
MAX_ERROR_CHARS = 1000  # an error line longer than this is cut (20,000 --shapes make 100 KB)
_MAX_FLAGFILE_DEPTH = 8
_HELP_FLAGS = ("help", "helpfull", "helpshort", "helpxml", "h", "?")
_XLA_CHECKED = "FUNCGRAD_XLA_FLAGS_CHECKED"  # XLA_FLAGS a parent process already checked

_on_interrupt: list[Callable[[], str]] = []
_running_main = False
_pending: int | None = None  # a signal whose exception may have been swallowed (a GC callback)
_stopping = False


class Interrupted(KeyboardInterrupt):
  """Ctrl-C, SIGTERM or SIGHUP, raised in the main thread so that `finally` blocks run."""

  def __init__(self, signum: int = signal.SIGINT):
    super().__init__(SIGNAL_NAMES.get(signum, str(signum)))
    self.signum = signum


def _in_gc_callback(frame: Any) -> bool:
  """Whether `frame` runs inside a `gc.callbacks` function (which swallows exceptions)."""
  codes = {getattr(c, "__code__", None) for c in gc.callbacks}
  while frame is not None:
    if frame.f_code in codes:
      return True
    frame = frame.f_back
  return False


def _kick_again(signum: int) -> None:
  """Re-delivers `signum` to the main thread once the GC callback has returned."""
  def kick() -> None:
    if _pending is not None and not _stopping:
      signal.pthread_kill(threading.main_thread().ident, signum)

  timer = threading.Timer(0.05, kick)
  timer.daemon = True
  timer.start()


def _on_signal(signum: int, frame: Any) -> None:
  global _pending
  if _stopping:
    return  # already writing what was kept
  if not _running_main:
    early_exit(signum)  # still importing or parsing: nothing to clean up
  _pending = signum
  if _in_gc_callback(frame):
    _kick_again(signum)  # an exception raised here would be printed and dropped
    return
  raise Interrupted(signum)  # unwinds `finally` blocks (files closed, children killed) first


def install_signal_handlers() -> None:
  """Ctrl-C, SIGTERM and SIGHUP: one line and 128+N while starting; `Interrupted` in main. A
  signal the parent set to be ignored (nohup, a shell's background job) stays ignored."""
  install_early_signal_handlers(_on_signal)


install_signal_handlers()  # from import on (the launchers install a simpler one before that)


def define_allocator_flag() -> flags.FlagHolder[str]:
  """`--allocator` and `--thread_pools`, for the scripts that time things (each defines them once,
  by calling this, and calls `restart_as_asked` first thing in main)."""
  from funcgrad import allocator, thread_pools  # noqa: PLC0415 - only the timing scripts need it

  flags.DEFINE_enum(
      "thread_pools", DEFAULT_THREAD_POOLS, list(thread_pools.POLICIES),
      "How the peers' worker threads wait (restarts the process): spin = each library's "
      "default; passive = OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4, so that idle "
      "NumPy and torch workers do not take the cores from the next engine in interleaved rounds "
      "(docs/PERFORMANCE.md).",
      module_name=sys.argv[0])
  return flags.DEFINE_enum(
      "allocator", DEFAULT_ALLOCATOR, list(allocator.ALLOCATORS),
      "Memory allocator for this run (restarts the process with LD_PRELOAD): auto = the first "
      "installed of "
      f"{', '.join(allocator.AUTO_ORDER)} (fastest first, measured: see BUILD.md), else the "
      "system's; mimalloc comes with pip install -e '.[fast]'.",
      module_name=sys.argv[0])  # listed by --help as the calling script's own flag


def restart_as_asked(allocator_name: str) -> str:
  """Runs this process under `--allocator` and `--thread_pools`, restarting it once if needed."""
  from funcgrad import allocator, thread_pools  # noqa: PLC0415

  with signals_held():  # a signal in the restarted process's first moments waits for its handlers
    return allocator.reexec_with(
        allocator_name, environ=thread_pools.environment(flags.FLAGS["thread_pools"].value))


class _Failed(SystemExit):
  """The exit of `fail` (told apart from a `sys.exit` in code a script runs)."""


def error_line(message: str) -> str:
  """`error: MESSAGE` on one line: control characters escaped, at most `MAX_ERROR_CHARS`."""
  text = files.printable(" ".join(str(message).split("\n")))
  if len(text) > MAX_ERROR_CHARS:  # keep both ends: the value starts, the flag often ends it
    head, tail = MAX_ERROR_CHARS * 2 // 3, MAX_ERROR_CHARS // 3 - 40
    text = f"{text[:head]} ...({len(text) - head - tail} characters cut)... {text[-tail:]}"
  return f"error: {text}\n"


def fail(message: str, status: int = EXIT_USAGE) -> None:
  """Prints one `error:` line to stderr (see `error_line`) and exits with `status` (2)."""
  sys.stderr.write(error_line(message))
  sys.stderr.flush()
  raise _Failed(status)


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


def _interrupted(signum: int = signal.SIGINT) -> None:
  """Runs every `on_interrupt` callback (each writes what finished), prints one line, exits."""
  global _stopping
  _stopping = True
  kept = []
  for callback in _on_interrupt:
    try:
      kept.append(callback())
    except Exception as e:  # noqa: BLE001 - one failed output must not hide the others
      kept.append(f"an output failed ({type(e).__name__}: {e})")
  what = "Ctrl-C" if signum == signal.SIGINT else SIGNAL_NAMES.get(signum, f"signal {signum}")
  sys.stderr.write(error_line(f"interrupted ({what}); {'; '.join(kept) or 'nothing was written'}."))
  sys.stderr.flush()
  raise _Failed(128 + signum)


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


def _flag_name(arg: str) -> str | None:
  if not arg.startswith("-") or arg in ("-", "--"):
    return None
  name = arg.lstrip("-").partition("=")[0]
  if name not in flags.FLAGS and name.startswith("no") and name[2:] in flags.FLAGS:
    name = name[2:]
  return name


def duplicate_flags(argv: list[str]) -> list[str]:
  """One warning per flag given more than once on the command line (absl keeps the last value);
  repeatable (multi) flags and --flagfile may repeat. Each warning names the flag, every value
  given and the one used."""
  given: dict[str, list[str]] = {}
  for arg in argv[1:]:
    if arg == "--":
      break
    name = _flag_name(arg)
    if name is None or name == "flagfile" or name not in flags.FLAGS:
      continue
    if not isinstance(flags.FLAGS[name], flags.MultiFlag):
      given.setdefault(name, []).append(arg)
  return [f"warning: --{name} is given {len(args)} times ({', '.join(args)}); the last, "
          f"{args[-1]}, is used." for name, args in given.items() if len(args) > 1]


def _parse_flags(argv: list[str]) -> list[str]:
  asked_help = any(_flag_name(a) in _HELP_FLAGS for a in argv[1:])
  try:
    check_flagfiles(argv)
    for warning in duplicate_flags(argv):
      sys.stderr.write(error_line(warning).removeprefix("error: "))
    return flags.FLAGS(argv)
  except (flags.Error, UsageError) as e:
    fail(str(e))
    raise  # unreachable: fail() exits
  except SystemExit as e:
    if asked_help and not isinstance(e, _Failed):
      sys.stdout.flush()
      raise SystemExit(0) from None  # absl exits 1 after printing the help it was asked for
    raise


def check_xla_flags() -> None:
  """Refuses, before JAX starts, an `XLA_FLAGS` that XLA would abort on (it prints a fatal line
  or its whole flag help and kills the process): a child process with the same environment
  starts JAX's CPU backend first, once per value (children of this process skip it).

  Raises:
    UsageError: naming XLA_FLAGS, the bad flag XLA reported and how to fix it.
  """
  value = os.environ.get("XLA_FLAGS", "")
  if not value.strip() or os.environ.get(_XLA_CHECKED) == value:
    return
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices('cpu')"], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
  if probe.returncode != 0:
    lines = [ln.strip() for ln in probe.stderr.splitlines() if ln.strip()]
    said = next((ln for ln in lines if "XLA_FLAGS" in ln or "nknown" in ln), lines[-1:] or [""])
    said = said if isinstance(said, str) else (said[0] if said else "")
    raise UsageError(f"XLA_FLAGS={value[:200]!r} is refused by XLA ({said[:300] or 'it aborts'});"
                     " unset XLA_FLAGS or keep only flags XLA knows (each --xla_NAME=VALUE).")
  os.environ[_XLA_CHECKED] = value


def _bad_platforms(error: BaseException) -> bool:
  """Whether `error` is JAX failing to start the platforms the user set in JAX_PLATFORMS (the
  environment's mistake, not a bug): JAX raises RuntimeError, or in some versions an
  AssertionError, from its backend set-up."""
  if not os.environ.get("JAX_PLATFORMS"):
    return False
  frames = traceback.extract_tb(error.__traceback__)
  return any(frame.filename.endswith(("xla_bridge.py", "backend.py")) for frame in frames) or \
      "Unable to initialize backend" in str(error)


def _platform_error(error: BaseException) -> str:
  first = next((ln for ln in str(error).splitlines() if ln.strip()), type(error).__name__)
  return (f"JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS', '')!r} names a platform JAX cannot "
          f"start here ({first[:200]}); unset JAX_PLATFORMS, or set it to platforms this machine "
          f"has ({', '.join(devices.known_platforms())}).")


def _code_exit(error: BaseException) -> str:
  """The message for a `sys.exit` or other BaseException raised by code a script ran."""
  function = flags.FLAGS["function"].value if "function" in flags.FLAGS else None
  detail = error.code if isinstance(error, SystemExit) else error
  what = f"{type(error).__name__}({detail!r})" if detail not in (None, "") else type(error).__name__
  if function:
    return (f"--function={function} raised {what} while it was imported or called; a function "
            "to time must return its value (not exit or raise BaseException).")
  return f"the run was ended by {what} from code it ran, before it finished."


def _quiet_broken_pipe() -> None:
  """stdout was closed by its reader (`| head`): end quietly, as a shell tool does."""
  try:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
  except (OSError, ValueError):
    pass
  raise _Failed(0)


def run(main: Callable[[list[str]], int | None]) -> None:
  """`absl.app.run(main)`, with bad flags and user errors reported as one line."""

  def guarded(argv: list[str]) -> int | None:
    global _running_main, _pending
    if len(argv) > 1:
      fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag (see --help).")
    verbose = flags.FLAGS["verbosity"].present
    if not verbose:
      # JAX logs its backend probing ("Unable to initialize backend 'tpu'") at INFO, TensorFlow
      # and XLA their C++ notices; keep stderr for what matters. --verbosity=0 brings them back.
      logging.set_verbosity(logging.WARNING)
    try:
      devices.check_jax_platforms()
      check_xla_flags()
    except UsageError as e:
      fail(str(e))
    peers.set_native_log_level(verbose)  # before main: TensorFlow's import, JAX's backends
    _pending = None
    _running_main = True
    # What the imports built lives as long as the process: out of the cyclic collector's sight,
    # a full collection (~40 ms over JAX's ~110k objects here) never lands in a timed first call.
    gc.freeze()
    try:
      status = main(argv)
    except UsageError as e:  # only these: any other exception is a bug and keeps its traceback
      fail(str(e))
    except (RuntimeError, AssertionError) as e:
      if not _bad_platforms(e):
        raise
      fail(_platform_error(e))
    except KeyboardInterrupt as e:
      _interrupted(getattr(e, "signum", signal.SIGINT))
    except BrokenPipeError:
      _quiet_broken_pipe()
    except _Failed:
      raise
    except SystemExit as e:
      fail(_code_exit(e))
    except Exception:
      raise
    except BaseException as e:  # noqa: BLE001 - a user's code raising GeneratorExit and the like
      fail(_code_exit(e))
    finally:
      _running_main = False
    if _pending is not None:  # a signal whose exception a GC callback swallowed
      _interrupted(_pending)
    try:
      sys.stdout.flush()
    except BrokenPipeError:
      _quiet_broken_pipe()
    return status

  script = sys.modules.get(getattr(main, "__module__", ""))
  if script is not None and script is sys.modules.get("__main__") and script.__doc__:
    # absl's --help %-formats the script's docstring: "95% speedup" would print the path.
    script.__doc__ = script.__doc__.replace("%", "%%")
  app.run(guarded, flags_parser=_parse_flags)
