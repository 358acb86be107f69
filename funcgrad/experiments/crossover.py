"""Where jit starts to win: speedup against size on a geometric grid, with its interval.

  python -m experiments.crossover [--workload=muladd_sum] [--engines=numpy,jit] [--baseline=jit]
      [--backend=cpu] [--max_elements=16000000] [--output_json=PATH] [--plot=PATH.png]
      [--precision=0.05] [--max_run_time=2] [--estimator=median|min] [--isolation=cooldown|none]

Every size is a case of the runner (checked, then timed in interleaved rounds until its interval
is within --precision, or --max_run_time seconds); the crossover against an engine is the
smallest size at which the baseline's 95% speedup interval lies wholly above 1 (null when it
never does in range), and the band runs from the last size where the engine is surely faster
(interval below 1) to that crossover: between them the interval straddles 1.
"""

import numpy as np
from absl import flags

from funcgrad.bench import (
    case,
    checks,
    crossover,
    engines,
    interference,
    report,
    runner,
    speedups,
    workloads,
)
from funcgrad.bench.machine import machine_document
from funcgrad.errors import UsageError
from funcgrad.experiments import _cli, _flags, _progress
from funcgrad.shapes import format_shape, parse_names

_WORKLOAD = flags.DEFINE_enum("workload", "muladd_sum", list(workloads.TUTORIAL_WORKLOADS),
                              "Workload.")
_ENGINES = flags.DEFINE_string("engines", "numpy,jit", "Comma-separated engines to compare.")
_BASELINE = flags.DEFINE_string("baseline", None, "The engine compared with each other one "
                                "(default: jit when swept).")
_BACKEND = flags.DEFINE_enum("backend", "cpu", ["cpu", "gpu", "tpu"], "Where to sweep.")
_MAX_ELEMENTS = flags.DEFINE_integer("max_elements", 16_000_000, "The largest size, in elements "
                                     f"(>= {crossover.MIN_ELEMENTS}).")
_MIN_RUN_TIME = _flags.define_min_run_time(0.2, "per engine and size")
_SEED = _flags.define_seed("the inputs, the round order and the bootstrap")
_OUTPUT_JSON = _flags.define_output_json("{machine, results, speedups, crossovers}")
_PLOT = flags.DEFINE_string("plot", None, "Write the speedup-vs-size plot here (PNG).")
_ALLOCATOR = _flags.define_allocator()
_PRECISION = _flags.define_precision_flags(crossover.DEFAULT_PRECISION,
                                           crossover.DEFAULT_MAX_RUN_TIME)
_PROGRESS = _progress.define_progress_flag()


def main(argv: list[str]) -> int:
  del argv
  _cli.check_outputs({"--output_json": _OUTPUT_JSON.value, "--plot": _PLOT.value})
  _cli.restart_as_asked(_ALLOCATOR.value)
  _progress.announce("crossover: measuring the peaks the rows are compared with, then each size: "
                     "compile and check every engine, time them", _PROGRESS.value)
  names = parse_names(_ENGINES.value, engines.ENGINES, "engine", flag="--engines")
  if len(names) < 2:
    raise UsageError(f"--engines={_ENGINES.value!r} names one engine: a crossover needs two.")
  baseline = _BASELINE.value or speedups.default_baseline(names)
  speedups.check_baseline(baseline, names)
  workload = workloads.get_workload(_WORKLOAD.value)
  sizes = crossover.geometric_sizes(_MAX_ELEMENTS.value, workload)
  sweep = case.Sweep(
      workloads=[workload], engines=[engines.get_engine(n) for n in names],
      backends=checks.resolve_backends([_BACKEND.value], skip_unavailable=False),
      sizes=sizes, dtype=np.dtype(np.float32),
      timing=_PRECISION.timing(_MIN_RUN_TIME.value, _SEED.value, baseline=baseline))
  cases = sweep.cases()
  try:
    checks.check_cases(cases)
  except UsageError as e:  # the sizes come from --max_elements: name it
    raise UsageError(f"--max_elements={_MAX_ELEMENTS.value}: {e} (lower --max_elements)") \
        from None
  if _PLOT.value:
    report.check_plot_available()

  rooflines: dict = {}
  timing = sweep.timing
  seen: list[runner.Result] = []

  def found_of(rows):
    return speedups.speedups(rows, baseline, _SEED.value, timing.estimator, timing.precision)

  def extra(rows):
    return {"crossovers": [p.to_dict() for p in crossover.crossovers(found_of(rows), baseline)]}

  def machine():
    return machine_document(rooflines, isolation=timing.isolation,
                            interference=interference.run_totals(seen, timing.isolation))

  run = report.run_outputs(machine, output_json=_OUTPUT_JSON.value, speedups=found_of,
                           extra=extra)
  _cli.on_interrupt(run.interrupted)  # Ctrl-C, SIGTERM, SIGHUP: every finished row is written
  bar = _progress.Progress(_PROGRESS.value)

  def progress(result, index, total):
    seen.append(result)
    run.add(result)
    bar.done(f"[{index}/{total}] {format_shape(result.shape)} {result.engine}: "
             f"{report.format_seconds(result.median_s)}")

  rooflines.update(runner.measure_rooflines(cases))
  bar.start(case.rows(cases))
  try:
    results = runner.run_sweep(cases, progress, rooflines, progress=bar.runner_progress)
  finally:
    bar.close()
  run.finish()
  found = found_of(results)
  points = crossover.crossovers(found, baseline)
  if _PLOT.value:
    crossover.plot(_PLOT.value, found, points)
  print(report.render_speedups(found))
  print(crossover.render(points, workload.name))
  return run.report_failures(0 if all(r.status == runner.OK for r in results) else 1)


if __name__ == "__main__":
  _cli.run(main)
