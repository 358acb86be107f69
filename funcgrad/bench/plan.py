"""From what a user asked for on `experiments.compare`'s command line to checked cases.

`plan(request)` turns the flags' values (a `Request`; the script reads the flags, the library
never does) into the cases of one sweep and the baseline, refusing every bad value with one line
naming its flag before anything is measured. `runner.run_sweep` then runs them.
"""

import dataclasses
import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from funcgrad import compile_cache, peers
from funcgrad.bench import checks, report, speedups
from funcgrad.bench import engines as engines_lib
from funcgrad.bench import workloads as registry
from funcgrad.bench.case import Case, Sweep, Timing
from funcgrad.bench.workloads import fits, user
from funcgrad.dtypes import canonical_dtype, needs_x64, resolve_dtype
from funcgrad.errors import UsageError
from funcgrad.shapes import Shape, parse_ints, parse_names, parse_shape, parse_shapes


@dataclasses.dataclass(frozen=True)
class Request:
  """The values of `experiments.compare`'s flags (as typed, before any check)."""

  workloads: str = "muladd_sum,abs_loss"
  engines: str = "all"
  backends: Sequence[str] = ()
  skip_unavailable: bool = False
  sizes: str | None = None  # None: not given (the default applies)
  dtype: str = "float32"
  timing: Timing = Timing()
  baseline: str | None = None
  fit_steps: int = fits.FIT_STEPS
  devices: int | None = None
  mesh: str | None = None
  compilation_cache_dir: str | None = None
  function: str | None = None
  shapes: str | None = None
  argnums: str = "0"
  value_and_grad: bool = True
  plot: bool = False


DEFAULT_SIZES = "3x4,1000x1000"


@dataclasses.dataclass(frozen=True)
class Plan:
  """The checked cases of one sweep and what their rows are compared with."""

  cases: list[Case]
  baseline: str | None


def import_function(spec: str) -> Callable[..., Any]:
  """Imports MODULE:NAME (the current directory importable), refusing what is not a function.

  Raises:
    UsageError: naming the function and what is wrong.
  """
  module_name, sep, attr = spec.partition(":")
  if not sep or not module_name or not attr:
    raise UsageError(f"Invalid --function={spec!r}: expected MODULE:NAME, e.g. mymodel:loss.")
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  try:
    module = importlib.import_module(module_name)
  except Exception as e:  # noqa: BLE001 - any failure to import is the user's module's
    raise UsageError(f"--function={spec}: cannot import module {module_name!r} "
                     f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).") from None
  fn = module
  for part in attr.split("."):
    if not hasattr(fn, part):
      raise UsageError(f"--function={spec}: module {module_name!r} has no attribute {attr!r}.")
    fn = getattr(fn, part)
  if not callable(fn):
    raise UsageError(f"--function={spec} is not callable (it is a {type(fn).__name__}).")
  return fn


def _function_workload(request: Request, dtype: np.dtype) -> tuple[list[Any], list[Shape]]:
  """The --function workload and its one size (the first argument's shape)."""
  if request.sizes is not None:
    raise UsageError("--sizes does not combine with --function: give one shape per argument "
                     "with --shapes.")
  if not request.shapes:
    raise UsageError(f"--function={request.function} needs --shapes, one shape per argument "
                     "separated by ';' (e.g. --shapes='128x64;64').")
  shapes = parse_shapes(request.shapes, "--shapes", sep=";", scalar=True, unique=False)
  argnums = tuple(parse_ints(request.argnums, "--argnums"))
  fn = import_function(request.function)
  checks.check_shape_memory(shapes, dtype)
  name = request.function
  workload = user.shaped_workload(fn, name, shapes, argnums, request.value_and_grad)
  examples = workload.make_inputs(shapes[0], dtype, 0)
  user.check_function(fn, examples, argnums, request.value_and_grad, f"--function={name}")
  return [workload], [shapes[0]]


def _workloads(request: Request, dtype: np.dtype) -> tuple[list[Any], list[Shape]]:
  if request.function:
    return _function_workload(request, dtype)
  names = parse_names(request.workloads, registry.WORKLOADS, "workload", flag="--workloads")
  chosen = [registry.get_workload(n) for n in names]
  if request.fit_steps != fits.FIT_STEPS:
    chosen = [fits.fit_workload(w.name.removeprefix("fit_"), request.fit_steps)
              if w.kind == "train" and w.name.startswith("fit_") else w for w in chosen]
  return chosen, parse_shapes(request.sizes or DEFAULT_SIZES, "--sizes", max_rank=2)


def _engines(text: str, jax_only: bool) -> list[engines_lib.Engine]:
  if text.strip() == "all":
    pool = [engines_lib.ENGINES[n] for n in engines_lib.JAX_ENGINES] if jax_only else \
        list(engines_lib.ENGINES.values())
    missing = [e.name for e in pool if not e.available()]
    if missing:
      print(f"note: skipping {', '.join(missing)}: {peers.PEERS_HINT}", file=sys.stderr)
    return [e for e in pool if e.available()]
  names = parse_names(text, engines_lib.ENGINES, "engine", flag="--engines")
  chosen = [engines_lib.get_engine(n) for n in names]
  for engine in chosen:
    if not engine.available():
      raise UsageError(f"Engine {engine.name!r} in --engines needs {engine.requires}, which is "
                       f"not installed: {peers.PEERS_HINT}.")
  return chosen


def _mesh_shape(request: Request) -> tuple[int, ...] | None:
  if request.mesh is None:
    return None if request.devices is None else (request.devices,)
  shape = parse_shape(request.mesh, "--mesh", max_rank=2)
  if request.devices is not None and request.devices != math.prod(shape):
    raise UsageError(f"--devices={request.devices} disagrees with --mesh={request.mesh} "
                     f"({math.prod(shape)} devices).")
  return shape


def _dtype(text: str) -> np.dtype:
  dtype = canonical_dtype(text)
  if dtype.kind != "f" and dtype.name != "bfloat16":
    raise UsageError(f"--dtype={text!r} is not a float dtype; gradients need one "
                     "(float32, bfloat16, float16, float64).")
  if needs_x64(dtype):
    jax.config.update("jax_enable_x64", True)
  return resolve_dtype(dtype)


def plan(request: Request) -> Plan:
  """The sweep `request` asks for, every value checked (cheapest first; the engines last, since
  finding out which peers are installed imports them).

  Raises:
    UsageError: the first bad value, naming its flag.
  """
  dtype = _dtype(request.dtype)
  chosen, sizes = _workloads(request, dtype)
  backends = checks.resolve_backends(request.backends, request.skip_unavailable)
  cache_dir = compile_cache.executable_dir(request.compilation_cache_dir) \
      if request.compilation_cache_dir else None
  sweep = Sweep(chosen, [], backends, sizes, dtype, request.timing, _mesh_shape(request),
                cache_dir)
  checks.check_mesh(sweep.cases())  # every size fits every workload, and every mesh
  if request.plot:
    report.check_plot_available()
  sweep = dataclasses.replace(sweep, engines=_engines(request.engines, bool(request.function)))
  cases = sweep.cases()
  checks.check_fits(cases)
  names = [e.name for e in sweep.engines]
  if request.baseline is not None:
    speedups.check_baseline(request.baseline, names)
  return Plan(cases, request.baseline or speedups.default_baseline(names))
