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
from funcgrad.bench import baselines, checks, interference, intervals, report, runner, speedups
from funcgrad.bench import case as case_lib
from funcgrad.bench import engines as engines_lib
from funcgrad.bench import timing as timing_lib
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
  changes: list[baselines.Change] | None = None  # against compared_to, when given
  compared_to: str | None = None
  noise_threshold: float = baselines.NOISE_THRESHOLD

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
    text = report.render_compare(self.results) + "\n\n" + report.render_speedups(self.speedups)
    if self.changes is not None:
      text += "\n\n" + baselines.render(self.changes, self.compared_to, self.noise_threshold)
    return text

  def to_json(self, path: str) -> None:
    """Writes the same JSON as `experiments.compare --output_json`."""
    extra = {} if self.changes is None else {"changes": [c.to_dict() for c in self.changes]}
    report.write_json(path, self.machine, self.results, self.speedups, **extra)

  def save(self, path: str) -> None:
    """Writes a baseline (rows with raw block times, the machine) for a later `compare_to`."""
    baselines.save(path, self.machine, self.results)


def _describe(fn: Callable[..., Any]) -> str:
  return f"{getattr(fn, '__module__', None) or '?'}:{getattr(fn, '__qualname__', repr(fn))}"


def compare_case(case: Case, baseline: str | None = None,
                 compilation_cache_dir: str | None = None, compare_to: str | None = None,
                 allow_other_machine: bool = False,
                 noise_threshold: float = baselines.NOISE_THRESHOLD) -> Comparison:
  """Runs one case through `runner.run_sweep` (its checks included) and derives its speedups
  (and, with `compare_to`, its changes against that saved baseline).

  Raises:
    UsageError: a baseline that is not among the case's engines, bad timing settings, a
      `compare_to` that cannot be read or comes from another machine, or a case the runner's
      checks refuse.
  """
  names = [e.name for e in case.engines]
  baseline = baseline or speedups.default_baseline(names)
  speedups.check_baseline(baseline, names, ("baseline", "engines"))
  case.timing.check("")
  baselines.check_threshold(noise_threshold, "")
  old = baselines.load(compare_to) if compare_to else None  # a bad file: before any timing
  if old is not None:
    baselines.check_machine(old, machine_document(), allow_other_machine)
  case = dataclasses.replace(case, timing=dataclasses.replace(case.timing, baseline=baseline))
  # A user's function has no byte count to compare with the copy bandwidth: no roofline then.
  rooflines = runner.measure_rooflines([case.backend]) if case.workload.bytes_moved else {}
  caching = contextlib.nullcontext()
  if compilation_cache_dir:  # for this comparison only: the caller's JAX settings come back
    caching = compile_cache.persistent_cache(compilation_cache_dir)
  with caching:
    results = runner.run_sweep([case], rooflines=rooflines)
  timing = case.timing
  machine = machine_document(rooflines, compilation_cache_dir=compilation_cache_dir,
                             isolation=timing.isolation,
                             interference=interference.run_totals(results, timing.isolation))
  found = speedups.speedups(results, baseline, timing.seed, timing.estimator, timing.precision)
  changes = None
  if old is not None:
    changes = baselines.changes(results, old, noise_threshold, timing.estimator, timing.seed)
  return Comparison(results, found, baseline, machine, changes, compare_to, noise_threshold)


def _check_min_run_time(min_run_time: float) -> None:
  if not (math.isfinite(min_run_time) and 0 < min_run_time <= 3600):
    raise UsageError(f"Invalid min_run_time={min_run_time!r}: expected seconds in (0, 3600].")


def compare(fn: Callable[..., Any], *example_args: Any, argnums: int | Sequence[int] = 0,
            engines: Sequence[str] = ("eager", "jit"), backend: str | None = None,
            min_run_time: float = 0.2, seed: int = 0, value_and_grad: bool = True,
            baseline: str | None = None, interleave: bool = True,
            compilation_cache_dir: str | None = None, precision: float | None = None,
            max_run_time: float | None = None, estimator: str = intervals.DEFAULT_ESTIMATOR,
            isolation: str = timing_lib.DEFAULT_ISOLATION, compare_to: str | None = None,
            allow_other_machine: bool = False,
            noise_threshold: float = baselines.NOISE_THRESHOLD) -> Comparison:
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
    precision: go on past `min_run_time` until every speedup's 95% interval has at most this
      relative half-width (e.g. 0.05), or until `max_run_time` seconds of rounds.
    max_run_time: the time cap with a precision target (default: 30 x min_run_time).
    estimator: `median` (of per-round ratios; the default, measured to agree better back to
      back) or `min` (ratio of the fastest blocks).
    isolation: `cooldown` (each block waits until the other engines' threads sleep; the
      default) or `none`.
    compare_to: a baseline written by `Comparison.save`: adds `changes` (new/old time per row,
      with a 95% interval and a verdict).
    allow_other_machine: compare with a baseline from another machine, JAX or allocator.
    noise_threshold: a change smaller than this is `no change`.

  Returns:
    A `Comparison`: rows, speedups, `table()`, `to_json(path)` and `save(path)`.

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
  if precision is not None and max_run_time is None:
    max_run_time = case_lib.DEFAULT_MAX_RUN_TIME_FACTOR * min_run_time
  timing = Timing(min_run_time, seed, interleave, precision, max_run_time, estimator, isolation)
  timing.check("")
  case = Case(backend, workload, shape, tuple(chosen), user.first_float_dtype(example_args),
              timing, placement(backend, cache_dir=cache_dir))
  return compare_case(case, baseline, compilation_cache_dir, compare_to, allow_other_machine,
                      noise_threshold)
