"""experiments.optimize's fits: each loop style checked against a reference fit, then timed.

The reference is the hand-written NumPy optimiser in float64 for SGD and Adam (optax's update
rule written out), and the compiled `scan` loop for other optax optimisers. Timing uses the
runner's timing core: the first run (with its compilation) apart from the steady state, where one
"call" is a whole fit of `steps` steps.
"""

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from funcgrad import optimize
from funcgrad.bench.timing import Timer, autorange
from funcgrad.peers import PeerUnavailableError
from funcgrad.problems import Problem

SLOW_RUN_S = 1.0  # a fit slower than this gets one timed block instead of three


@dataclasses.dataclass
class FitResult:
  """One loop style's fit. Times in seconds; fields that do not apply are None."""

  loop: str
  workload: str
  optimizer: str
  learning_rate: float
  steps: int
  first_call_s: float | None = None
  total_s: float | None = None
  per_step_s: float | None = None
  iqr_s: float | None = None
  blocks: int | None = None
  final_loss: float | None = None
  distance_to_optimum: float | None = None
  reached_optimum: bool | None = None
  max_param_diff: float | None = None
  max_loss_diff: float | None = None
  reference: str | None = None
  ok: bool = False
  noisy: bool | None = None
  error: str | None = None

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def reference_fit(problem: Problem, optimizer: str, learning_rate: float,
                  steps: int) -> tuple[str, optimize.LoopOutput]:
  """The fit every loop is checked against, and what it is."""
  if optimizer in optimize.PEER_OPTIMIZERS:
    run = optimize.numpy_loop(problem, optimizer, learning_rate, steps, np.float64)
    return "numpy float64", run()
  run = optimize.make_loop("scan", problem, optimizer, learning_rate, steps)
  return "scan", optimize.to_numpy(run())


def _sync(output: optimize.LoopOutput) -> optimize.LoopOutput:
  return jax.block_until_ready(output)


def fit_one(loop: str, problem: Problem, optimizer: str, learning_rate: float, steps: int,
            reference: tuple[str, optimize.LoopOutput], min_run_time: float) -> FitResult:
  """Runs, checks and times one loop style; an exception becomes the row's `error`."""
  result = FitResult(loop, problem.name, optimizer, learning_rate, steps)
  try:
    run = optimize.make_loop(loop, problem, optimizer, learning_rate, steps)
    start = time.perf_counter()
    output = optimize.to_numpy(_sync(run()))
    result.first_call_s = time.perf_counter() - start
  except (ValueError, PeerUnavailableError) as e:
    result.error = str(e)
    return result
  name, want = reference
  result.reference = name
  result.max_param_diff = float(np.max(np.abs(output.params - want.params)))
  scale = np.maximum(1.0, np.abs(want.losses))
  result.max_loss_diff = float(np.max(np.abs(output.losses - want.losses) / scale))
  result.final_loss = float(problem.numpy_loss_and_grad(
      np.asarray(output.params, np.float64), *(np.asarray(d, np.float64) for d in problem.data))[0])
  result.distance_to_optimum = problem.distance_to_optimum(output.params)
  result.reached_optimum = result.distance_to_optimum <= problem.optimum_tolerance()
  result.ok = bool(result.max_param_diff <= problem.param_tolerance(learning_rate))
  if not result.ok:
    result.error = (f"parameters differ from the {name} reference by {result.max_param_diff:.3g}"
                    f" > {problem.param_tolerance(learning_rate):g}; not timed")
    return result
  timer = Timer(run, _sync)
  min_blocks = 1 if result.first_call_s > SLOW_RUN_S else 3
  stats = autorange(timer, min_run_time, min_blocks)
  result.total_s, result.iqr_s, result.blocks = stats.median_s, stats.iqr_s, stats.blocks
  result.per_step_s = stats.median_s / steps
  result.noisy = stats.noisy
  return result


def fit_all(loops: list[str], problem: Problem, optimizer: str, learning_rate: float, steps: int,
            min_run_time: float = 0.2, on_result=lambda r: None) -> list[FitResult]:
  """`fit_one` for every loop style, against one reference fit."""
  optimize.make_optimizer(optimizer, learning_rate)  # bad names and rates fail before any work
  reference = reference_fit(problem, optimizer, learning_rate, steps)
  results = []
  for loop in loops:
    results.append(fit_one(loop, problem, optimizer, learning_rate, steps, reference,
                           min_run_time))
    on_result(results[-1])
  return results
