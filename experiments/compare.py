"""Compiled versus eager, beside NumPy, PyTorch and TensorFlow: funcgrad's main job.

  python -m experiments.compare [--workloads=muladd_sum,abs_loss] [--engines=...]
      [--backends=cpu,gpu] [--sizes=3x4,1000x1000] [--dtype=float32] [--min_run_time=0.2]
      [--output_json=PATH] [--output_csv=PATH] [--output_jsonl=PATH] [--plot=PATH.png]

Every engine's output is checked against a float64 NumPy reference before it is timed; the run
exits 1 at the end (after writing every output) if any row was wrong or failed.
"""

import dataclasses
import math
import sys

import jax
from absl import flags

from experiments import _cli
from funcgrad import allocator, compile_cache, fit, peers, sharding
from funcgrad.bench import engines as engines_lib
from funcgrad.bench import report, runner, specs, workloads
from funcgrad.bench.machine import machine_info
from funcgrad.dtypes import canonical_dtype, needs_x64, resolve_dtype

_WORKLOADS = flags.DEFINE_string("workloads", "muladd_sum,abs_loss",
                                 f"Comma-separated: {', '.join(workloads.WORKLOADS)} (or all).")
_ENGINES = flags.DEFINE_string(
    "engines", "all", f"Comma-separated: {', '.join(engines_lib.ENGINES)}; 'all' = every engine "
    "whose framework is installed.")
_BACKENDS = flags.DEFINE_list("backends", [], "cpu, gpu (default: every backend present).")
_SKIP_UNAVAILABLE = flags.DEFINE_bool("skip_unavailable", False,
                                      "Skip requested backends that are absent instead of failing.")
_SIZES = flags.DEFINE_string("sizes", "3x4,1000x1000",
                             "Comma-separated NxD (2-D workloads) or N (1-D; NxD flattens to N*D).")
_DTYPE = flags.DEFINE_string("dtype", "float32",
                             "float32, bfloat16, float16, float64 (enables x64).")
_MIN_RUN_TIME = flags.DEFINE_float("min_run_time", 0.2, "Seconds of timed blocks per row.",
                                   lower_bound=0.0)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the inputs (identical for every engine).")
_OUTPUT_JSON = flags.DEFINE_string("output_json", None, "Write {machine, results} JSON here.")
_OUTPUT_CSV = flags.DEFINE_string("output_csv", None, "Write one CSV row per result here.")
_OUTPUT_JSONL = flags.DEFINE_string("output_jsonl", None, "Append each row here as it finishes.")
_PLOT = flags.DEFINE_string("plot", None, "Write a log-log plot here (PNG; needs matplotlib).")
_ALLOCATOR = _cli.define_allocator_flag()
_FIT_STEPS = flags.DEFINE_integer(
    "fit_steps", 1000, "Steps of the fit_* workloads (adam, learning rate 0.01).", lower_bound=1)
_DEVICES = flags.DEFINE_integer(
    "devices", None, "Spread the inputs of the JAX engines (eager, jit, jit_packed) over this many "
    "devices of each backend (a 1-D mesh).", lower_bound=1)
_MESH = flags.DEFINE_string("mesh", None, "A 2-D device mesh AxB instead (rows over A, columns "
                            "over B).")
_SIMULATE_CPU_DEVICES = flags.DEFINE_integer(
    "simulate_cpu_devices", None, "Give the CPU backend this many devices (set before JAX "
    "starts).", lower_bound=1)
_COMPILATION_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir", None, "Enable JAX's persistent compilation cache here (small "
    "functions included): a warm cache shortens every jit first call.")


def _engines(text: str) -> list[engines_lib.Engine]:
  if text.strip() == "all":
    found = [e for e in engines_lib.ENGINES.values() if e.available()]
    missing = [e.name for e in engines_lib.ENGINES.values() if not e.available()]
    if missing:
      print(f"note: skipping {', '.join(missing)}: {peers.PEERS_HINT}", file=sys.stderr)
    return found
  names = specs.parse_names(text, engines_lib.ENGINES, "engine")
  chosen = [engines_lib.get_engine(n) for n in names]
  for engine in chosen:
    if not engine.available():
      raise ValueError(f"Engine {engine.name!r} needs {engine.requires}, which is not installed: "
                       f"{peers.PEERS_HINT}.")
  return chosen


def _config() -> tuple[runner.SweepConfig, list[str]]:
  """The sweep and the fit workloads to run; every bad flag fails here, before any measurement."""
  dtype = canonical_dtype(_DTYPE.value)
  if dtype.kind != "f" and dtype.name != "bfloat16":
    raise ValueError(f"--dtype={_DTYPE.value!r} is not a float dtype; gradients need one "
                     "(float32, bfloat16, float16, float64).")
  if needs_x64(dtype):
    jax.config.update("jax_enable_x64", True)
  names = specs.parse_names(_WORKLOADS.value, [*workloads.WORKLOADS, *fit.FIT_WORKLOADS],
                            "workload")
  config = runner.SweepConfig(
      mesh_shape=_mesh_shape(),
      workloads=[workloads.get_workload(n) for n in names if n in workloads.WORKLOADS],
      engines=[],  # below, once everything cheap to check has been checked
      backends=runner.resolve_backends(_BACKENDS.value, _SKIP_UNAVAILABLE.value),
      sizes=specs.parse_sizes(_SIZES.value),
      dtype=resolve_dtype(dtype),
      min_run_time=_MIN_RUN_TIME.value,
      seed=_SEED.value)
  runner.check_mesh(config)
  runner.check_fits(config)
  if _PLOT.value:
    report.check_plot_available()
  fits = [n for n in names if n in fit.FIT_WORKLOADS]
  # Last: finding out which peers are installed imports them (seconds for TensorFlow).
  return dataclasses.replace(config, engines=_engines(_ENGINES.value)), fits


def _mesh_shape() -> tuple[int, ...] | None:
  if _MESH.value is None:
    return None if _DEVICES.value is None else (_DEVICES.value,)
  shape = sharding.parse_mesh(_MESH.value)
  if _DEVICES.value is not None and _DEVICES.value != math.prod(shape):
    raise ValueError(f"--devices={_DEVICES.value} disagrees with --mesh={_MESH.value} "
                     f"({math.prod(shape)} devices).")
  return shape


def _progress(result: runner.Result, index: int, total: int) -> None:
  outcome = (report.format_seconds(result.median_s) if result.error is None
             else f"{'WRONG' if result.max_rel_err is not None else 'FAILED'}: {result.error}")
  print(f"[{index}/{total}] {result.backend} {result.workload} {report.shape_label(result.shape)} "
        f"{result.engine}: {outcome} ({total - index} left)", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
  del argv
  allocator.reexec_with(_ALLOCATOR.value)  # first: the allocator is chosen at process start
  if _SIMULATE_CPU_DEVICES.value:
    sharding.set_cpu_device_count(_SIMULATE_CPU_DEVICES.value)  # before JAX starts its backends
  config, fits = _config()
  if _COMPILATION_CACHE_DIR.value:
    compile_cache.enable_persistent_cache(_COMPILATION_CACHE_DIR.value)
  engine_names = [e.name for e in config.engines]
  total = len(config.cases()) + len(fit.fit_loops(engine_names)) * sum(
      len(fit.fit_shapes(fit.FIT_WORKLOADS[n], config.sizes)) for n in fits)
  jsonl = report.JsonlWriter(_OUTPUT_JSONL.value) if _OUTPUT_JSONL.value else None
  done = []

  def on_result(result: runner.Result, *_) -> None:
    done.append(result)
    if jsonl:
      jsonl.write(result)
    _progress(result, len(done), total)

  try:
    runner.run_sweep(config, on_result)
    fit.compare_fits(fits, engine_names, config.sizes, _FIT_STEPS.value, config.min_run_time,
                     config.seed, on_result)
  finally:
    if jsonl:
      jsonl.close()
  if _OUTPUT_JSON.value:
    machine = {**machine_info(), "compilation_cache_dir": _COMPILATION_CACHE_DIR.value}
    report.write_json(_OUTPUT_JSON.value, machine, done)
  if _OUTPUT_CSV.value:
    report.write_csv(_OUTPUT_CSV.value, done)
  if _PLOT.value:
    report.plot(_PLOT.value, done)
  print(report.render_compare(done))
  return 0 if all(r.ok for r in done) else 1


if __name__ == "__main__":
  _cli.run(main)
