"""The experiments: thin absl scripts, one per tutorial section and per measurement.

From any folder, after `pip install -e .`: `funcgrad <name> [flags]` (or `python -m funcgrad
<name>`); from the repository root also `python -m experiments.<name>`. Each is
`funcgrad.experiments.<name>`, run as `__main__`; `funcgrad <name> --help` lists its flags.

Ctrl-C, SIGTERM and SIGHUP are handled from the first moment: the launchers (`funcgrad`, `python
-m funcgrad`, the repository's shims) and `python -m funcgrad.experiments.<name>` (through this
package's import) install a handler that prints one line and exits with 128+N before JAX is
even imported; `_cli` replaces it with one that writes what finished once a script's main runs.
"""

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
  """Sends SIGINT, SIGTERM and SIGHUP to `handler`, except those set to be ignored (nohup)."""
  for signum in SIGNAL_NAMES:
    if signal.getsignal(signum) is not signal.SIG_IGN:
      signal.signal(signum, handler)


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
  sys.argv = [f"funcgrad {name}", *argv[2:]]
  runpy.run_module(f"funcgrad.experiments.{name}", run_name="__main__", alter_sys=True)
