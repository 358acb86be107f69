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
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from funcgrad import compile_cache
from funcgrad.bench import checks, report, runner, speedups
from funcgrad.bench import engines as engines_lib
from funcgrad.bench.case import Case, Timing, placement
from funcgrad.bench.machine import machine_document
from funcgrad.bench.workloads import user
from funcgrad.errors import UsageError


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


def _describe(fn: Callable[..., Any]) -> str:
  return f"{getattr(fn, '__module__', None) or '?'}:{getattr(fn, '__qualname__', repr(fn))}"


def compare_case(case: Case, baseline: str | None = None,
                 compilation_cache_dir: str | None = None) -> Comparison:
  """Runs one case through `runner.run_sweep` (its checks included) and derives its speedups.

  Raises:
    UsageError: a baseline that is not among the case's engines, or a case the runner's checks
      refuse.
  """
  names = [e.name for e in case.engines]
  baseline = baseline or speedups.default_baseline(names)
  speedups.check_baseline(baseline, names, ("baseline", "engines"))
  # A user's function has no byte count to compare with the copy bandwidth: no roofline then.
  rooflines = runner.measure_rooflines([case.backend]) if case.workload.bytes_moved else {}
  caching = contextlib.nullcontext()
  if compilation_cache_dir:  # for this comparison only: the caller's JAX settings come back
    caching = compile_cache.persistent_cache(compilation_cache_dir)
  with caching:
    results = runner.run_sweep([case], rooflines=rooflines)
  machine = machine_document(rooflines, compilation_cache_dir=compilation_cache_dir)
  return Comparison(results, speedups.speedups(results, baseline, case.timing.seed), baseline,
                    machine)


def _check_min_run_time(min_run_time: float) -> None:
  if not (math.isfinite(min_run_time) and 0 < min_run_time <= 3600):
    raise UsageError(f"Invalid min_run_time={min_run_time!r}: expected seconds in (0, 3600].")


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
    min_run_time: seconds of timed blocks per engine, in (0, 3600].
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
    UsageError: for a function that cannot be compared (see `workloads.user.check_function`), an
      unknown engine, an engine that cannot run an arbitrary function, a bad `min_run_time` or
      `baseline`, or arguments that would not fit in memory.
  """
  argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
  name = _describe(fn)
  chosen = []
  for engine in dict.fromkeys(engines):
    chosen.append(engines_lib.get_engine(engine))  # an unknown name: the list of valid ones
    if engine not in engines_lib.JAX_ENGINES:
      raise UsageError(f"Engine {engine!r} cannot run an arbitrary function; compare offers "
                       f"{', '.join(engines_lib.JAX_ENGINES)}.")
  _check_min_run_time(min_run_time)
  user.check_function(fn, example_args, argnums, value_and_grad, name)
  workload = user.example_workload(fn, name, example_args, argnums, value_and_grad)
  leaves = jax.tree.leaves(example_args)
  shape = tuple(np.shape(leaves[0])) if leaves else ()
  (backend,) = checks.resolve_backends([backend] if backend else [jax.default_backend()], False)
  cache_dir = compile_cache.executable_dir(compilation_cache_dir) if compilation_cache_dir \
      else None
  case = Case(backend, workload, shape, tuple(chosen), user.first_float_dtype(example_args),
              Timing(min_run_time, seed, interleave), placement(backend, cache_dir=cache_dir))
  return compare_case(case, baseline, compilation_cache_dir)
