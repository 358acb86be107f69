"""The headline measurements behind `experiments.benchmark`, each returning `Target`s.

Every value+grads row goes through the runner (checked against the float64 reference before it
is timed), the fits too (`funcgrad.bench.fitting`: checked against the float64 NumPy fit).
"""

import dataclasses
import functools
import tempfile
from collections.abc import Callable, Sequence

import jax
import numpy as np

from funcgrad import optimize
from funcgrad.bench import comparison, fitting, plan, runner, stability, workloads
from funcgrad.bench import engines as engines_lib
from funcgrad.bench.case import Sweep, Timing
from funcgrad.bench.first_call import first_call_in_fresh_process
from funcgrad.bench.intervals import DEFAULT_ESTIMATOR
from funcgrad.bench.targets import Target, ratio
from funcgrad.bench.timing import DEFAULT_ISOLATION, Timer, autorange
from funcgrad.bench.workloads.fits import fit_problem_workload
from funcgrad.bench.workloads.tutorial import ABS_LOSS, MULADD_SUM
from funcgrad.peers import import_peer, peer_available
from funcgrad.shapes import format_shape, parse_shapes

JIT_ENGINES = ("jit", "jit_packed")

# The goals, beside the targets that compare with them (at least: >=; at most: <=).
GOAL_PCT_OF_BANDWIDTH = 85  # at least, jit on the large input
GOAL_PEER_OVER_JIT = 1.0  # at least: the fastest peer no faster than jit
GOAL_JIT_OVER_NUMPY_SMALL = 1.5  # at most, per call at 3x4
GOAL_NUMPY_OVER_SCAN = 100  # at least, per Adam step
GOAL_NUMPY_OVER_JIT_STEP = 1.0  # at least, per Adam step
GOAL_FUSIONS_PER_STEP = 3  # at most, fused kernels per Adam step of the scan loop
GOAL_PCT_OF_PEAK_FLOPS = 50  # at least, jit on the large MLP
GOAL_EAGER_OVER_JIT_MODEL = 3.0  # at least, on the small model cases
GOAL_PCT_WARM_CACHE = 35  # at most, warm persistent cache / cold first call
GOAL_PCT_WARM_EXECUTABLE = 15  # at most, warm executable cache / cold first call
GOAL_PCT_HARNESS_TRUTH = 10  # at most, Timer against torch.utils.benchmark
GOAL_PCT_TIMER_OVERHEAD = 1.0  # at most, the timer's own cost per 3x4 jit call
LARGE_PEERS = ("numpy", "torch_eager", "torch_compile", "tf_xla")
SMALL_PEERS = ("torch_eager", "torch_compile", "tf_eager", "tf_function", "tf_xla")


def _engines(names) -> list[engines_lib.Engine]:
  return [engines_lib.ENGINES[n] for n in names if engines_lib.ENGINES[n].available()]


def one_case(workload: workloads.Workload, size: tuple[int, ...], engine_names,
             min_run_time: float, timing: Timing | None = None) -> list[runner.Result]:
  """One workload at one size on the CPU in float32, the named engines that are installed."""
  sweep = Sweep([workload], _engines(engine_names), ["cpu"], [size], np.dtype(np.float32),
                timing or Timing(min_run_time))
  return runner.run_sweep(sweep.cases())


def sweep(size: tuple[int, int], engine_names, min_run_time: float,
          timing: Timing | None = None) -> list[runner.Result]:
  """muladd_sum value+grads at one size on the CPU, the named engines that are installed."""
  return one_case(MULADD_SUM, size, engine_names, min_run_time, timing)


def _median(rows, engine):
  return next((r.median_s for r in rows if r.engine == engine and r.ok), None)


def _best_jit(rows):
  candidates = [r for r in rows if r.engine in JIT_ENGINES and r.ok]
  return min(candidates, key=lambda r: r.median_s, default=None)


def _fastest_peer(rows, peers):
  candidates = [r for r in rows if r.engine in peers and r.ok]
  return min(candidates, key=lambda r: r.median_s, default=None)


def _bandwidth_note(jit: runner.Result | None) -> str:
  if jit is None:
    return "jit row failed"
  moved = f"{jit.bytes / 1e6:.0f} MB in {jit.median_s * 1e3:.2f} ms"
  if jit.pct_of_bandwidth is None:  # the copy bandwidth is then not measured either
    return f"{jit.gbps:.1f} GB/s, {moved}: fits in the last-level cache, not compared"
  return f"{jit.gbps:.1f} GB/s of {jit.bandwidth_gbps:.1f} GB/s, {moved}"


def large_targets(rows: list[runner.Result], label: str) -> list[Target]:
  """Target 1: the jit engine near copy bandwidth and ahead of every peer on a large input."""
  jit = next((r for r in rows if r.engine == "jit" and r.ok), None)
  peer = _fastest_peer(rows, LARGE_PEERS)
  return [
      Target(f"jit % of copy bandwidth, {label}", jit and jit.pct_of_bandwidth,
             GOAL_PCT_OF_BANDWIDTH, "%", True, _bandwidth_note(jit), of_peak=True),
      Target(f"fastest peer / jit, {label}", ratio(peer and peer.median_s, jit and jit.median_s),
             GOAL_PEER_OVER_JIT, "x", True,
             f"fastest peer {peer.engine} {peer.median_s * 1e3:.2f} ms vs jit "
             f"{jit.median_s * 1e3:.2f} ms" if peer and jit else "no peer row"),
  ]


def small_targets(rows: list[runner.Result]) -> list[Target]:
  """Target 2: per call at 3x4, the best jit engine within 1.5x of NumPy, ahead of every peer."""
  jit, numpy = _best_jit(rows), _median(rows, "numpy")
  peer = _fastest_peer(rows, SMALL_PEERS)
  return [
      Target("best jit / numpy per call, 3x4", ratio(jit and jit.median_s, numpy),
             GOAL_JIT_OVER_NUMPY_SMALL, "x", False,
             f"{jit.engine} {jit.median_s * 1e6:.2f} us vs numpy {numpy * 1e6:.2f} us"
             if jit and numpy else "row failed"),
      Target("fastest peer / best jit per call, 3x4",
             ratio(peer and peer.median_s, jit and jit.median_s), GOAL_PEER_OVER_JIT, "x", True,
             f"fastest peer {peer.engine} {peer.median_s * 1e6:.2f} us vs {jit.engine} "
             f"{jit.median_s * 1e6:.2f} us" if peer and jit else "no peer row"),
  ]


ADAM_FIT = ("abs_loss", (2,))  # the tutorial's loss, two parameters
ADAM_LOOPS = ("scan", "jit_step", "numpy")


def adam_targets(steps: int, min_run_time: float) -> list[Target]:
  """Target 3: `steps` Adam steps on the tutorial's loss; scan and jit_step against NumPy (the
  fit engines through the runner, `fitting.run_fit`), and the fused kernels per step."""
  rows = fitting.run_fit(*ADAM_FIT, optimize.Fit("adam", 0.01, steps), ADAM_LOOPS,
                         Timing(min_run_time))
  per_step = {r.loop: r.per_step_s for r in rows if r.result.ok}

  def us(loop):
    return f"{per_step[loop] * 1e6:.3g} us" if loop in per_step else "failed"

  return [
      Target(f"numpy / scan per Adam step ({steps} steps)",
             ratio(per_step.get("numpy"), per_step.get("scan")), GOAL_NUMPY_OVER_SCAN, "x", True,
             f"numpy {us('numpy')} vs scan {us('scan')} per step"),
      Target(f"numpy / jit_step per Adam step ({steps} steps)",
             ratio(per_step.get("numpy"), per_step.get("jit_step")), GOAL_NUMPY_OVER_JIT_STEP, "x",
             True,
             f"numpy {us('numpy')} vs jit_step {us('jit_step')} per step"),
      *fusion_targets(steps),
  ]


def fusion_targets(steps: int) -> list[Target]:
  """Fused XLA kernels per step of the timed `scan` loop (the `jit_scan` engine), from its
  compiled HLO (and, for reference, of `scan_fused`, which ravels everything into one vector)."""
  workload = fit_problem_workload(ADAM_FIT[0], optimize.Fit("adam", 0.01, steps))
  inputs = workload.make_inputs(ADAM_FIT[1], np.dtype(np.float32), 0)
  counts = {loop: engines_lib.fusions_per_step(engines_lib.ENGINES[fitting.LOOPS[loop]],
                                               workload, inputs)
            for loop in ("scan", "scan_fused")}
  return [Target("fusions per Adam step (scan)", counts["scan"], GOAL_FUSIONS_PER_STEP, "", False,
                 f"{optimize.SCAN_UNROLL} steps per loop trip, count widened; "
                 f"scan_fused: {counts['scan_fused']:.3g}")]


MODEL_ENGINES = ("numpy", "eager", "jit", "torch_eager", "torch_compile", "tf_eager",
                 "tf_function", "tf_xla")
MODEL_PEERS = ("numpy", "torch_eager", "torch_compile", "tf_eager", "tf_function", "tf_xla")


def model_rows(workload_name: str, size: tuple[int, int], engine_names,
               min_run_time: float, timing: Timing | None = None) -> list[runner.Result]:
  """One model workload at one size on the CPU, the named engines that are installed."""
  return one_case(workloads.get_workload(workload_name), size, engine_names, min_run_time,
                  timing)


def model_targets(rows_by_case: dict[str, list[runner.Result]]) -> list[Target]:
  """Targets 7-8: jit at least 3x eager and not slower than the fastest peer on the small model
  cases; jit at half the matmul peak or more on the large MLP."""
  out = []
  for label, rows in rows_by_case.items():
    if label.startswith("peak "):
      jit = next((r for r in rows if r.engine == "jit" and r.ok), None)
      out.append(Target(f"jit % of matmul peak, {label.removeprefix('peak ')}",
                        jit and jit.pct_of_peak_flops, GOAL_PCT_OF_PEAK_FLOPS, "%",
                        True, f"{jit.gflops:.0f} GFLOP/s of {jit.peak_gflops:.0f} GFLOP/s "
                        f"({jit.median_s * 1e3:.1f} ms)" if jit else "jit row failed",
                        of_peak=True))
      continue
    jit, eager = _median(rows, "jit"), _median(rows, "eager")
    peer = _fastest_peer(rows, MODEL_PEERS)
    out += [
        Target(f"eager / jit, {label}", ratio(eager, jit), GOAL_EAGER_OVER_JIT_MODEL, "x", True,
               f"eager {eager * 1e3:.2f} ms vs jit {jit * 1e3:.2f} ms" if eager and jit
               else "row failed"),
        Target(f"fastest peer / jit, {label}", ratio(peer and peer.median_s, jit),
               GOAL_PEER_OVER_JIT, "x", True,
               f"fastest peer {peer.engine} {peer.median_s * 1e3:.2f} ms vs jit "
               f"{jit * 1e3:.2f} ms" if peer and jit else "no peer row"),
    ]
  return out


def cache_target(repeats: int = 5) -> list[Target]:
  """Target 4: first call with a warm persistent / executable cache over cold, fresh processes.

  Each of `repeats` rounds uses new cache directories: a cold first call (which fills the
  persistent cache), a warm one, a call that fills the executable cache, and one that loads it.
  The medians are compared.
  """
  cold, warm, loaded = [], [], []
  for _ in range(repeats):
    with tempfile.TemporaryDirectory(prefix="funcgrad-cache-") as cache_dir:
      cold.append(first_call_in_fresh_process(cache_dir)["first_call_s"])
      warm.append(first_call_in_fresh_process(cache_dir)["first_call_s"])
    with tempfile.TemporaryDirectory(prefix="funcgrad-cache-") as cache_dir:
      first_call_in_fresh_process(cache_dir, tier="executable")
      loaded.append(first_call_in_fresh_process(cache_dir, tier="executable")["first_call_s"])
  cold_s, warm_s, loaded_s = (float(np.median(t)) for t in (cold, warm, loaded))
  return [Target("warm-cache / cold first call, 3x4 (fresh process)", 100 * warm_s / cold_s,
                 GOAL_PCT_WARM_CACHE, "%", False,
                 f"median of {repeats}: warm {warm_s * 1e3:.1f} ms vs cold "
                 f"{cold_s * 1e3:.1f} ms"),
          Target("warm executable cache / cold first call, 3x4 (fresh process)",
                 100 * loaded_s / cold_s, GOAL_PCT_WARM_EXECUTABLE, "%", False,
                 f"median of {repeats}: loaded "
                 f"{loaded_s * 1e3:.1f} ms vs cold {cold_s * 1e3:.1f} ms")]


# experiments.compare's default sizes.
DEFAULT_COMPARE_SIZES = tuple(parse_shapes(plan.DEFAULT_SIZES, "--sizes", max_rank=2))


# `experiments.compare`'s default engines: those that run value-and-grad workloads (the others
# are left out, not shown as n/a rows).
COMPARE_ENGINES = tuple(n for n, e in engines_lib.ENGINES.items() if "value_and_grad" in e.kinds)


def default_compare_rows(min_run_time: float, timing: Timing | None = None,
                         sizes: Sequence[tuple[int, ...]] = DEFAULT_COMPARE_SIZES,
                         engine_names: Sequence[str] = COMPARE_ENGINES) -> list[runner.Result]:
  """The default `experiments.compare` sweep (muladd_sum and abs_loss at 3x4 and 1000x1000, or
  `sizes`; every installed engine, or those of `engine_names`), timed in interleaved rounds."""
  sweep = Sweep([MULADD_SUM, ABS_LOSS], _engines(engine_names), ["cpu"], list(sizes),
                np.dtype(np.float32), timing or Timing(min_run_time))
  return runner.run_sweep(sweep.cases())


def harness_truth_target(min_run_time: float, repeats: int = 5) -> list[Target]:
  """Target 6: the Timer's median and torch.utils.benchmark's on the same callable (jit
  muladd_sum 300x300, value+grads), alternated `repeats` times, agree within 10%."""
  torch_benchmark = import_peer("torch.utils.benchmark")
  inputs = MULADD_SUM.make_inputs((300, 300), np.float32, 0)
  fn = jax.jit(MULADD_SUM.jax_program())
  args = [jax.device_put(a) for a in inputs]

  def call():
    return jax.block_until_ready(fn(*args))

  call()
  ours, theirs = [], []
  for _ in range(repeats):
    ours.append(autorange(Timer(call), min_run_time).median_s)
    theirs.append(torch_benchmark.Timer("call()", globals={"call": call})
                  .blocked_autorange(min_run_time=min_run_time).median)
  mine, torch_s = float(np.median(ours)), float(np.median(theirs))
  return [Target("harness truth: Timer vs torch.utils.benchmark", 100 * abs(mine - torch_s) /
                 torch_s, GOAL_PCT_HARNESS_TRUTH, "%", False,
                 f"median of {repeats} alternated: Timer "
                 f"{mine * 1e6:.2f} us vs torch.utils.benchmark {torch_s * 1e6:.2f} us")]


def timer_overhead_target(rows: list[runner.Result]) -> list[Target]:
  """The timer's own cost per call against the 3x4 jit time."""
  harness = autorange(Timer(lambda: None, sync=lambda out: out), 0.2)
  jit = _best_jit(rows)
  overhead_pct = 100 * harness.median_s / jit.median_s if jit else None
  return [Target("timer overhead / 3x4 jit call", overhead_pct, GOAL_PCT_TIMER_OVERHEAD, "%", False,
                 f"harness {harness.median_s * 1e9:.0f} ns per call vs {jit.engine} "
                 f"{jit.median_s * 1e6:.2f} us" if jit else "no jit row")]


# ------------------------------------------------------------------------ the target groups


@dataclasses.dataclass(frozen=True)
class Settings:
  """What `experiments.benchmark`'s flags set (sizes already parsed and checked)."""

  large: tuple[int, int] = (4000, 4000)
  steps: int = 1000
  repeats: int = 5
  min_run_time: float = 0.3
  model_cases: tuple[tuple[str, tuple[int, ...], tuple[str, ...]], ...] = ()
  isolation: str = DEFAULT_ISOLATION  # every row's
  estimator: str = DEFAULT_ESTIMATOR
  precision: float = stability.ANSWER_PRECISION  # the answers group's back-to-back runs
  max_run_time: float | None = None  # ... capped at this per case (None: 10 x min_run_time)
  answer_sizes: tuple[tuple[int, ...], ...] = DEFAULT_COMPARE_SIZES  # ... of the compare sweep
  answer_engines: tuple[str, ...] = COMPARE_ENGINES  # ... and its engines (jit among them)

  def timing(self, precision: float | None = None) -> Timing:
    """Every row's timing; with `precision`, rounds go on to that target (or the cap)."""
    cap = self.max_run_time or 10 * self.min_run_time
    return Timing(self.min_run_time, estimator=self.estimator, isolation=self.isolation,
                  precision=precision, max_run_time=cap if precision else None)


LARGE_ENGINES = (*JIT_ENGINES, *LARGE_PEERS)
SMALL_ENGINES = ("numpy", *JIT_ENGINES, *SMALL_PEERS)


@dataclasses.dataclass
class Session:
  """One benchmark run: its settings, every row measured so far (the table behind the targets)
  and the rows of a second run (checked for their status, not shown)."""

  settings: Settings
  log: Callable[[str], None] = lambda message: None
  rows: list[runner.Result] = dataclasses.field(default_factory=list)
  again: list[runner.Result] = dataclasses.field(default_factory=list)
  sweeps: dict[str, list[runner.Result]] = dataclasses.field(default_factory=dict)

  def sweep(self, key: str) -> list[runner.Result]:
    """The muladd_sum sweep `key` ('large' or 'small'), run once and shared by the groups."""
    if key not in self.sweeps:
      size = self.settings.large if key == "large" else (3, 4)
      names = LARGE_ENGINES if key == "large" else SMALL_ENGINES
      self.log(f"muladd_sum {format_shape(size)}: {', '.join(names)}")
      self.sweeps[key] = sweep(size, names, self.settings.min_run_time, self.settings.timing())
      self.rows += self.sweeps[key]
    return self.sweeps[key]


@dataclasses.dataclass(frozen=True)
class Group:
  """A group of targets: the shared sweeps it needs (run first, in GROUPS order) and what it
  measures."""

  description: str
  measure: Callable[[Session], list[Target]]
  sweeps: tuple[str, ...] = ()


def _large(session: Session) -> list[Target]:
  return large_targets(session.sweep("large"), format_shape(session.settings.large))


def _small(session: Session) -> list[Target]:
  return small_targets(session.sweep("small"))


def _adam(session: Session) -> list[Target]:
  session.log(f"{session.settings.steps} Adam steps: scan, jit_step, numpy")
  return adam_targets(session.settings.steps, session.settings.min_run_time)


def _cache(session: Session) -> list[Target]:
  session.log("first call, cold and warm persistent cache, fresh processes")
  return cache_target(session.settings.repeats)


def _models(session: Session) -> list[Target]:
  by_case = {}
  for name, size, engine_names in session.settings.model_cases:
    label = f"{'peak ' if engine_names == ('jit',) else ''}{name} {format_shape(size)}"
    session.log(f"{label}: {', '.join(engine_names)}")
    by_case[label] = model_rows(name, size, engine_names, session.settings.min_run_time,
                                session.settings.timing())
    session.rows += by_case[label]
  return model_targets(by_case)


def _harness(session: Session) -> list[Target]:
  out = timer_overhead_target(session.rows)
  if peer_available("torch"):
    session.log("Timer vs torch.utils.benchmark on the same callable")
    out += harness_truth_target(session.settings.min_run_time, session.settings.repeats)
  return out


def _answers(session: Session) -> list[Target]:
  """Back-to-back agreement and coverage at the precision target, isolation, change detection,
  the time to a 5% answer, and the other engines' share of every row measured before."""
  settings = session.settings
  runs = max(2, settings.repeats)
  session.log(f"the default experiments.compare sweep at --precision={settings.precision:g}, "
              f"{runs} times back to back")
  timed = [default_compare_rows(settings.min_run_time, settings.timing(settings.precision),
                                settings.answer_sizes, settings.answer_engines)
           for _ in range(runs)]
  session.rows += timed[0]
  session.again += [r for run in timed[1:] for r in run]
  out = [stability.agreement_target(timed, "jit", settings.precision, settings.estimator),
         stability.coverage_target(timed, "jit", settings.precision, settings.estimator),
         stability.estimator_target(timed, "jit", settings.estimator)]
  size = next((s for n, s, _ in settings.model_cases if n == "attention"), (256, 256))
  session.log(f"attention {format_shape(size)}: jit beside numpy, then jit alone")
  beside = model_rows("attention", size, ("numpy", "jit"), settings.min_run_time,
                      settings.timing())
  alone = model_rows("attention", size, ("jit",), settings.min_run_time, settings.timing())
  session.rows += beside + alone
  out.append(stability.isolation_target(beside, alone, f"attention {format_shape(size)}"))
  compare = functools.partial(comparison.compare, isolation=settings.isolation,
                              estimator=settings.estimator)
  session.log(f"change detection: a saved baseline, {settings.repeats} runs against it, then "
              "twice the work")
  out += stability.change_detection_targets(compare, settings.repeats, settings.min_run_time)
  session.log("time to a 5% answer: funcgrad.compare on the README's tanh layer")
  # compare's own default (0.2 s), or less for a quick run
  out.append(stability.time_to_answer_target(compare, min_run_time=min(0.2, settings.min_run_time)))
  out.append(stability.other_engines_target(session.rows + session.again))
  return out


GROUPS: dict[str, Group] = {
    "large": Group("jit near copy bandwidth and ahead of the peers on a large input", _large,
                   ("large",)),
    "small": Group("per call at 3x4: jit against NumPy and the peers", _small, ("small",)),
    "adam": Group("Adam steps per second: scan and jit_step against NumPy; fusions", _adam),
    "cache": Group("first call with warm caches against cold, fresh processes", _cache),
    "models": Group("the MLP and attention: jit against eager and the peers; matmul peak",
                    _models),
    "harness": Group("timer overhead, Timer vs torch.utils.benchmark", _harness,
                     ("large", "small")),
    "answers": Group("answers that hold: back-to-back agreement and interval coverage at a "
                     "precision target, isolation, change detection, time to a 5% answer, "
                     "other engines' share of every row", _answers),
}


def measure(groups: Sequence[str], session: Session,
            add: Callable[[Target], None] = lambda target: None) -> list[Target]:
  """The targets of `groups`, after the shared sweeps they need (in GROUPS order).

  Args:
    add: called with each target as soon as its group is measured (a script keeps them, so
      that an interrupted run still writes what finished).
  """
  chosen = [g for g in GROUPS if g in groups]
  for key in ("large", "small"):
    if any(key in GROUPS[g].sweeps for g in chosen):
      session.sweep(key)
  out = []
  for name in chosen:
    found = GROUPS[name].measure(session)
    out += found
    for target in found:
      add(target)
  return out
