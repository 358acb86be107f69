"""Running an experiment's CLI in this process: the same parse and `_cli.run` path, no start-up.

A subprocess costs ~2 s of imports on 2 cores; a bad flag is refused in milliseconds. For cases
that end before any work (flag errors, output paths, sizes), `run_in_process` imports the script
fresh, runs its `_cli.run`-wrapped main on `[module, *args]`, captures the exit status and output,
then removes the flags the script defined (absl flag names are global) and the module itself.
Signals, hangs, FIFOs and environment variables keep real subprocesses (`tests.helpers`).
"""

import contextlib
import dataclasses
import importlib
import io
import signal
import sys
import time
from unittest import mock

from absl import app, flags


@dataclasses.dataclass
class Outcome:
  """What a CLI run left: exit status, captured output, wall time."""

  returncode: int
  stdout: str
  stderr: str
  seconds: float


def _code(exit_: SystemExit) -> int:
  if exit_.code is None:
    return 0
  return exit_.code if isinstance(exit_.code, int) else 1


def run_in_process(module: str, *args: str) -> Outcome:
  """Runs `python -m module args...` in this process (allocator restarts disabled)."""
  app.define_help_flags()  # absl defines these on its first run: keep them out of `before`
  before = set(flags.FLAGS)
  sigint = signal.getsignal(signal.SIGINT)
  sys.modules.pop(module, None)
  stdout, stderr = io.StringIO(), io.StringIO()
  start = time.perf_counter()
  try:
    script = importlib.import_module(module)
    from experiments import _cli  # noqa: PLC0415 - after the script, as the script imports it

    with (contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr),
          mock.patch.object(sys, "argv", [module, *args]),
          mock.patch("funcgrad.allocator.reexec_with", lambda name, *a, **k: name),
          mock.patch.object(_cli, "_on_interrupt", [])):
      try:
        _cli.run(script.main)
        code = 0
      except SystemExit as e:
        code = _code(e)
  finally:
    for name in set(flags.FLAGS) - before:
      delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
    sys.modules.pop(module, None)
    signal.signal(signal.SIGINT, sigint)
  return Outcome(code, stdout.getvalue(), stderr.getvalue(), time.perf_counter() - start)
