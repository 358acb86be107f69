"""One run path: cases (`case.Case`) checked, every engine checked, then timed in rounds.

`run_sweep` refuses what cannot run (`checks.check_cases`) before anything is allocated. For one
case (a backend, workload and shape), `run_case` makes the inputs from the seed (shared by every
engine), prepares every engine (its first call is timed there) and checks that first output
against the float64 reference; then it times the engines that passed in interleaved rounds (see
`timing.time_rounds`). A row that raises is recorded with its error, an engine a workload does
not implement is marked so, and the sweep goes on; `on_result` sees each row as it is final so
it can be streamed to disk.
"""

import dataclasses
import math
import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from funcgrad.bench import checks, intervals
from funcgrad.bench import interference as interference_lib
from funcgrad.bench import roofline as roofline_lib
from funcgrad.bench.case import Case, Timing, rows
from funcgrad.bench.engines import Engine, Prepared
from funcgrad.bench.timing import Rounds, Timer, per_call_stats, time_rounds
from funcgrad.bench.workloads.model import Reference, Verdict, max_rel_error
from funcgrad.errors import UsageError

# A row's status.
OK, WRONG, FAILED, NOT_IMPLEMENTED = "ok", "wrong", "failed", "not_implemented"


@dataclasses.dataclass(slots=True)
class Result:
  """One row: a workload at one shape on one engine and backend. Seconds; None: not applicable.

  `block_times_s` holds every timed block's per-call time (like torch.utils.benchmark's
  `Measurement.raw_times`); with interleaving, block i of every engine of a case ran in round i.
  """

  workload: str
  engine: str
  backend: str
  shape: list[int]
  dtype: str
  n_elements: int
  status: str = "pending"
  bound: str = "memory"
  device: str | None = None
  device_kind: str | None = None
  n_devices: int = 1
  sharding: str | None = None
  reference: str | None = None
  trace_s: float | None = None
  lower_s: float | None = None
  compile_s: float | None = None
  compiles: int | None = None
  executable_cache: str | None = None
  first_call_s: float | None = None
  dispatch_s: float | None = None
  median_s: float | None = None
  iqr_s: float | None = None
  min_s: float | None = None
  mean_s: float | None = None
  std_s: float | None = None
  blocks: int | None = None
  calls_per_block: int | None = None
  block_times_s: list[float] | None = None
  interleaved: bool | None = None
  steps_per_call: int | None = None
  bytes: int | None = None
  gbps: float | None = None
  bandwidth_gbps: float | None = None
  pct_of_bandwidth: float | None = None
  cache_resident: bool | None = None
  flops: int | None = None
  gflops: float | None = None
  peak_gflops: float | None = None
  pct_of_peak_flops: float | None = None
  max_rel_err: float | None = None
  tolerance: float | None = None
  ok: bool = False
  noisy: bool | None = None
  error: str | None = None
  peak_disturbed: bool | None = None  # above its peak even after re-measuring it
  rtol: float | None = None  # a judged row (a user's function): allclose-style tolerances
  atol: float | None = None
  timed_compiles: int | None = None  # compilations JAX asked for during warm-ups and timed calls
  compiles_per_call: float | None = None  # > 0: the steady state recompiles
  interference: dict[str, float | None] | None = None  # interference.SOURCES shares, its blocks
  stopped: str | None = None  # why its case's rounds ended (timing.Rounds.stopped)
  isolation: str | None = None  # how its engines were kept apart (timing.ISOLATIONS)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _error_text(e: BaseException) -> str:
  text = f"{type(e).__name__}: {e}".strip().splitlines()[0] if str(e).strip() else \
      type(e).__name__
  last = traceback.extract_tb(e.__traceback__)[-1:]
  if last:
    text += f" (at {os.path.basename(last[0].filename)}:{last[0].lineno})"
  return text


def bytes_moved(case: Case) -> int | None:
  """The bytes a case's rows read and write per call (None: the workload does not say)."""
  return case.workload.least_bytes(case.shape, case.dtype)


def new_result(case: Case, engine: Engine, roofline: roofline_lib.Roofline | None) -> Result:
  """A row before anything ran: what it is, the bytes and FLOPs it must move and compute."""
  workload, shape, dtype = case.workload, case.shape, case.dtype
  moved = bytes_moved(case)
  result = Result(workload=workload.name, engine=engine.name, backend=case.backend,
                  shape=list(shape),
                  dtype=np.dtype(dtype).name, n_elements=math.prod(shape), bytes=moved,
                  flops=workload.flops(shape) if workload.flops else None,
                  tolerance=workload.tolerance(dtype),
                  steps_per_call=workload.steps if workload.kind == "train" else None,
                  bound=workload.bound)
  if roofline is not None:
    result.bandwidth_gbps = roofline.copy_bandwidth_gbps
    result.peak_gflops = roofline.peak_gflops
    if moved is not None and roofline.llc_bytes is not None:
      result.cache_resident = moved <= roofline.llc_bytes
  return result


def prepare_engine(engine: Engine, case: Case, inputs: tuple[Any, ...],
                   result: Result) -> Prepared | None:
  """Prepares one engine (its first call, timed and split into stages); fills `result`; None
  where the engine does not implement the workload or failed."""
  missing = engine.missing(case.workload)
  if missing is not None:
    result.status, result.error = NOT_IMPLEMENTED, missing
    return None
  try:
    prepared = engine.prepare(case.workload, inputs, case.where().for_engine(engine))
  except UsageError:
    raise  # a bad request for the whole sweep, not a failed row
  except Exception as e:  # noqa: BLE001 - a failing row is data; the sweep goes on.
    result.status, result.error = FAILED, _error_text(e)
    return None
  result.device, result.device_kind = prepared.device, prepared.device_kind
  result.n_devices, result.sharding = prepared.n_devices, prepared.sharding
  stages = prepared.stages
  result.first_call_s, result.trace_s = stages.first_call_s, stages.trace_s
  result.lower_s, result.compile_s = stages.lower_s, stages.compile_s
  result.compiles, result.executable_cache = stages.compiles, stages.executable_cache
  return prepared


def check_first_output(prepared: Prepared, engine: Engine, reference: Reference,
                       result: Result) -> bool:
  """Checks an engine's first output against the reference; fills `result`; whether it passed
  (a row that fails is never timed)."""
  try:
    if reference.judge is not None:
      return _judged(reference.judge(prepared.first_output, engine.family), result)
    result.reference = reference.label
    result.max_rel_err = max_rel_error(prepared.first_output, reference.outputs,
                                       reference.scales)
  except UsageError:
    raise
  except Exception as e:  # noqa: BLE001 - outputs that cannot be compared fail this row only
    result.status, result.error = FAILED, _error_text(e)
    return False
  if not result.max_rel_err <= result.tolerance:
    result.status = WRONG
    result.error = (f"output differs from the {reference.label} reference: max relative error "
                    f"{result.max_rel_err:.3g} > {result.tolerance:g}; not timed")
    return False
  return True


def _judged(verdict: Verdict, result: Result) -> bool:
  """Fills `result` from a workload's own verdict on its first output; whether it passed."""
  result.reference, result.max_rel_err, result.tolerance = (verdict.label, verdict.error,
                                                            verdict.tolerance)
  result.rtol, result.atol = verdict.rtol, verdict.atol
  if verdict.passed:
    return True
  result.status, result.error = WRONG, f"{verdict.message}; not timed"
  return False


def _fill_timing(result: Result, per_call_s: list[float], calls: int, interleaved: bool,
                 dispatch_s: float | None) -> None:
  stats = per_call_stats(per_call_s, calls)
  result.median_s, result.iqr_s, result.min_s = stats.median_s, stats.iqr_s, stats.min_s
  result.mean_s, result.std_s, result.noisy = stats.mean_s, stats.std_s, stats.noisy
  result.blocks, result.calls_per_block = stats.blocks, calls
  result.block_times_s, result.interleaved = list(per_call_s), interleaved
  result.dispatch_s = dispatch_s
  if result.bytes is not None and result.median_s > 0:
    result.gbps = result.bytes / result.median_s / 1e9
    if result.bandwidth_gbps and not result.cache_resident:
      result.pct_of_bandwidth = 100 * result.gbps / result.bandwidth_gbps
  if result.flops is not None and result.median_s > 0:
    result.gflops = result.flops / result.median_s / 1e9
    if result.peak_gflops:
      result.pct_of_peak_flops = 100 * result.gflops / result.peak_gflops
  result.status, result.ok = OK, True


def _set_peaks(result: Result, roofline: roofline_lib.Roofline) -> None:
  result.bandwidth_gbps, result.peak_gflops = roofline.copy_bandwidth_gbps, roofline.peak_gflops
  if result.gbps is not None and result.pct_of_bandwidth is not None:
    result.pct_of_bandwidth = 100 * result.gbps / result.bandwidth_gbps
  if result.gflops is not None and result.peak_gflops:
    result.pct_of_peak_flops = 100 * result.gflops / result.peak_gflops


def recheck_peaks(results: Sequence[Result], roofline: roofline_lib.Roofline | None,
                  remeasure: Callable[[roofline_lib.Roofline], roofline_lib.Roofline]) -> None:
  """A row faster than a peak allows means the peak was measured while something else ran:
  measure it again (`remeasure`), compare every row of the case with the higher peaks, and mark
  a row still above them `peak_disturbed` (its share is then not a result)."""
  timed = [r for r in results if r.status == OK]
  if roofline is None or not any(_above(roofline, r) for r in timed):
    return
  better = remeasure(roofline)
  for result in timed:
    _set_peaks(result, better)
    result.peak_disturbed = _above(better, result)


def _above(roofline: roofline_lib.Roofline, result: Result) -> bool:
  """Whether the share a row is shown with (of the matmul peak if compute-bound, else of the
  copy bandwidth, not for a cache-resident row) is above 100%."""
  compute = result.bound == "compute"
  gbps = result.gbps if not compute and result.pct_of_bandwidth is not None else None
  return roofline_lib.exceeded(roofline, gbps, result.gflops if compute else None)


Progress = Callable[[str, Result], None]  # (what is happening: 'preparing' / 'timing', row)


def time_engines(timers: dict[str, Timer], timing: Timing) -> Rounds:
  """`time_rounds` under `timing`: the interference meter on every block, the isolation mode,
  and the precision target's stopping rule against `timing.baseline`."""
  stop = None
  if timing.precision is not None and timing.interleave and len(timers) > 1:
    baseline = timing.baseline or ("jit" if "jit" in timers else next(iter(timers)))
    stop = intervals.precision_rule(baseline, timing.precision, timing.estimator, timing.seed)
  return time_rounds(timers, timing.min_run_time, timing.seed, timing.interleave, stop=stop,
                     max_run_time=timing.max_run_time, meter=interference_lib.Meter(),
                     cool_down=timing.isolation == "cooldown")


def run_case(case: Case, roofline: roofline_lib.Roofline | None = None,
             progress: Progress = lambda what, row: None) -> list[Result]:
  """Every engine of one case: prepared, then checked against the reference, then timed in
  rounds.

  The reference runs after the first calls, so that a reference computed by JAX op by op (a
  random user function's) reuses the eager engine's compiles instead of compiling every
  primitive once more before the engines' cold first calls empty the caches.

  Returns:
    One row per engine, in `case.engines` order.
  """
  workload, timing = case.workload, case.timing
  inputs = workload.make_inputs(case.shape, np.dtype(case.dtype), timing.seed)
  results = [new_result(case, e, roofline) for e in case.engines]
  ready: dict[str, Prepared] = {}
  # Op-by-op engines (eager) last: each JAX engine's cold first call empties JAX's caches, which
  # would make an eager engine prepared before it compile every primitive again in its warm-up.
  for engine, result in sorted(zip(case.engines, results, strict=True),
                               key=lambda pair: pair[0].op_by_op):
    progress("preparing", result)
    first = prepare_engine(engine, case, inputs, result)
    if first is not None:
      ready[engine.name] = first
  try:
    reference = workload.expected(inputs)
  except Exception as e:  # noqa: BLE001 - the function itself fails: every row says why
    # Fresh rows: an engine's first call, never checked, is not a result.
    results = [new_result(case, engine, roofline) for engine in case.engines]
    for result in results:
      result.status, result.error = FAILED, f"the reference run failed: {_error_text(e)}"
    return results
  prepared: dict[str, tuple[Prepared, Result]] = {}  # in the case's order: the rounds' order
  for engine, result in zip(case.engines, results, strict=True):
    first = ready.get(engine.name)
    if first is not None and check_first_output(first, engine, reference, result):
      prepared[engine.name] = (first, result)
  if prepared:
    progress("timing", next(iter(prepared.values()))[1])
    timers = {name: Timer(p.call, p.sync) for name, (p, _) in prepared.items()}
    rounds = time_engines(timers, timing)
    for name, (p, result) in prepared.items():
      calls = rounds.calls_per_block[name]
      dispatch = timers[name].dispatch_time(calls) if p.measure_dispatch else None
      _fill_timing(result, rounds.per_call_s[name], calls, timing.interleave, dispatch)
      result.interference = (rounds.interference or {}).get(name)
      result.stopped, result.isolation = rounds.stopped, timing.isolation
      if p.counts is not None:
        result.timed_compiles, result.compiles_per_call = p.counts.compiles, p.counts.per_call()
  recheck_peaks(results, roofline,
                lambda old: roofline_lib.remeasured(jax.devices(case.backend)[0], old))
  return results


LONG_RUN_S = 120.0  # a sweep expected to take longer than this says so before it starts


def minimum_seconds(cases: Sequence[Case]) -> float:
  """A lower bound on a sweep's time: every row's timed blocks and re-warms (compiles extra)."""
  return sum(len(c.engines) * c.timing.min_run_time for c in cases) * 1.2


def long_run_note(cases: Sequence[Case]) -> str | None:
  """One line announcing a long sweep before it starts (None for a short one)."""
  seconds = minimum_seconds(cases)
  if seconds < LONG_RUN_S:
    return None
  each = cases[0].timing.min_run_time
  return (f"note: {rows(cases)} rows x --min_run_time={each:g} s: at least "
          f"{seconds / 60:.0f} minutes before compiles; every finished row is kept in "
          "--output_jsonl if given.")


def measure_rooflines(cases: Sequence[Case]) -> dict[str, roofline_lib.Roofline]:
  """Each backend's roofline, with only the peaks its cases' rows are compared with, each
  measured once per process (`roofline.measured_once`): the copy bandwidth where a working set
  does not fit in the host's last-level cache (always on a GPU), the matmul peak where a case is
  compute-bound. Measured before any engine runs, so no engine's work is in it."""
  out = {}
  for backend in backends_of(cases):
    device = jax.devices(backend)[0]
    # The roofline's own cache size (read, not measured; None on a GPU or where unknown).
    llc = roofline_lib.measured_once(device, copy=False, matmul=False).llc_bytes
    mine = [c for c in cases if c.backend == backend]
    moved = [m for m in map(bytes_moved, mine) if m is not None]
    copy = any(llc is None or m > llc for m in moved)
    matmul = any(c.workload.bound == "compute" and c.workload.flops for c in mine)
    out[backend] = roofline_lib.measured_once(device, copy=copy, matmul=matmul)
  return out


def backends_of(cases: Sequence[Case]) -> list[str]:
  return list(dict.fromkeys(c.backend for c in cases))


def run_sweep(cases: Sequence[Case],
              on_result: Callable[[Result, int, int], None] = lambda r, i, n: None,
              rooflines: dict[str, roofline_lib.Roofline] | None = None,
              progress: Progress = lambda what, row: None) -> list[Result]:
  """Checks every case (`checks.check_cases`), then runs them, calling `on_result(result, index,
  total)` for each row.

  Args:
    cases: what to run (e.g. `Sweep.cases()`).
    on_result: sees each row once it is final (to stream it to disk).
    rooflines: per backend, what rows are compared with (measured here when None).
    progress: told what is happening before each engine is prepared and each case is timed.

  Returns:
    The results in case order.

  Raises:
    UsageError: a case refused before anything ran (its mesh, its memory footprint).
  """
  checks.check_cases(cases)
  rooflines = measure_rooflines(cases) if rooflines is None else rooflines
  results: list[Result] = []
  total = rows(cases)
  for case in cases:
    for result in run_case(case, rooflines.get(case.backend), progress):
      results.append(result)
      on_result(result, len(results), total)
  return results

