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
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax

from funcgrad import compile_cache
from funcgrad.bench import (
  baselines,
  interference,
  intervals,
  notebook_display,
  report,
  runner,
  speedups,
  user_torch,
)
from funcgrad.bench import case as case_lib
from funcgrad.bench import engines as engines_lib
from funcgrad.bench import timing as timing_lib
from funcgrad.bench.case import Case, Timing, placement
from funcgrad.bench.machine import machine_document
from funcgrad.bench.workloads import user
from funcgrad.devices import CUDA_INSTALL_HINT, platforms_present
from funcgrad.errors import UsageError


@dataclasses.dataclass
class Comparison:
  """The rows of one comparison and the speedups derived from them.

  Attributes:
    results: one `runner.Result` per engine.
    speedups: the baseline's speedup over every other engine.
    baseline: the engine the others are compared with.
    machine: where it ran (as in the runner's JSON).
    notes: lines for the reader beside the tables: what each row was checked against, a
      function that prints, a steady state that recompiles.
  """

  results: list[runner.Result]
  speedups: list[speedups.Speedup]
  baseline: str
  machine: dict[str, Any]
  changes: list[baselines.Change] | None = None  # against compared_to, when given
  compared_to: str | None = None
  noise_threshold: float = baselines.NOISE_THRESHOLD
  notes: list[str] = dataclasses.field(default_factory=list)

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
    return "\n".join([text.rstrip("\n"), *self.notes])

  def to_json(self, path: str) -> None:
    """Writes the same JSON as `experiments.compare --output_json`."""
    extra = {} if self.changes is None else {"changes": [c.to_dict() for c in self.changes]}
    report.write_json(path, self.machine, self.results, self.speedups, **extra)

  def save(self, path: str) -> None:
    """Writes a baseline (rows with raw block times, the machine) for a later `compare_to`."""
    baselines.save(path, self.machine, self.results)

  def _repr_html_(self) -> str:
    """The comparison as an HTML table: Jupyter shows this for a `Comparison` cell's value."""
    return notebook_display.comparison_html(self)

  def plot(self, ax: Any = None) -> Any:
    """Plots the baseline's speedup over each engine with its 95% interval (needs matplotlib)."""
    return notebook_display.plot_speedups(self, ax)


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
  if compilation_cache_dir:  # both tiers refused before any work if others could write them
    compile_cache.check_cache_dir(compilation_cache_dir, "compilation_cache_dir")
  case.timing.check("")
  baselines.check_threshold(noise_threshold, "")
  old = baselines.load(compare_to) if compare_to else None  # a bad file: before any timing
  if old is not None:
    baselines.check_machine(old, machine_document(), allow_other_machine)
  case = dataclasses.replace(case, timing=dataclasses.replace(case.timing, baseline=baseline))
  # A user's function has no byte count to compare with the copy bandwidth: no roofline then.
  rooflines = runner.measure_rooflines([case]) if case.workload.bytes_moved else {}
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
  if not (isinstance(min_run_time, int | float) and math.isfinite(min_run_time)
          and 0 < min_run_time <= 3600):
    raise UsageError(f"Invalid min_run_time={min_run_time!r}: expected seconds in (0, 3600].")


def _backend(backend: str | None) -> str:
  """`backend`, or JAX's default; refused, naming the parameter, when unknown or absent."""
  if backend is None:
    return jax.default_backend()
  present = platforms_present()
  if backend not in ("cpu", "gpu", "tpu"):
    raise UsageError(f"Invalid backend={backend!r}: expected 'cpu', 'gpu' or 'tpu' (present "
                     f"here: {', '.join(present)}).")
  if backend not in present:
    hint = f" {CUDA_INSTALL_HINT}" if backend == "gpu" else ""
    raise UsageError(f"backend={backend!r} is not present here (present: "
                     f"{', '.join(present)}).{hint}")
  return backend


def _engines(engines: str | Sequence[str], peers: dict[str, Any]) -> list[engines_lib.Engine]:
  """The engines asked for (a string is one name or a comma-separated list, as on the command
  line), and both torch rows for a torch peer."""
  names = [n.strip() for n in engines.split(",")] if isinstance(engines, str) else list(engines)
  offered = (*engines_lib.JAX_ENGINES, *(n for p in peers for n in user_torch.PEER_ENGINES[p]))
  for name in names:
    if name not in offered:
      more = "" if peers else " (the torch rows come with peers={'torch': torch_fn})"
      raise UsageError(f"Invalid engines={name!r}: it cannot run an arbitrary function; "
                       f"compare offers {', '.join(offered)}{more}.")
  for framework in peers:  # both of a peer's rows unless some were named
    if not set(user_torch.PEER_ENGINES[framework]) & set(names):
      names += user_torch.PEER_ENGINES[framework]
  return [engines_lib.get_engine(n) for n in dict.fromkeys(names)]


def compare(fn: Callable[..., Any], *example_args: Any, argnums: int | Sequence[int] = 0,
            static_argnums: int | Sequence[int] = (), static_argnames: str | Sequence[str] = (),
            kwargs: dict[str, Any] | None = None, has_aux: bool = False,
            check: str = "auto", rtol: float | None = None, atol: float | None = None,
            peers: dict[str, Callable[..., Any]] | None = None,
            engines: str | Sequence[str] = ("eager", "jit"), backend: str | None = None,
            min_run_time: float = 0.2, seed: int = 0, value_and_grad: bool = True,
            baseline: str | None = None, interleave: bool = True,
            compilation_cache_dir: str | None = None, precision: float | None = None,
            max_run_time: float | None = None, estimator: str = intervals.DEFAULT_ESTIMATOR,
            isolation: str = timing_lib.DEFAULT_ISOLATION, compare_to: str | None = None,
            allow_other_machine: bool = False,
            noise_threshold: float = baselines.NOISE_THRESHOLD) -> Comparison:
  """Times `fn` eagerly and under `jax.jit` (value and gradients by default), checked first.

  Args:
    fn: any JAX function (returning a scalar, or `(scalar, aux)` with `has_aux`, when gradients
      are asked); a jitted one (`jax.jit`, `equinox.filter_jit`) runs its inner function eagerly.
    *example_args: its arguments, any pytrees: arrays, Flax NNX and Equinox modules, Linen and
      Haiku params, optax states, PRNG keys (typed or legacy), Python scalars and callables
      (held static, as `equinox.filter_jit` holds them).
    argnums: which positional arguments to differentiate: only their inexact array leaves (an
      NNX module's `nnx.Param`s); integer, bool and key leaves pass through.
    static_argnums, static_argnames: arguments held static whole (`jax.jit`'s meaning).
    kwargs: keyword arguments for `fn` (a dict); traced, never differentiated.
    has_aux: `fn` returns `(value, aux)` (`jax.value_and_grad`'s meaning).
    check: what every row is checked against before it is timed: 'auto' (a random function:
      'eager', else 'float64'), 'float64', 'eager' or 'none' (see `bench.user_checks`).
    rtol, atol: override the tolerances of the dtype computed in.
    peers: your versions of `fn` in other frameworks: {'torch': torch_fn}, `torch_fn` taking the
      same arguments as torch tensors (static ones as they are): rows torch_eager, torch_compile.
    engines: one name or several of `eager`, `jit`, `jit_packed` (and the peers' rows): a
      sequence, or a string of comma-separated names (`"eager,jit"`, as `--engines` takes).
    backend: 'cpu' or 'gpu' (default: JAX's default backend).
    min_run_time: seconds of timed blocks per engine, in (0, 3600].
    seed: seeds the order of the interleaved rounds and the bootstrap.
    value_and_grad: False times `fn` itself (argnums is then not looked at).
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
    A `Comparison`: rows, speedups, notes, `table()`, `to_json(path)` and `save(path)`.

  Raises:
    UsageError: one line naming the parameter: a function that cannot be compared, bad
      `kwargs`, `argnums`, `static_argnums`, `check`, `rtol`/`atol`, `peers`, `engines`,
      `backend`, `min_run_time` or `baseline`.
  """
  _check_min_run_time(min_run_time)
  backend = _backend(backend)
  uf = user.user_function(fn, example_args, kwargs, argnums, static_argnums, static_argnames,
                          has_aux, value_and_grad, check, rtol, atol, peers)
  chosen = _engines(engines, dict(uf.peers))
  workload = user.user_workload(uf)
  cache_dir = compile_cache.executable_dir(compilation_cache_dir) if compilation_cache_dir \
      else None
  if precision is not None and max_run_time is None:
    max_run_time = case_lib.DEFAULT_MAX_RUN_TIME_FACTOR * min_run_time
  timing = Timing(min_run_time, seed, interleave, precision, max_run_time, estimator, isolation)
  timing.check("")
  case = Case(backend, workload, workload.check_size(()), tuple(chosen), uf.dtype,
              timing, placement(backend, cache_dir=cache_dir))
  held = HeldPrints()
  with contextlib.redirect_stdout(held) if uf.prints else contextlib.nullcontext():
    comparison = compare_case(case, baseline, compilation_cache_dir, compare_to,
                              allow_other_machine, noise_threshold)
  comparison.notes.extend(user_notes(uf, comparison.results, held.lines))
  return comparison


class HeldPrints(io.StringIO):
  """stdout while a printing function is checked and timed: kept, and its lines counted."""

  @property
  def lines(self) -> int:
    return self.getvalue().count("\n")


def user_notes(uf: user.UserFunction, results: Sequence[runner.Result],
               printed_lines: int = 0) -> list[str]:
  """What a reader of a user's comparison must know beside the tables, one line each."""
  notes = []
  if uf.prints:
    notes.append(f"note: {uf.caption} prints (print or jax.debug.print): {printed_lines} lines "
                 "were held back while it was checked and timed.")
  for r in results:
    if r.compiles_per_call:
      notes.append(f"note: {r.engine} recompiles in its steady state: {r.compiles_per_call:.3g} "
                   f"compilations per call over the later half of its calls ({r.timed_compiles} "
                   "in all after its first call); its times include them.")
  checked = dict.fromkeys(r.reference for r in results if r.reference)  # in the rows' order
  for label in checked:
    row = next(r for r in results if r.reference == label)
    tol = f" with rtol={row.rtol:g}, atol={row.atol:g}" if row.rtol is not None else ""
    engines = ", ".join(r.engine for r in results if r.reference == label)
    notes.append(f"checked: {engines} against {label}{tol}.")
  return notes
