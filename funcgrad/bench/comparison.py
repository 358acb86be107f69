"""`funcgrad.compare`: time eager against jit on your own function, as the runner would.

  >>> import jax.numpy as jnp, funcgrad
  >>> def loss(w, x):
  ...   return jnp.sum(jnp.tanh(x @ w) ** 2)
  >>> comparison = funcgrad.compare(loss, jnp.ones((64, 8)), jnp.ones((32, 64)),
  ...                               min_run_time=0.01)
  >>> [r.status for r in comparison.results]
  ['ok', 'ok']
  >>> ratio, low, high = comparison.speedup("eager")
"""

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from funcgrad import compile_cache
from funcgrad.bench import engines as engines_lib
from funcgrad.bench import notebook_display, report, runner, speedups
from funcgrad.bench.machine import machine_info
from funcgrad.bench.workloads import Workload, user_workload
from funcgrad.errors import UsageError
from funcgrad.shapes import format_shape


@dataclasses.dataclass
class Comparison:
  """The rows of one comparison and the speedups derived from them.

  Attributes:
    results: one `runner.Result` per engine.
    speedups: the baseline's speedup over every other engine.
    baseline: the engine the others are compared with.
    machine: where it ran (as in the runner's JSON).
  """

  results: list[runner.Result]
  speedups: list[speedups.Speedup]
  baseline: str
  machine: dict[str, Any]

  def speedup(self, engine: str) -> tuple[float, float, float]:
    """(ratio, ci_low, ci_high) of the baseline over `engine`: > 1 means the baseline is faster.

    Raises:
      UsageError: when `engine` was not timed (not compared, or its row failed).
    """
    for s in self.speedups:
      if s.engine == engine:
        return s.ratio, s.ci_low, s.ci_high
    timed = ", ".join(s.engine for s in self.speedups) or "none"
    raise UsageError(f"No speedup of {self.baseline} over {engine!r} (timed against it: {timed}).")

  def table(self) -> str:
    """The tables `experiments.compare` prints."""
    return report.render_compare(self.results) + "\n\n" + report.render_speedups(self.speedups)

  def to_json(self, path: str) -> None:
    """Writes the same JSON as `experiments.compare --output_json`."""
    report.write_json(path, self.machine, self.results, self.speedups)

  def _repr_html_(self) -> str:
    """The comparison as an HTML table: Jupyter shows this for a `Comparison` cell's value."""
    return notebook_display.comparison_html(self)

  def plot(self, ax: Any = None) -> Any:
    """Plots the baseline's speedup over each engine with its 95% interval (needs matplotlib)."""
    return notebook_display.plot_speedups(self, ax)


def _describe(fn: Callable[..., Any]) -> str:
  return f"{getattr(fn, '__module__', None) or '?'}:{getattr(fn, '__qualname__', repr(fn))}"


def check_function(fn: Callable[..., Any], args: Sequence[Any], argnums: tuple[int, ...],
                   value_and_grad: bool, name: str) -> None:
  """Refuses, with one line naming the function, what cannot be compared.

  Raises:
    UsageError: `fn` is not callable, fails to trace, has integer inputs at `argnums`, or returns
      a non-scalar when gradients are asked for.
  """
  if not callable(fn):
    raise UsageError(f"{name} is not callable (it is a {type(fn).__name__}).")
  for i in argnums:
    if not -len(args) <= i < len(args):
      raise UsageError(f"argnums {i} is out of range for {name}, which is given {len(args)} "
                       "arguments.")
    for leaf in jax.tree.leaves(args[i]):
      if not np.issubdtype(np.asarray(leaf).dtype, np.inexact) and \
          np.asarray(leaf).dtype.name != "bfloat16":
        raise UsageError(f"Argument {i} of {name} has dtype {np.asarray(leaf).dtype}: gradients "
                         "need floating-point inputs at argnums.")
  try:
    out = jax.eval_shape(fn, *args)
  except Exception as e:  # noqa: BLE001 - whatever tracing raised, the user's function failed
    raise UsageError(f"{name} fails to trace on inputs of shapes "
                     f"{[format_shape(np.shape(a)) for a in args]}: "
                     f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
  if value_and_grad and not (hasattr(out, "shape") and out.shape == ()):
    raise UsageError(f"{name} returns {jax.tree.map(lambda a: a.shape, out)}, not a scalar: "
                     "gradients need a scalar output (or pass value_and_grad=False).")


def compare_workload(workload: Workload, shape: tuple[int, ...], engines: Sequence[str],
                     backend: str | None, min_run_time: float, seed: int, dtype: Any,
                     baseline: str | None, interleave: bool = True,
                     compilation_cache_dir: str | None = None) -> Comparison:
  """Runs one case of `workload` through the runner and derives its speedups."""
  chosen = [engines_lib.get_engine(e) for e in dict.fromkeys(engines)]
  names = [e.name for e in chosen]
  baseline = baseline or speedups.default_baseline(names)
  speedups.check_baseline(baseline, names)
  (backend,) = runner.resolve_backends([backend] if backend else [jax.default_backend()], False)
  # A user's function has no byte count to compare with the copy bandwidth: no roofline then.
  rooflines = runner.measure_rooflines([backend]) if workload.bytes_moved else {}
  cache_dir, caching = None, contextlib.nullcontext()
  if compilation_cache_dir:  # for this comparison only: the caller's JAX settings come back
    caching = compile_cache.persistent_cache(compilation_cache_dir)
    cache_dir = compile_cache.executable_dir(compilation_cache_dir)
  with caching:
    results = runner.run_case(backend, workload, shape, chosen, np.dtype(dtype), min_run_time,
                              seed, rooflines.get(backend), interleave=interleave,
                              cache_dir=cache_dir)
  machine = {**machine_info(), "rooflines": {b: r.to_dict() for b, r in rooflines.items()}}
  return Comparison(results, speedups.speedups(results, baseline, seed), baseline, machine)


def compare(fn: Callable[..., Any], *example_args: Any, argnums: int | Sequence[int] = 0,
            engines: Sequence[str] = ("eager", "jit"), backend: str | None = None,
            min_run_time: float = 0.2, seed: int = 0, value_and_grad: bool = True,
            baseline: str | None = None, interleave: bool = True,
            compilation_cache_dir: str | None = None) -> Comparison:
  """Times `fn` eagerly and under `jax.jit` (value and gradients by default), checked first.

  Args:
    fn: any JAX-traceable function of array pytrees (returning a scalar when gradients are asked).
    *example_args: the arguments to time it on (every engine gets the same numbers).
    argnums: which arguments to differentiate.
    engines: any of `eager`, `jit`, `jit_packed`.
    backend: 'cpu' or 'gpu' (default: JAX's default backend).
    min_run_time: seconds of timed blocks per engine.
    seed: seeds the order of the interleaved rounds and the bootstrap.
    value_and_grad: False times `fn` itself.
    baseline: the engine the others are compared with (default `jit`).
    interleave: time the engines in interleaved rounds (False: one after the other).
    compilation_cache_dir: cache compiled programs here (JAX's persistent cache, and the jit
      engines' executables under `executables/`); a later process loads them. Loading one
      trusts whoever can write the directory.

  Returns:
    A `Comparison`: rows, speedups, `table()` and `to_json(path)`.

  Raises:
    UsageError: for a function that cannot be compared (see `check_function`), an unknown engine
      or an engine that cannot run an arbitrary function.
  """
  argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
  name = _describe(fn)
  for engine in engines:
    if engine not in engines_lib.JAX_ENGINES:
      engines_lib.get_engine(engine)  # an unknown name: the list of valid ones
      raise UsageError(f"Engine {engine!r} cannot run an arbitrary function; compare offers "
                       f"{', '.join(engines_lib.JAX_ENGINES)}.")
  check_function(fn, example_args, argnums, value_and_grad, name)
  host_args = tuple(jax.tree.map(np.asarray, a) for a in example_args)
  workload = user_workload(fn, name, argnums, value_and_grad,
                           make_inputs=lambda shape, dtype, seed: host_args)
  dtype = next((np.asarray(leaf).dtype for leaf in jax.tree.leaves(host_args)
                if np.issubdtype(np.asarray(leaf).dtype, np.inexact)), np.dtype(np.float32))
  shape = np.shape(jax.tree.leaves(host_args)[0]) if jax.tree.leaves(host_args) else ()
  return compare_workload(workload, tuple(shape), engines, backend, min_run_time, seed, dtype,
                          baseline, interleave, compilation_cache_dir)
