"""Compiled versus eager, beside NumPy, PyTorch and TensorFlow: funcgrad's main job.

  python -m experiments.compare [--workloads=muladd_sum,abs_loss] [--engines=...]
      [--backends=cpu,gpu] [--sizes=3x4,1000x1000] [--dtype=float32] [--min_run_time=0.2]
      [--baseline=jit] [--interleave=true] [--output_json=PATH] [--output_csv=PATH]
      [--output_jsonl=PATH] [--plot=PATH.png]
  python -m experiments.compare --function=MODULE:NAME --shapes=SHAPE[;SHAPE...] [--argnums=0,1]

Every engine's output is checked against a float64 reference before it is timed; engines are
timed in interleaved rounds and compared with --baseline round by round. The run exits 1 at the
end (after writing every output) if any row was wrong or failed.
"""

import dataclasses
import importlib
import math
import os
import sys

import jax
import numpy as np
from absl import flags

from funcgrad import compile_cache, peers, sharding
from funcgrad.bench import engines as engines_lib
from funcgrad.bench import report, runner, specs, speedups, workloads
from funcgrad.bench.machine import machine_info
from funcgrad.dtypes import canonical_dtype, needs_x64, resolve_dtype
from funcgrad.errors import UsageError
from funcgrad.experiments import _cli, _progress
from funcgrad.shapes import parse_shape, parse_shapes

_WORKLOADS = flags.DEFINE_string("workloads", "muladd_sum,abs_loss",
                                 f"Comma-separated: {', '.join(workloads.WORKLOADS)} (or all).")
_FUNCTION = flags.DEFINE_string(
    "function", None, "Time your own function instead: MODULE:NAME, importable from the current "
    "directory; needs --shapes. Rows carry workload=MODULE:NAME.")
_SHAPES = flags.DEFINE_string("shapes", None, "With --function: one shape per argument, "
                              "separated by ';' (e.g. '128x64;64' or 'scalar').")
_ARGNUMS = flags.DEFINE_string("argnums", "0", "With --function: the arguments to differentiate, "
                               "comma-separated (e.g. 0,1).")
_VALUE_AND_GRAD = flags.DEFINE_bool("value_and_grad", True, "With --function: time value and "
                                    "gradients (false: the function itself).")
_ENGINES = flags.DEFINE_string(
    "engines", "all", f"Comma-separated: {', '.join(engines_lib.ENGINES)}; 'all' = every engine "
    "whose framework is installed (the JAX engines for --function).")
_BACKENDS = flags.DEFINE_list("backends", [], "cpu, gpu (default: every backend present).")
_SKIP_UNAVAILABLE = flags.DEFINE_bool("skip_unavailable", False,
                                      "Skip requested backends that are absent instead of failing.")
_SIZES = flags.DEFINE_string("sizes", "3x4,1000x1000",
                             "Comma-separated NxD (2-D workloads) or N (1-D; NxD flattens to N*D).")
_DTYPE = flags.DEFINE_string("dtype", "float32",
                             "float32, bfloat16, float16, float64 (enables x64).")
_MIN_RUN_TIME = flags.DEFINE_float("min_run_time", 0.2, "Seconds of timed blocks per engine and "
                                   "case, in (0, 3600].")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the inputs (identical for every engine), of the "
                             "round order and of the bootstrap.", lower_bound=0)
_BASELINE = flags.DEFINE_string("baseline", None, "The engine every other is compared with "
                                "(default: jit when swept, else the first engine).")
_INTERLEAVE = flags.DEFINE_bool("interleave", True, "Time the engines of a case in interleaved "
                                "rounds (false: each engine's blocks back to back).")
_OUTPUT_JSON = flags.DEFINE_string("output_json", None,
                                   "Write {machine, results, speedups} JSON here.")
_OUTPUT_CSV = flags.DEFINE_string("output_csv", None, "Write one CSV row per result here.")
_OUTPUT_JSONL = flags.DEFINE_string("output_jsonl", None, "Append each row here as it finishes.")
_PLOT = flags.DEFINE_string("plot", None, "Write a log-log plot here (PNG; needs matplotlib).")
_ALLOCATOR = _cli.define_allocator_flag()
_PROGRESS = _progress.define_progress_flag()
_FIT_STEPS = flags.DEFINE_integer(
    "fit_steps", workloads.FIT_STEPS, "Adam steps per call of the fit_* workloads (learning rate "
    "0.01), in 1..100000.", lower_bound=1, upper_bound=100_000)
_DEVICES = flags.DEFINE_integer(
    "devices", None, "Spread the inputs of the JAX engines (eager, jit, jit_packed) over this many "
    "devices of each backend (a 1-D mesh).", lower_bound=1)
_MESH = flags.DEFINE_string("mesh", None, "A 2-D device mesh AxB instead (rows over A, columns "
                            "over B).")
_SIMULATE_CPU_DEVICES = flags.DEFINE_integer(
    "simulate_cpu_devices", None, "Give the CPU backend this many devices (set before JAX "
    "starts).", lower_bound=1)
_COMPILATION_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir", None, "Cache compiled programs here, in two tiers: JAX's "
    "persistent compilation cache (small functions included) and, under executables/, the jit "
    "engines' compiled executables, which a later run loads without tracing or lowering. Loading "
    "one trusts whoever can write this directory.")


def _engines(text: str, jax_only: bool) -> list[engines_lib.Engine]:
  if text.strip() == "all":
    pool = [engines_lib.ENGINES[n] for n in engines_lib.JAX_ENGINES] if jax_only else \
        list(engines_lib.ENGINES.values())
    found = [e for e in pool if e.available()]
    missing = [e.name for e in pool if not e.available()]
    if missing:
      print(f"note: skipping {', '.join(missing)}: {peers.PEERS_HINT}", file=sys.stderr)
    return found
  names = specs.parse_names(text, engines_lib.ENGINES, "engine", flag="--engines")
  chosen = [engines_lib.get_engine(n) for n in names]
  for engine in chosen:
    if not engine.available():
      raise UsageError(f"Engine {engine.name!r} in --engines needs {engine.requires}, which is "
                       f"not installed: {peers.PEERS_HINT}.")
  return chosen


def import_function(spec: str):
  """Imports MODULE:NAME (the current directory importable), refusing what is not a function.

  Raises:
    UsageError: naming the function and what is wrong.
  """
  module_name, sep, attr = spec.partition(":")
  if not sep or not module_name or not attr:
    raise UsageError(f"Invalid --function={spec!r}: expected MODULE:NAME, e.g. mymodel:loss.")
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  try:
    module = importlib.import_module(module_name)
  except Exception as e:  # noqa: BLE001 - any failure to import is the user's module's
    raise UsageError(f"--function={spec}: cannot import module {module_name!r} "
                     f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).") from None
  fn = module
  for part in attr.split("."):
    if not hasattr(fn, part):
      raise UsageError(f"--function={spec}: module {module_name!r} has no attribute {attr!r}.")
    fn = getattr(fn, part)
  if not callable(fn):
    raise UsageError(f"--function={spec} is not callable (it is a {type(fn).__name__}).")
  return fn


def _function_workload(dtype: np.dtype) -> tuple[workloads.Workload, list[tuple[int, ...]]]:
  """The --function workload and its one 'size' (the first argument's shape)."""
  from funcgrad.bench.comparison import check_function  # noqa: PLC0415

  if flags.FLAGS["sizes"].present:
    raise UsageError("--sizes does not combine with --function: give one shape per argument "
                     "with --shapes.")
  if not _SHAPES.value:
    raise UsageError(f"--function={_FUNCTION.value} needs --shapes, one shape per argument "
                     "separated by ';' (e.g. --shapes='128x64;64').")
  shapes = parse_shapes(_SHAPES.value, "--shapes", sep=";", scalar=True, unique=False)
  argnums = tuple(int(a) for a in specs.parse_ints(_ARGNUMS.value, "--argnums"))
  fn = import_function(_FUNCTION.value)
  runner.check_shape_memory(shapes, dtype)

  def make_inputs(shape, dtype, seed):
    del shape
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s, np.float32).astype(dtype) for s in shapes)

  examples = make_inputs(None, dtype, 0)
  check_function(fn, examples, argnums, _VALUE_AND_GRAD.value, f"--function={_FUNCTION.value}")
  workload = workloads.user_workload(fn, _FUNCTION.value, argnums, _VALUE_AND_GRAD.value,
                                     make_inputs=make_inputs, shape_for=lambda size: shapes[0])
  return [workload], [shapes[0]]


def _workloads(dtype: np.dtype):
  if _FUNCTION.value:
    return _function_workload(dtype)
  names = specs.parse_names(_WORKLOADS.value, workloads.WORKLOADS, "workload", flag="--workloads")
  chosen = [workloads.get_workload(n) for n in names]
  if _FIT_STEPS.value != workloads.FIT_STEPS:
    chosen = [workloads.fit_workload(w.name.removeprefix("fit_"), _FIT_STEPS.value)
              if w.kind == "train" and w.name.startswith("fit_") else w for w in chosen]
  return chosen, specs.parse_sizes(_SIZES.value)


def _config() -> runner.SweepConfig:
  """The sweep; every bad flag fails here, before any measurement."""
  min_run_time = _MIN_RUN_TIME.value
  if not (math.isfinite(min_run_time) and 0 < min_run_time <= 3600):
    raise UsageError(f"Invalid --min_run_time={min_run_time}: expected a number of seconds in "
                     "(0, 3600].")
  dtype = canonical_dtype(_DTYPE.value)
  if dtype.kind != "f" and dtype.name != "bfloat16":
    raise UsageError(f"--dtype={_DTYPE.value!r} is not a float dtype; gradients need one "
                     "(float32, bfloat16, float16, float64).")
  if needs_x64(dtype):
    jax.config.update("jax_enable_x64", True)
  chosen, sizes = _workloads(resolve_dtype(dtype))
  config = runner.SweepConfig(
      mesh_shape=_mesh_shape(), workloads=chosen,
      engines=[],  # below, once everything cheap to check has been checked
      backends=runner.resolve_backends(_BACKENDS.value, _SKIP_UNAVAILABLE.value),
      sizes=sizes, dtype=resolve_dtype(dtype), min_run_time=min_run_time, seed=_SEED.value,
      interleave=_INTERLEAVE.value, cache_dir=compile_cache.executable_dir(
          _COMPILATION_CACHE_DIR.value) if _COMPILATION_CACHE_DIR.value else None)
  config.cases()  # every size fits every workload
  runner.check_mesh(config)
  if _PLOT.value:
    report.check_plot_available()
  # Last: finding out which peers are installed imports them (seconds for TensorFlow).
  config = dataclasses.replace(config, engines=_engines(_ENGINES.value, bool(_FUNCTION.value)))
  runner.check_fits(config)
  names = [e.name for e in config.engines]
  if _BASELINE.value is not None:
    speedups.check_baseline(_BASELINE.value, names)
  return config


def _mesh_shape() -> tuple[int, ...] | None:
  if _MESH.value is None:
    return None if _DEVICES.value is None else (_DEVICES.value,)
  shape = parse_shape(_MESH.value, "--mesh", max_rank=2)
  if _DEVICES.value is not None and _DEVICES.value != math.prod(shape):
    raise UsageError(f"--devices={_DEVICES.value} disagrees with --mesh={_MESH.value} "
                     f"({math.prod(shape)} devices).")
  return shape


def main(argv: list[str]) -> int:
  del argv
  _cli.check_outputs({"--output_json": _OUTPUT_JSON.value, "--output_csv": _OUTPUT_CSV.value,
                     "--output_jsonl": _OUTPUT_JSONL.value, "--plot": _PLOT.value},
                    streamed="--output_jsonl")  # before any work; Ctrl-C says what was kept
  _progress.announce("compare: importing the engines and measuring the copy bandwidth, then "
                     "each case: compile and check every engine, time them", _PROGRESS.value)
  _cli.restart_as_asked(_ALLOCATOR.value)  # first: the allocator is chosen at process start
  if _SIMULATE_CPU_DEVICES.value:
    sharding.set_cpu_device_count(_SIMULATE_CPU_DEVICES.value)  # before JAX starts its backends
  config = _config()
  names = [e.name for e in config.engines]
  baseline = _BASELINE.value or speedups.default_baseline(names)
  if _COMPILATION_CACHE_DIR.value:
    compile_cache.enable_persistent_cache(_COMPILATION_CACHE_DIR.value)
  jsonl = report.JsonlWriter(_OUTPUT_JSONL.value) if _OUTPUT_JSONL.value else None
  done: list[runner.Result] = []
  bar = _progress.Progress(_PROGRESS.value)

  def on_result(result: runner.Result, index: int, total: int) -> None:
    done.append(result)
    if jsonl:
      jsonl.write(result)
    bar.done(_progress.row_line(result, index, total))

  note = runner.long_run_note(config)
  if note:
    print(note, file=sys.stderr, flush=True)
  rooflines = runner.measure_rooflines(config.backends)
  bar.start(config.rows())
  try:
    runner.run_sweep(config, on_result, rooflines, progress=bar.runner_progress)
  finally:
    bar.close()
    if jsonl:
      jsonl.close()
  found = speedups.speedups(done, baseline, config.seed) if baseline else []
  if _OUTPUT_JSON.value:
    machine = {**machine_info(), "compilation_cache_dir": _COMPILATION_CACHE_DIR.value,
               "rooflines": {b: r.to_dict() for b, r in rooflines.items()},
               **(rooflines["cpu"].to_dict() if "cpu" in rooflines else {})}
    report.write_json(_OUTPUT_JSON.value, machine, done, found)
  if _OUTPUT_CSV.value:
    report.write_csv(_OUTPUT_CSV.value, done)
  if _PLOT.value:
    report.plot(_PLOT.value, done, found)
  print(report.render_compare(done))
  if found:
    print()
    print(report.render_speedups(found))
  return 0 if all(r.status in (runner.OK, runner.NOT_IMPLEMENTED) for r in done) else 1


if __name__ == "__main__":
  _cli.run(main)
