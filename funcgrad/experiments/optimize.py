"""Minimise the tutorial's loss (or least squares) with optax: eager vs jit step vs lax.scan.

  python -m experiments.optimize [--workload=abs_loss|linear_regression] [--shape=1000x10]
      [--optimizer=adam] [--learning_rate=0.01] [--steps=1000]
      [--loops=eager,jit_step,scan,numpy,torch] [--output_json=PATH]

Every loop's parameters are checked against a reference fit (hand-written NumPy in float64 for sgd
and adam) before it is timed; exit 1 at the end if any loop disagreed or failed. For the compiled
loops, the fused XLA kernels per step are counted in the optimised HLO (`fusions_per_step`).
"""

import json
import sys

import numpy as np
from absl import flags

from funcgrad import limits, optimize, peers, problems
from funcgrad._tables import render_text
from funcgrad.bench import fits, report
from funcgrad.bench.machine import machine_document
from funcgrad.experiments import _cli, _flags
from funcgrad.shapes import parse_names, parse_shape

_WORKLOAD = flags.DEFINE_enum("workload", "abs_loss", ["abs_loss", "linear_regression"],
                              "The problem to fit.")
_SHAPE = flags.DEFINE_string("shape", "1000x10", "linear_regression: N samples x D features.")
_OPTIMIZER = flags.DEFINE_string("optimizer", "adam", "Any optax alias taking a learning rate.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.01, "Learning rate, in (0, 1000].")
_cli.in_range(_LEARNING_RATE, 0, 1000, low_open=True)
_STEPS = flags.DEFINE_integer("steps", 1000, "Optimisation steps.", lower_bound=1,
                              upper_bound=100_000)
_LOOPS = flags.DEFINE_string("loops", "eager,jit_step,scan,numpy,torch",
                             f"Comma-separated: {', '.join(optimize.LOOPS)} (or all).")
_SEED = _flags.define_seed("the linear_regression data")
_MIN_RUN_TIME = _flags.define_min_run_time(0.2, "of fits per loop")
_ALLOCATOR = _flags.define_allocator()
_OUTPUT_JSON = _flags.define_output_json("{machine, results}")


def _row(r: fits.FitResult) -> list[str]:
  if r.error is not None and r.total_s is None:
    return [r.loop, report.format_seconds(r.first_call_s), "FAILED" if r.reference is None
            else "WRONG", "-", "-", "-", "-", "-"]
  return [r.loop, report.format_seconds(r.first_call_s),
          report.format_seconds(r.per_step_s) + (" *" if r.noisy else ""),
          report.format_seconds(r.total_s), f"{r.final_loss:.4g}", f"{r.distance_to_optimum:.2g}",
          "yes" if r.reached_optimum else "NO", f"{r.max_param_diff:.1g}"]


def main(argv: list[str]) -> int:
  del argv
  _cli.check_outputs({"--output_json": _OUTPUT_JSON.value})
  _cli.restart_as_asked(_ALLOCATOR.value)  # first: the allocator is chosen at process start
  loops = parse_names(_LOOPS.value, optimize.LOOPS, "loop", flag="--loops")
  size = parse_shape(_SHAPE.value, "--shape", max_rank=2)
  n, d = size if len(size) == 2 else (size[0], 1)
  if _WORKLOAD.value == "linear_regression":
    # The float32 data, a float64 copy for lstsq, and each loop's copies (torch's included).
    limits.check_memory(limits.array_bytes((n, d), np.float32, 6)
                        + limits.array_bytes((n, d), np.float64, 3), f"--shape={_SHAPE.value}")
  problem = problems.get_problem(_WORKLOAD.value, n, d, _SEED.value)
  optimize.make_optimizer(_OPTIMIZER.value, _LEARNING_RATE.value)  # fail before any work
  if "torch" in loops and not peers.peer_available("torch"):
    print(f"note: skipping torch: {peers.PEERS_HINT}", file=sys.stderr)
    loops.remove("torch")

  def progress(r: fits.FitResult) -> None:
    outcome = report.format_seconds(r.per_step_s) + " per step" if r.error is None else r.error
    print(f"[{r.loop}] {outcome}", file=sys.stderr, flush=True)

  results = fits.fit_all(loops, problem, _OPTIMIZER.value, _LEARNING_RATE.value, _STEPS.value,
                        _MIN_RUN_TIME.value, progress)
  fusions = {r.loop: optimize.fusions_per_step(r.loop, problem, _OPTIMIZER.value,
                                               _LEARNING_RATE.value, _STEPS.value)
             if r.ok else None for r in results}
  if _OUTPUT_JSON.value:
    document = {"machine": machine_document(),
                "results": [{**r.to_dict(), "fusions_per_step": fusions[r.loop]} for r in results]}
    report.atomic_write(_OUTPUT_JSON.value, json.dumps(document, indent=2) + "\n")
  print(f"{report.process_label()}; "
        f"{_OPTIMIZER.value}(learning_rate={_LEARNING_RATE.value}) on {problem.name}, "
        f"{_STEPS.value} steps; optimum: {problem.optimum_description}; reference: "
        f"{results[0].reference if results else '-'}")
  print(render_text(["loop", "first call", "per step", "total", "final loss", "to optimum",
                     "reached", "vs reference", "fusions/step"],
                    [[*_row(r), f"{fusions[r.loop]:.3g}" if fusions[r.loop] is not None else "-"]
                     for r in results]))
  if any(r.noisy for r in results):
    print("* noisy: the per-step time's IQR/median > 10%.")
  for r in results:
    if r.error is not None:
      print(f"{r.loop}: {r.error}")
  return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
  _cli.run(main)
