"""experiments.optimize's fits: the fit workload's engines, run, checked and timed by the runner.

Each loop style is an engine (`LOOPS`) over `workloads.fits.fit_problem_workload`: its first
call is the whole fit from the problem's initial parameters, checked against the float64
reference before it is timed; the runner then times calls of `steps` steps in interleaved
rounds. A row adds what a fit report says beyond the runner's `Result`: the final loss, the
distance to the known optimum, and the fused XLA kernels per step of the compiled program.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from funcgrad import optimize, problems
from funcgrad.bench import engines as engines_lib
from funcgrad.bench import runner
from funcgrad.bench.case import Case, Timing
from funcgrad.bench.workloads.fits import fit_problem_workload
from funcgrad.errors import UsageError
from funcgrad.shapes import Shape

# Loop style (the --loops value) -> the engine that runs it.
LOOPS = {"eager": "eager", "jit_step": "jit", "scan": "jit_scan", "scan_fused": "jit_scan_fused",
         "numpy": "numpy", "torch": "torch_eager"}


@dataclasses.dataclass(frozen=True)
class FitRow:
  """One loop style's fit: the runner's row, and what the fit reached. None: not applicable."""

  loop: str
  fit: optimize.Fit
  result: runner.Result
  final_loss: float | None = None
  distance_to_optimum: float | None = None
  reached_optimum: bool | None = None
  fusions_per_step: float | None = None

  @property
  def per_step_s(self) -> float | None:
    median = self.result.median_s
    return None if median is None else median / self.fit.steps

  def to_dict(self) -> dict[str, Any]:
    return {**self.result.to_dict(), "loop": self.loop, "optimizer": self.fit.optimizer,
            "learning_rate": self.fit.learning_rate, "steps": self.fit.steps,
            "per_step_s": self.per_step_s, "total_s": self.result.median_s,
            "final_loss": self.final_loss, "distance_to_optimum": self.distance_to_optimum,
            "reached_optimum": self.reached_optimum, "fusions_per_step": self.fusions_per_step}


def _recording(engine: engines_lib.Engine, first: dict[str, Any]) -> engines_lib.Engine:
  """`engine`, keeping a copy of its first (checked) output in `first[engine.name]`."""
  def prepare(workload, inputs, placement):
    prepared = engine.prepare(workload, inputs, placement)
    # A copy now: a peer's output may be a view of parameters that the timed calls go on moving.
    first[engine.name] = tuple(np.array(leaf, copy=True) for leaf in prepared.first_output)
    return prepared

  return dataclasses.replace(engine, prepare=prepare)


def run_fit(problem_name: str, shape: Shape, fit: optimize.Fit, loops: Sequence[str],
            timing: Timing | None = None,
            on_row: Callable[[FitRow], None] = lambda row: None,
            on_stage: Callable[[str, str], None] = lambda what, loop: None) -> list[FitRow]:
  """Every loop style of one fit, through `runner.run_sweep`, in `loops` order.

  Args:
    on_row: called with each loop's row once the fit's case is timed.
    on_stage: called as the runner begins each stage: ("preparing", loop) before a loop's first
      call (the whole fit, then its check), ("timing", loop) once, as the rounds of every loop
      begin (naming the first).

  Raises:
    UsageError: an unknown problem or loop, or a fit the runner refuses before running.
  """
  timing = timing or Timing()
  unknown = [loop for loop in loops if loop not in LOOPS]
  if unknown:
    raise UsageError(f"Unknown loop {unknown[0]!r}. Valid: {', '.join(LOOPS)}.")
  workload = fit_problem_workload(problem_name, fit)
  shape = workload.check_size(tuple(shape))
  problem = problems.get_problem(problem_name, shape, timing.seed)
  inputs = workload.make_inputs(shape, np.dtype(np.float32), timing.seed)
  data64 = tuple(np.asarray(d, np.float64) for d in inputs[1:])
  first: dict[str, Any] = {}
  engines = tuple(_recording(engines_lib.ENGINES[LOOPS[loop]], first) for loop in loops)
  case = Case(jax.default_backend(), workload, shape, engines, np.dtype(np.float32), timing)
  loop_of = dict(zip((e.name for e in engines), loops, strict=True))
  rows = []

  def finish(result: runner.Result, index: int, total: int) -> None:
    del index, total
    loop, engine = loop_of[result.engine], engines_lib.ENGINES[result.engine]
    if not result.ok:
      rows.append(FitRow(loop, fit, result))
    else:
      params = np.asarray(first[result.engine][0])
      distance = problem.distance_to_optimum(params)
      rows.append(FitRow(
          loop, fit, result,
          final_loss=float(problem.numpy_loss_and_grad(params.astype(np.float64), *data64)[0]),
          distance_to_optimum=distance, reached_optimum=distance <= problem.optimum_tolerance(),
          fusions_per_step=engines_lib.fusions_per_step(engine, workload, inputs)))
    on_row(rows[-1])

  runner.run_sweep([case], finish, rooflines={},
                   progress=lambda what, row: on_stage(what, loop_of[row.engine]))
  return rows
