"""The experiments: thin absl scripts, one per tutorial section and per measurement.

From any folder, after `pip install -e .`: `funcgrad <name> [flags]` (or `python -m funcgrad
<name>`); from the repository root also `python -m experiments.<name>`. Each is
`funcgrad.experiments.<name>`, run as `__main__`; `funcgrad <name> --help` lists its flags.

Ctrl-C, SIGTERM and SIGHUP are handled from the first moment: the launchers (`funcgrad`, `python
-m funcgrad`, the repository's shims) and `python -m funcgrad.experiments.<name>` (through this
package's import) install a handler that prints one line and exits with 128+N before JAX is
even imported; `_cli` replaces it with one that writes what finished once a script's main runs.

The scripts that time things run under `--allocator` and `--thread_pools`, which take effect only
when the process starts: the launchers restart the process for them before the script imports
JAX and the frameworks (`restart_early`), rather than after (`_cli.restart_as_asked`, first thing
in a script's main, does it for the other ways in), which costs a second or two a run.
"""

import contextlib
import os
import runpy
import signal
import sys
from collections.abc import Callable
from typing import Any

SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def early_exit(signum: int, frame: Any = None) -> None:
  """One line and exit status 128+N, at once: nothing was written yet, and unwinding a half-done
  import (JAX's threads starting) would print tracebacks or crash."""
  del frame
  what = "Ctrl-C" if signum == signal.SIGINT else SIGNAL_NAMES.get(signum, f"signal {signum}")
  os.write(2, f"error: interrupted ({what}) while starting; nothing was written.\n".encode())
  os._exit(128 + signum)


def install_early_signal_handlers(handler: Callable[[int, Any], None] = early_exit) -> None:
  """Sends SIGINT, SIGTERM and SIGHUP to `handler`, except those set to be ignored (nohup); then
  lets through any that a restart held (`signals_held`), which reach `handler` now."""
  for signum in SIGNAL_NAMES:
    if signal.getsignal(signum) is not signal.SIG_IGN:
      signal.signal(signum, handler)
  signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNAL_NAMES)


@contextlib.contextmanager
def signals_held():
  """SIGINT, SIGTERM and SIGHUP held (blocked) around a restart of this process.

  The signal mask survives execve and the handlers do not: a signal in the restarted process's
  first moments, before `install_early_signal_handlers` runs there, would end it with no message
  (SIGTERM, SIGHUP) or a KeyboardInterrupt traceback. Held, it waits for that call, which lets it
  through to the handler. Released here if the restart returns or raises.
  """
  signal.pthread_sigmask(signal.SIG_BLOCK, SIGNAL_NAMES)
  try:
    yield
  finally:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNAL_NAMES)


def die_with_parent() -> None:
  """In a process of a local job (`funcgrad.distributed.run_local_job` sets
  FUNCGRAD_JOB_PARENT): be killed when the process that started it ends, however it ends
  (SIGKILL included: the kernel's parent-death signal); end now if it is already gone."""
  parent = os.environ.get("FUNCGRAD_JOB_PARENT", "")
  if not parent.isdigit():
    return
  try:
    import ctypes  # noqa: PLC0415 - only processes of a local job need it

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):  # not Linux: the parent's own clean-up still kills it
    pass
  if os.getppid() != int(parent):
    os._exit(1)


# The scripts that time things, which run under --allocator and --thread_pools; the flags'
# defaults (`_cli.define_allocator_flag` defines them).
RESTARTING = ("compare", "crossover", "optimize", "scaling", "benchmark")
DEFAULT_ALLOCATOR = "auto"
DEFAULT_THREAD_POOLS = "spin"


def _restart_settings(args: list[str]) -> dict[str, str] | None:
  """--allocator and --thread_pools as `args` give them, or None where only absl's parse can
  tell for sure (another spelling than --NAME=VALUE, a flag file, a request for help)."""
  settings = {"allocator": DEFAULT_ALLOCATOR, "thread_pools": DEFAULT_THREAD_POOLS}
  for arg in args:
    if arg == "--":
      break
    key = arg.lstrip("-").partition("=")[0]
    if key in ("flagfile", "help", "helpfull", "helpshort", "helpxml", "h", "?"):
      return None
    if key in settings:
      if not arg.startswith(f"--{key}="):
        return None
      settings[key] = arg.partition("=")[2]  # absl keeps the last of a repeated flag
  return settings


def restart_early(name: str, args: list[str]) -> None:
  """For a script that times things: the restart under `--allocator` and `--thread_pools` that
  its main would do first thing, done now, before its imports. Returns when none is needed or
  when the flags are not certain or not valid (main parses them and says what is wrong);
  otherwise does not return (the process is restarted with the same command line)."""
  settings = _restart_settings(args) if name in RESTARTING else None
  if settings is None:
    return
  from funcgrad import allocator, thread_pools  # noqa: PLC0415 - standard library only
  from funcgrad.errors import UsageError  # noqa: PLC0415

  try:
    with signals_held():
      allocator.reexec_with(settings["allocator"],
                            environ=thread_pools.environment(settings["thread_pools"]))
  except (UsageError, OSError):  # main's restart_as_asked meets it again and says why
    return


def launch(name: str) -> None:
  """Runs the script `funcgrad.experiments.<name>` as `__main__` (the repository's shims): the
  signal handlers first, then the restart it asks for, then the script's imports."""
  install_early_signal_handlers()  # before the script's imports: Ctrl-C there is one line
  restart_early(name, sys.argv[1:])
  runpy.run_module(f"funcgrad.experiments.{name}", run_name="__main__", alter_sys=True)


if sys.argv[:1] == ["-m"]:  # `python -m funcgrad.experiments.X`: this runs before X's imports
  install_early_signal_handlers()
  die_with_parent()

SCRIPTS = {
    "env_check": "the versions of Python, JAX, CUDA/cuDNN and the peers",
    "tensors": "creating tensors: zeros, uninitialised, from data with a dtype and a device",
    "dtype_table": "the dtype table, torch beside JAX",
    "device_placement": "moving an array to the GPU and back",
    "gradients": "c = sum(x*y + z) and the first autograd example, with their closed forms",
    "compare": "compiled against eager, beside NumPy, PyTorch and TensorFlow (your function too)",
    "crossover": "the size where one engine starts to beat another",
    "optimize": "optax fits, loop by loop",
    "graph": "the static graph: jaxpr, StableHLO, HLO",
    "export_graph": "serialise a compiled graph with jax.export",
    "run_exported": "run a serialised graph",
    "compile_cache": "cold, persistent-cache and executable-cache first calls",
    "scaling": "one case over 1..N devices",
    "distributed": "a multi-process job",
    "benchmark": "the project's measured targets",
}

USAGE = ("usage: funcgrad <experiment> [flags]   (funcgrad <experiment> --help lists its flags)\n\n"
         + "\n".join(f"  {name:<17} {what}" for name, what in SCRIPTS.items()))


def main(argv: list[str] | None = None) -> None:
  """`funcgrad <experiment> [flags]`: runs `funcgrad.experiments.<experiment>` as a script."""
  install_early_signal_handlers()
  argv = sys.argv if argv is None else argv
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(USAGE)
    sys.exit(0 if len(argv) >= 2 else 2)
  name = argv[1]
  if name not in SCRIPTS:
    print(f"error: unknown experiment {name!r}. Valid: {', '.join(SCRIPTS)}.", file=sys.stderr)
    sys.exit(2)
  restart_early(name, argv[2:])  # restarts this very command line (sys.argv), if it must
  sys.argv = [f"funcgrad {name}", *argv[2:]]
  runpy.run_module(f"funcgrad.experiments.{name}", run_name="__main__", alter_sys=True)
