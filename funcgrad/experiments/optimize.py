"""Minimise the tutorial's loss (or least squares) with optax: eager vs jit step vs lax.scan.

  python -m experiments.optimize [--workload=abs_loss|linear_regression] [--shape=1000x10]
      [--optimizer=adam] [--learning_rate=0.01] [--steps=1000]
      [--loops=eager,jit_step,scan,numpy,torch] [--output_json=PATH]

Every loop is an engine over the fit workload, run by the runner: its first call (the whole fit)
is checked against a reference fit (hand-written NumPy in float64 for sgd and adam, a float64
re-run of the step otherwise) before it is timed; exit 1 at the end if any loop disagreed or
failed. For the compiled loops, the fused XLA kernels per step are counted in the optimised HLO.
"""

import sys

import numpy as np
from absl import flags

from funcgrad import limits, optimize, outputs, peers, problems
from funcgrad.bench import fitting, report
from funcgrad.bench.case import Timing
from funcgrad.bench.machine import machine_document
from funcgrad.experiments import _cli, _flags, _progress
from funcgrad.shapes import parse_names, parse_shape

_WORKLOAD = flags.DEFINE_enum("workload", "abs_loss", list(problems.PROBLEMS),
                              "The problem to fit.")
_SHAPE = flags.DEFINE_string("shape", "1000x10", "linear_regression: N samples x D features.")
_OPTIMIZER = flags.DEFINE_string("optimizer", "adam", "Any optax alias taking a learning rate.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.01, "Learning rate, in (0, 1000].")
_cli.in_range(_LEARNING_RATE, 0, 1000, low_open=True)
_STEPS = flags.DEFINE_integer("steps", 1000, "Optimisation steps.", lower_bound=1,
                              upper_bound=100_000)
_LOOPS = flags.DEFINE_string("loops", "eager,jit_step,scan,numpy,torch",
                             f"Comma-separated: {', '.join(fitting.LOOPS)} (or all).")
_SEED = _flags.define_seed("the linear_regression data")
_MIN_RUN_TIME = _flags.define_min_run_time(0.2, "of fits per loop")
_ALLOCATOR = _flags.define_allocator()
_OUTPUT_JSON = _flags.define_output_json("{machine, results}")


def main(argv: list[str]) -> int:
  del argv
  _cli.check_outputs({"--output_json": _OUTPUT_JSON.value})
  _cli.restart_as_asked(_ALLOCATOR.value)  # first: the allocator is chosen at process start
  loops = parse_names(_LOOPS.value, fitting.LOOPS, "loop", flag="--loops")
  size = parse_shape(_SHAPE.value, "--shape", max_rank=2)
  n, d = size if len(size) == 2 else (size[0], 1)
  if _WORKLOAD.value == "linear_regression":
    # The float32 data, a float64 copy for lstsq, and each loop's copies (torch's included).
    limits.check_memory(limits.array_bytes((n, d), np.float32, 6)
                        + limits.array_bytes((n, d), np.float64, 3), f"--shape={_SHAPE.value}")
  fit = optimize.Fit(_OPTIMIZER.value, _LEARNING_RATE.value, _STEPS.value)  # fail before any work
  if "torch" in loops and not peers.peer_available("torch"):
    print(f"note: skipping torch: {peers.PEERS_HINT}", file=sys.stderr)
    loops.remove("torch")

  def document(rows: list[fitting.FitRow], complete: bool) -> str:
    return outputs.dumps({"machine": machine_document(), "complete": complete,
                          "results": [r.to_dict() for r in rows]}) + "\n"

  run = outputs.RunOutputs({"--output_json": (_OUTPUT_JSON.value, document)})
  _cli.on_interrupt(run.interrupted)  # Ctrl-C, SIGTERM, SIGHUP: every finished loop is kept

  def progress(row: fitting.FitRow) -> None:
    run.add(row)
    outcome = report.format_seconds(row.per_step_s) + " per step" if row.result.ok else \
        row.result.error
    print(f"[{row.loop}] {outcome}", file=sys.stderr, flush=True)

  def stage(what: str, loop: str) -> None:  # a piped run says what it is doing, as it begins
    _progress.announce(f"compiling and checking the {loop} loop's fit" if what == "preparing"
                       else f"timing every loop, in calls of {fit.steps} steps", True)

  _progress.announce(f"optimize: {fit.describe()} on {_WORKLOAD.value}, {', '.join(loops)}: "
                     "each loop's first call is the whole fit, checked against a reference fit, "
                     "then its calls are timed", True)
  rows = fitting.run_fit(_WORKLOAD.value, (n, d), fit, loops,
                         Timing(_MIN_RUN_TIME.value, _SEED.value), progress, stage)
  run.rows[:] = rows
  run.finish()
  problem = problems.get_problem(_WORKLOAD.value, (n, d), _SEED.value)
  reference = next((r.result.reference for r in rows if r.result.reference), "-")
  print(report.render_fit(rows, f"{report.process_label()}; {fit.describe()} on {problem.name}, "
                                f"{fit.steps} steps; optimum: {problem.optimum_description}; "
                                f"reference: {reference}"))
  return run.report_failures(0 if all(r.result.ok for r in rows) else 1)


if __name__ == "__main__":
  _cli.run(main)
