"""Running an experiment's CLI in this process: the same parse and `_cli.run` path, no start-up.

A subprocess costs ~2 s of imports on 2 cores; a bad flag is refused in milliseconds. For cases
that end before any work (flag errors, output paths, sizes), `run_in_process` imports the script
fresh, runs its `_cli.run`-wrapped main on `[module, *args]`, captures the exit status and output,
then removes the flags the script defined (absl flag names are global) and the module itself, and
puts back the JAX settings it changed.
Signals, hangs, FIFOs and environment variables keep real subprocesses (`tests.helpers`).
What needs a fresh process but not one per run (simulated CPU devices, set before JAX starts)
shares one: `run_in_fresh_process` runs several CLI runs, each in-process, inside one subprocess.
"""

import contextlib
import dataclasses
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from unittest import mock

from absl import app, flags

from funcgrad import compile_cache
from tests.helpers import ROOT

# JAX settings a script may change for its process (--dtype=float64, --compilation_cache_dir):
# put back after an in-process run, so that no later test in this worker runs under them.
JAX_SETTINGS = ("jax_enable_x64", "jax_enable_compilation_cache", *compile_cache._CACHE_OPTIONS)


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


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
  del file
  sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_in_process(module: str, *args: str) -> Outcome:
  """Runs `python -m module args...` in this process (allocator restarts disabled; warnings
  printed to the captured stderr, as a real run prints them, not raised as pytest's filter does)."""
  app.define_help_flags()  # absl defines these on its first run: keep them out of `before`
  before = set(flags.FLAGS)
  sigint = signal.getsignal(signal.SIGINT)
  if module.startswith("experiments."):  # the repository's shim runs this very script
    module = f"funcgrad.{module}"
  sys.modules.pop(module, None)
  stdout, stderr = io.StringIO(), io.StringIO()
  start = time.perf_counter()
  try:
    script = importlib.import_module(module)
    from funcgrad.experiments import _cli  # noqa: PLC0415 - after the script, as the script imports it

    with (compile_cache.settings_restored(JAX_SETTINGS),
          contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr),
          mock.patch.object(sys, "argv", [module, *args]),
          mock.patch("funcgrad.allocator.reexec_with", lambda name, *a, **k: name),
          mock.patch.object(_cli, "_on_interrupt", []), warnings.catch_warnings()):
      warnings.simplefilter("default")  # as in a real run: printed, not raised as in pytest
      warnings.showwarning = _print_warning
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


def run_in_fresh_process(runs: Sequence[tuple[str, Sequence[str]]],
                         timeout: float = 600) -> list[Outcome]:
  """Runs each `(module, args)` with `run_in_process`, in order, inside one fresh subprocess."""
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "outcomes.json")
    code = ("import dataclasses, json, sys; from tests.cli import run_in_process; "
            "runs = json.loads(sys.argv[1]); "
            "outcomes = [dataclasses.asdict(run_in_process(m, *a)) for m, a in runs]; "
            "open(sys.argv[2], 'w').write(json.dumps(outcomes))")
    process = subprocess.run([sys.executable, "-c", code, json.dumps(runs), path], cwd=ROOT,
                             capture_output=True, text=True, timeout=timeout, check=False)
    assert process.returncode == 0 and os.path.exists(path), process.stderr[-3000:]
    with open(path) as f:
      return [Outcome(**o) for o in json.load(f)]
