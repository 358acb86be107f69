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
from funcgrad.bench import checks, report, speedups, user_torch
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
  inputs: str | None = None
  peer_function: str | None = None


DEFAULT_SIZES = "3x4,1000x1000"


@dataclasses.dataclass(frozen=True)
class Plan:
  """The checked cases of one sweep and what their rows are compared with."""

  cases: list[Case]
  baseline: str | None
  function: user.UserFunction | None = None  # --function: what its notes are made from

  def prints(self) -> bool:
    """Whether the --function prints (its output is then held back while it is timed)."""
    return self.function is not None and self.function.prints


def import_function(spec: str, flag: str = "--function") -> Callable[..., Any]:
  """Imports MODULE:NAME (the current directory importable), refusing what is not a function.

  Raises:
    UsageError: naming the flag, the function and what is wrong.
  """
  module_name, sep, attr = spec.partition(":")
  if not sep or not module_name or not attr:
    raise UsageError(f"Invalid {flag}={spec!r}: expected MODULE:NAME, e.g. mymodel:loss.")
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  try:
    module = importlib.import_module(module_name)
  except Exception as e:  # noqa: BLE001 - any failure to import is the user's module's
    raise UsageError(f"{flag}={spec}: cannot import module {module_name!r} "
                     f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).") from None
  fn = module
  for part in attr.split("."):
    if not hasattr(fn, part):
      raise UsageError(f"{flag}={spec}: module {module_name!r} has no attribute {attr!r}.")
    fn = getattr(fn, part)
  if not callable(fn):
    raise UsageError(f"{flag}={spec} is not callable (it is a {type(fn).__name__}).")
  return fn


def _function_args(request: Request, dtype: np.dtype) -> tuple[Any, ...]:
  """The --function's arguments: from --inputs (a function returning them) or --shapes."""
  if request.inputs and request.shapes:
    raise UsageError("--inputs and --shapes do not combine: --inputs returns every argument.")
  if request.inputs:
    make = import_function(request.inputs, "--inputs")
    try:
      args = make()
    except Exception as e:  # noqa: BLE001 - whatever it raised, the user's function failed
      raise UsageError(f"--inputs={request.inputs} raised {type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e).strip() else ''}") from None
    if not isinstance(args, tuple):
      raise UsageError(f"--inputs={request.inputs} returned a {type(args).__name__}, not a tuple "
                       "of the arguments for --function (return (x,) for one argument).")
    return args
  if not request.shapes:
    raise UsageError(f"--function={request.function} needs --shapes, one shape per argument "
                     "separated by ';' (e.g. --shapes='128x64;64'), or --inputs=MODULE:NAME.")
  shapes = parse_shapes(request.shapes, "--shapes", sep=";", scalar=True, unique=False)
  checks.check_shape_memory(shapes, dtype)
  return user.shaped_args(shapes, dtype)


def _peer_functions(spec: str | None) -> dict[str, Callable[..., Any]]:
  """--peer_function=FRAMEWORK:MODULE:NAME as compare's `peers`."""
  if not spec:
    return {}
  framework, sep, target = spec.partition(":")
  if not sep or framework not in user_torch.PEER_FRAMEWORKS:
    raise UsageError(f"Invalid --peer_function={spec!r}: expected FRAMEWORK:MODULE:NAME with "
                     f"FRAMEWORK one of {', '.join(user_torch.PEER_FRAMEWORKS)} "
                     "(e.g. torch:mymodel:torch_loss).")
  return {framework: import_function(target, "--peer_function")}


_Chosen = tuple[list[Any], list[Shape], np.dtype, "user.UserFunction | None"]


def _function_workload(request: Request, dtype: np.dtype) -> _Chosen:
  """The --function workload, its one size, the dtype it computes in, and the function."""
  if request.sizes is not None:
    raise UsageError("--sizes does not combine with --function: give one shape per argument "
                     "with --shapes, or the arguments with --inputs.")
  fn = import_function(request.function)
  args = _function_args(request, dtype)
  argnums = tuple(parse_ints(request.argnums, "--argnums"))
  uf = user.user_function(fn, args, argnums=argnums, value_and_grad=request.value_and_grad,
                          peers=_peer_functions(request.peer_function), name=request.function,
                          label=f"--function={request.function}")
  workload = user.user_workload(uf)
  return [workload], [workload.check_size(())], uf.dtype, uf


def _workloads(request: Request, dtype: np.dtype) -> _Chosen:
  if request.function:
    return _function_workload(request, dtype)
  if request.inputs or request.peer_function:
    raise UsageError(f"--{'inputs' if request.inputs else 'peer_function'} goes with --function.")
  names = parse_names(request.workloads, registry.WORKLOADS, "workload", flag="--workloads")
  chosen = [registry.get_workload(n) for n in names]
  if request.fit_steps != fits.FIT_STEPS:
    chosen = [fits.fit_workload(w.name.removeprefix("fit_"), request.fit_steps)
              if w.kind == "train" and w.name.startswith("fit_") else w for w in chosen]
  return chosen, parse_shapes(request.sizes or DEFAULT_SIZES, "--sizes", max_rank=2), dtype, None


def _engines(text: str, jax_only: bool, peer_names: Sequence[str] = ()
             ) -> list[engines_lib.Engine]:
  if text.strip() == "all":
    function_engines = [*engines_lib.JAX_ENGINES,
                        *(n for p in peer_names for n in user_torch.PEER_ENGINES[p])]
    pool = [engines_lib.ENGINES[n] for n in function_engines] if jax_only else \
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


def applicable(cases: Sequence[Case]) -> list[Case]:
  """Each case with only the engines that run its workload: what `--engines=all` means (an
  engine that does not apply is left out silently, not reported as n/a; `ALL_ENGINES_NOTE`)."""
  return [dataclasses.replace(
      c, engines=tuple(e for e in c.engines if e.missing(c.workload) is None)) for c in cases]


def _which_workloads() -> str:
  """'jit_packed: value_and_grad and value workloads; jit_scan: train workloads; ...': the
  engines that run only some kinds of workload."""
  kinds = set().union(*(e.kinds for e in engines_lib.ENGINES.values()))
  groups: dict[frozenset[str], list[str]] = {}
  for engine in engines_lib.ENGINES.values():
    if engine.kinds != kinds:
      groups.setdefault(frozenset(engine.kinds), []).append(engine.name)
  return "; ".join(f"{', '.join(names)}: {' and '.join(sorted(k))} workloads"
                   for k, names in groups.items())


ALL_ENGINES_NOTE = ("'all' = every installed engine that runs the workload, each workload "
                    f"with its own ({_which_workloads()}; a peer only where the workload has a "
                    "program in its framework; the JAX engines for --function)")


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
  chosen, sizes, dtype, function = _workloads(request, dtype)
  backends = checks.resolve_backends(request.backends, request.skip_unavailable)
  cache_dir = compile_cache.executable_dir(request.compilation_cache_dir) \
      if request.compilation_cache_dir else None
  sweep = Sweep(chosen, [], backends, sizes, dtype, request.timing, _mesh_shape(request),
                cache_dir)
  checks.check_mesh(sweep.cases())  # every size fits every workload, and every mesh
  checks.check_fits(sweep.cases())  # a size too large for even one engine: before the imports
  if request.plot:
    report.check_plot_available()
  peer_names = tuple(chosen[0].peers) if request.function else ()
  sweep = dataclasses.replace(sweep, engines=_engines(request.engines, bool(request.function),
                                                      peer_names))
  cases = sweep.cases()
  if request.engines.strip() == "all":
    cases = applicable(cases)
  checks.check_fits(cases)
  names = [e.name for e in sweep.engines]
  if request.baseline is not None:
    speedups.check_baseline(request.baseline, names)
  return Plan(cases, request.baseline or speedups.default_baseline(names), function)
