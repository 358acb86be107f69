"""Where jit starts to win: speedup against size on a geometric grid, with its interval.

  python -m experiments.crossover [--workload=muladd_sum] [--engines=numpy,jit] [--baseline=jit]
      [--backend=cpu] [--max_elements=16000000] [--output_json=PATH] [--plot=PATH.png]

Every size is a case of the runner (checked, then timed in interleaved rounds); the crossover
against an engine is the smallest size at which the baseline's 95% speedup interval lies wholly
above 1 (null when it never does in range).
"""

import numpy as np
from absl import flags

from funcgrad.bench import crossover, engines, report, runner, specs, speedups, workloads
from funcgrad.bench.machine import machine_info
from funcgrad.errors import UsageError
from funcgrad.experiments import _cli, _progress
from funcgrad.shapes import format_shape

_WORKLOAD = flags.DEFINE_enum("workload", "muladd_sum", list(workloads.TUTORIAL_WORKLOADS),
                              "Workload.")
_ENGINES = flags.DEFINE_string("engines", "numpy,jit", "Comma-separated engines to compare.")
_BASELINE = flags.DEFINE_string("baseline", None, "The engine compared with each other one "
                                "(default: jit when swept).")
_BACKEND = flags.DEFINE_enum("backend", "cpu", ["cpu", "gpu", "tpu"], "Where to sweep.")
_MAX_ELEMENTS = flags.DEFINE_integer("max_elements", 16_000_000, "The largest size, in elements "
                                     f"(>= {crossover.MIN_ELEMENTS}).")
_MIN_RUN_TIME = flags.DEFINE_float("min_run_time", 0.2, "Seconds of timed blocks per engine and "
                                   "size, in (0, 3600].")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the inputs, the round order and the bootstrap.",
                             lower_bound=0)
_OUTPUT_JSON = flags.DEFINE_string("output_json", None,
                                   "Write {machine, results, speedups, crossovers} JSON here.")
_PLOT = flags.DEFINE_string("plot", None, "Write the speedup-vs-size plot here (PNG).")
_ALLOCATOR = _cli.define_allocator_flag()
_PROGRESS = _progress.define_progress_flag()


def main(argv: list[str]) -> int:
  del argv
  _cli.check_outputs({"--output_json": _OUTPUT_JSON.value, "--plot": _PLOT.value})
  _progress.announce("crossover: measuring the copy bandwidth, then each size: compile and check "
                     "every engine, time them", _PROGRESS.value)
  _cli.restart_as_asked(_ALLOCATOR.value)
  min_run_time = _MIN_RUN_TIME.value
  if not 0 < min_run_time <= 3600:  # also false for nan
    raise UsageError(f"Invalid --min_run_time={min_run_time}: expected seconds in (0, 3600].")
  names = specs.parse_names(_ENGINES.value, engines.ENGINES, "engine", flag="--engines")
  if len(names) < 2:
    raise UsageError(f"--engines={_ENGINES.value!r} names one engine: a crossover needs two.")
  baseline = _BASELINE.value or speedups.default_baseline(names)
  speedups.check_baseline(baseline, names)
  workload = workloads.get_workload(_WORKLOAD.value)
  sizes = crossover.geometric_sizes(_MAX_ELEMENTS.value, workload)
  config = runner.SweepConfig(
      workloads=[workload], engines=[engines.get_engine(n) for n in names],
      backends=runner.resolve_backends([_BACKEND.value], skip_unavailable=False),
      sizes=sizes, dtype=np.dtype(np.float32), min_run_time=min_run_time,
      seed=_SEED.value)
  runner.check_fits(config)
  if _PLOT.value:
    report.check_plot_available()

  bar = _progress.Progress(_PROGRESS.value)

  def progress(result, index, total):
    bar.done(f"[{index}/{total}] {format_shape(result.shape)} {result.engine}: "
             f"{report.format_seconds(result.median_s)}")

  rooflines = runner.measure_rooflines(config.backends)
  bar.start(config.rows())
  try:
    results = runner.run_sweep(config, progress, rooflines, progress=bar.runner_progress)
  finally:
    bar.close()
  found = speedups.speedups(results, baseline, _SEED.value)
  points = crossover.crossovers(found, baseline)
  if _OUTPUT_JSON.value:
    machine = {**machine_info(), "rooflines": {b: r.to_dict() for b, r in rooflines.items()},
               **next(iter(rooflines.values())).to_dict()}
    report.write_json(_OUTPUT_JSON.value, machine, results, found,
                      crossovers=[p.to_dict() for p in points])
  if _PLOT.value:
    crossover.plot(_PLOT.value, found, points)
  print(report.render_speedups(found))
  print(crossover.render(points, workload.name))
  return 0 if all(r.status == runner.OK for r in results) else 1


if __name__ == "__main__":
  _cli.run(main)
