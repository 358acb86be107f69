"""Strict JAX for every test, GPU tests skipped without a GPU, a `jit` parameter helper, how
many pytest-xdist workers `-n auto` starts, and the project's bytecode written once."""

import compileall
import os
import signal
import sys

import jax
import pytest

from funcgrad.devices import gpu_available
from tests.helpers import ROOT

jax.config.update("jax_numpy_rank_promotion", "raise")

# A shell's background job (`pytest &`, nohup) starts with SIGINT/SIGHUP ignored, and an ignored
# signal stays ignored in every child, which the scripts respect: the tests that send Ctrl-C or
# SIGHUP to a real CLI process would then wait on a process that never ends. The tests' children
# get the dispositions of a terminal's foreground job instead (a handler is reset by exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
  signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
  signal.signal(signal.SIGHUP, lambda signum, frame: None)


# The project's own source folders: bytecode for them is written once per session (see below).
PROJECT_SOURCES = ("funcgrad", "experiments", "examples", "tests")
GIB_PER_WORKER = 4  # a worker imports JAX, torch and TensorFlow and starts CLI subprocesses


def pytest_xdist_auto_num_workers(config):
  """`-n auto`: one worker per usable core, but no more than the memory holds."""
  del config
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
  memory_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
  return max(1, min(cores, int(memory_gib // GIB_PER_WORKER)))


def pytest_configure(config):
  """Where PYTHONDONTWRITEBYTECODE is set, the test processes write bytecode after all, into the
  project's git-ignored `__pycache__` folders. Installed packages have theirs from pip; without
  this, every pytest worker rewrote each test module's asserts again (pytest caches the result
  only where bytecode may be written: 2-3 s per worker on 2 cores), and each of the ~150 CLI
  subprocesses the suite starts (the variable still set for them: Python reads bytecode, it
  only does not write it) compiled funcgrad's modules from source (0.1 s of CPU each).
  `compileall` writes the project's bytecode once, before the workers start, and skips what is
  up to date; a read-only checkout writes nothing and fails nothing."""
  if not sys.dont_write_bytecode:
    return
  sys.dont_write_bytecode = False
  if not hasattr(config, "workerinput"):
    for name in PROJECT_SOURCES:
      compileall.compile_dir(ROOT / name, quiet=2)


def pytest_collection_modifyitems(config, items):
  del config
  if gpu_available():
    return
  skip = pytest.mark.skip(reason="no GPU backend in this JAX (pip install -e '.[cuda13]')")
  for item in items:
    if item.get_closest_marker("gpu") is not None:
      item.add_marker(skip)


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def maybe_jit(request):
  """Runs a test body twice: the function as is, and under `jax.jit`."""
  return (lambda f, **kw: jax.jit(f, **kw)) if request.param else (lambda f, **kw: f)


@pytest.fixture
def x64():
  """Enables jax_enable_x64 for one test, then restores it."""
  before = jax.config.read("jax_enable_x64")
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", before)
