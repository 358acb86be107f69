"""Compiled versus eager, beside NumPy, PyTorch and TensorFlow: funcgrad's main job.

  python -m experiments.compare [--workloads=muladd_sum,abs_loss] [--engines=...]
      [--backends=cpu,gpu] [--sizes=3x4,1000x1000] [--dtype=float32] [--min_run_time=0.2]
      [--baseline=jit] [--interleave=true] [--output_json=PATH] [--output_csv=PATH]
      [--output_jsonl=PATH] [--plot=PATH.png] [--precision=P] [--max_run_time=S]
      [--estimator=median|min] [--isolation=cooldown|none] [--save_baseline=PATH]
      [--compare_to=PATH] [--noise_threshold=0.05] [--fail_on_regression] [--allow_other_machine]
  python -m experiments.compare --function=MODULE:NAME --shapes=SHAPE[;SHAPE...] [--argnums=0,1]
  python -m experiments.compare --function=MODULE:NAME --inputs=MODULE:NAME
      [--peer_function=torch:MODULE:NAME]

Every engine's output is checked against a float64 reference before it is timed; engines are
timed in interleaved rounds and compared with --baseline round by round. The run exits 1 at the
end (after writing every output) if any row was wrong or failed, or, with --fail_on_regression,
if any row is slower than the --compare_to baseline.
"""

import contextlib
import sys

from absl import flags

from funcgrad import compile_cache, sharding
from funcgrad.bench import baselines, case, comparison, interference, plan, report, runner, speedups
from funcgrad.bench import engines as engines_lib
from funcgrad.bench import workloads as registry
from funcgrad.bench.machine import machine_document
from funcgrad.bench.workloads import fits
from funcgrad.experiments import _cli, _flags, _progress

_WORKLOADS = flags.DEFINE_string("workloads", "muladd_sum,abs_loss",
                                 f"Comma-separated: {', '.join(registry.WORKLOADS)} (or all).")
_FUNCTION = flags.DEFINE_string(
    "function", None, "Time your own function instead: MODULE:NAME, importable from the current "
    "directory; needs --shapes. Rows carry workload=MODULE:NAME.")
_SHAPES = flags.DEFINE_string("shapes", None, "With --function: one shape per argument, "
                              "separated by ';' (e.g. '128x64;64' or 'scalar').")
_INPUTS = flags.DEFINE_string(
    "inputs", None, "With --function, instead of --shapes: MODULE:NAME of a function of no "
    "arguments returning the tuple of arguments (any pytrees: models, keys, integer labels).")
_PEER_FUNCTION = flags.DEFINE_string(
    "peer_function", None, "With --function: your torch version, torch:MODULE:NAME, taking the "
    "same arguments as torch tensors (rows torch_eager and torch_compile).")
_ARGNUMS = flags.DEFINE_string("argnums", "0", "With --function: the arguments to differentiate, "
                               "comma-separated (e.g. 0,1).")
_VALUE_AND_GRAD = flags.DEFINE_bool("value_and_grad", True, "With --function: time value and "
                                    "gradients (false: the function itself).")
_ENGINES = flags.DEFINE_string(
    "engines", "all", f"Comma-separated: {', '.join(engines_lib.ENGINES)}; "
    f"{plan.ALL_ENGINES_NOTE}.")
_BACKENDS = flags.DEFINE_list("backends", [], "cpu, gpu (default: every backend present).")
_SKIP_UNAVAILABLE = flags.DEFINE_bool("skip_unavailable", False,
                                      "Skip requested backends that are absent instead of failing.")
_SIZES = flags.DEFINE_string("sizes", plan.DEFAULT_SIZES,
                             "Comma-separated NxD (2-D workloads) or N (1-D; NxD flattens to N*D).")
_DTYPE = flags.DEFINE_string("dtype", "float32",
                             "float32, bfloat16, float16, float64 (enables x64).")
_MIN_RUN_TIME = _flags.define_min_run_time(0.2, "per engine and case")
_SEED = _flags.define_seed("the inputs (identical for every engine), of the round order and of "
                           "the bootstrap")
_BASELINE = flags.DEFINE_string("baseline", None, "The engine every other is compared with "
                                "(default: jit when swept, else the first engine).")
_INTERLEAVE = flags.DEFINE_bool("interleave", True, "Time the engines of a case in interleaved "
                                "rounds (false: each engine's blocks back to back).")
_OUTPUT_JSON = _flags.define_output_json("{machine, results, speedups}")
_OUTPUT_CSV = flags.DEFINE_string("output_csv", None, "Write one CSV row per result here.")
_OUTPUT_JSONL = flags.DEFINE_string("output_jsonl", None, "Append each row here as it finishes.")
_PLOT = flags.DEFINE_string("plot", None, "Write a log-log plot here (PNG; needs matplotlib).")
_ALLOCATOR = _flags.define_allocator()
_PRECISION = _flags.define_precision_flags()
_BASELINES = _flags.define_baseline_flags()
_PROGRESS = _progress.define_progress_flag()
_FIT_STEPS = flags.DEFINE_integer(
    "fit_steps", fits.FIT_STEPS, "Adam steps per call of the fit_* workloads (learning rate "
    f"{fits.FIT_LEARNING_RATE}), in 1..100000.", lower_bound=1, upper_bound=100_000)
_DEVICES = flags.DEFINE_integer(
    "devices", None, "Spread the inputs of the JAX engines (eager, jit, jit_packed) over this many "
    "devices of each backend (a 1-D mesh), in 1..1024.", lower_bound=1,
    upper_bound=sharding.MAX_DEVICES)
_MESH = flags.DEFINE_string("mesh", None, "A 2-D device mesh AxB instead (rows over A, columns "
                            "over B).")
_SIMULATE_CPU_DEVICES = flags.DEFINE_integer(
    "simulate_cpu_devices", None, "Give the CPU backend this many devices (set before JAX "
    "starts), in 1..1024.", lower_bound=1, upper_bound=sharding.MAX_DEVICES)
_COMPILATION_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir", None, "Cache compiled programs here, in two tiers: JAX's "
    "persistent compilation cache (small functions included) and, under executables/, the jit "
    "engines' compiled executables, which a later run loads without tracing or lowering. Loading "
    "one trusts whoever can write this directory.")


def _request() -> plan.Request:
  return plan.Request(
      workloads=_WORKLOADS.value, engines=_ENGINES.value, backends=_BACKENDS.value,
      skip_unavailable=_SKIP_UNAVAILABLE.value,
      sizes=_SIZES.value if flags.FLAGS["sizes"].present else None, dtype=_DTYPE.value,
      timing=_PRECISION.timing(_MIN_RUN_TIME.value, _SEED.value, _INTERLEAVE.value,
                               _BASELINE.value),
      baseline=_BASELINE.value, fit_steps=_FIT_STEPS.value, devices=_DEVICES.value,
      mesh=_MESH.value, compilation_cache_dir=_COMPILATION_CACHE_DIR.value,
      function=_FUNCTION.value, shapes=_SHAPES.value, argnums=_ARGNUMS.value,
      value_and_grad=_VALUE_AND_GRAD.value, plot=bool(_PLOT.value), inputs=_INPUTS.value,
      peer_function=_PEER_FUNCTION.value)


def main(argv: list[str]) -> int:
  del argv
  _cli.check_outputs({"--output_json": _OUTPUT_JSON.value, "--output_csv": _OUTPUT_CSV.value,
                     "--output_jsonl": _OUTPUT_JSONL.value, "--plot": _PLOT.value,
                     "--save_baseline": _BASELINES.save.value})
  _BASELINES.check()  # the baseline flags, and the --compare_to file read, before the engines load
  _cli.restart_as_asked(_ALLOCATOR.value)  # first: the allocator is chosen at process start
  _progress.announce("compare: importing the engines and measuring the peaks the rows are "
                     "compared with, then each case: compile and check every engine, time them",
                     _PROGRESS.value)
  if _COMPILATION_CACHE_DIR.value:  # both tiers checked before any work, one line if refused
    compile_cache.check_cache_dir(_COMPILATION_CACHE_DIR.value, "--compilation_cache_dir")
  if _SIMULATE_CPU_DEVICES.value:
    sharding.set_cpu_device_count(_SIMULATE_CPU_DEVICES.value)  # before JAX starts its backends
  planned = plan.plan(_request())  # every bad flag fails here, before any measurement
  old = _BASELINES.load(machine_document())  # a bad --compare_to too
  timing = planned.cases[0].timing if planned.cases else _PRECISION.timing(
      _MIN_RUN_TIME.value, _SEED.value)
  if _COMPILATION_CACHE_DIR.value:
    compile_cache.enable_persistent_cache(_COMPILATION_CACHE_DIR.value)
  rooflines: dict = {}

  def machine(rows=()):
    return machine_document(rooflines, compilation_cache_dir=_COMPILATION_CACHE_DIR.value,
                            isolation=timing.isolation,
                            interference=interference.run_totals(rows, timing.isolation))

  def found_of(rows):
    return speedups.speedups(rows, planned.baseline, _SEED.value, timing.estimator,
                             timing.precision) if planned.baseline else []

  def changes_of(rows):
    return baselines.changes(rows, old, _BASELINES.noise_threshold.value, timing.estimator,
                             _SEED.value) if old is not None else None

  seen: list[runner.Result] = []
  run = report.run_outputs(
      lambda: machine(seen), output_json=_OUTPUT_JSON.value, output_csv=_OUTPUT_CSV.value,
      output_jsonl=_OUTPUT_JSONL.value, plot_path=_PLOT.value, speedups=found_of,
      extra=lambda rows: {} if old is None else
      {"changes": [c.to_dict() for c in changes_of(rows)]})
  _cli.on_interrupt(run.interrupted)  # Ctrl-C, SIGTERM, SIGHUP: every finished row is written
  bar = _progress.Progress(_PROGRESS.value)

  def on_result(result: runner.Result, index: int, total: int) -> None:
    seen.append(result)
    run.add(result)
    bar.done(_progress.row_line(result, index, total))

  note = runner.long_run_note(planned.cases)
  if note:
    print(note, file=sys.stderr, flush=True)
  rooflines.update(runner.measure_rooflines(planned.cases))
  bar.start(case.rows(planned.cases))
  held = comparison.HeldPrints()  # a --function that prints: held back while it is timed
  try:
    with contextlib.redirect_stdout(held) if planned.prints() else contextlib.nullcontext():
      done = runner.run_sweep(planned.cases, on_result, rooflines, progress=bar.runner_progress)
  finally:
    bar.close()
  run.finish()  # one failed output does not stop the others, nor the tables
  if _BASELINES.save.value:
    baselines.save(_BASELINES.save.value, machine(done), done)
  found = found_of(done)
  changes = changes_of(done)
  print(report.render_compare(done))
  if found:
    print()
    print(report.render_speedups(found))
  if changes is not None:
    print()
    print(baselines.render(changes, _BASELINES.compare_to.value, _BASELINES.noise_threshold.value))
  if planned.function is not None:
    print("\n".join(comparison.user_notes(planned.function, done, held.lines)))
  status = 0 if all(r.status in (runner.OK, runner.NOT_IMPLEMENTED) for r in done) else 1
  if status == 0 and _BASELINES.fail_on_regression.value and baselines.regressed(changes or []):
    print("--fail_on_regression: a row is slower than the baseline.", file=sys.stderr)
    status = 1
  return run.report_failures(status)


if __name__ == "__main__":
  _cli.run(main)
