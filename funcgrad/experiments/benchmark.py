"""The headline performance targets in one run, each measured ratio beside its goal.

  python -m experiments.benchmark [--allocator=auto] [--output_json=PATH] [--output_markdown=PATH]
      [--targets=large,small,adam,cache,harness,models] [--large_size=4000x4000] [--steps=1000]
      [--strict]

Every engine runs under the same allocator in this one process (restarted with LD_PRELOAD when
needed). Prints a Markdown table ready for docs/PERFORMANCE.md; exits 1 if a row was wrong or
failed, and, with --strict, if any target missed (by default a MISS is a result, not an error).
"""

import sys

import numpy as np
from absl import flags

from funcgrad import limits, outputs
from funcgrad.bench import (
    headline,
    interference,
    plan,
    report,
    runner,
    stability,
    targets,
    workloads,
)
from funcgrad.bench.machine import machine_document
from funcgrad.errors import UsageError
from funcgrad.experiments import _cli, _flags
from funcgrad.shapes import parse_names, parse_shape, parse_shapes

_ALLOCATOR = _flags.define_allocator()
_TARGETS = flags.DEFINE_string("targets", "all",
                               f"Comma-separated: {', '.join(headline.GROUPS)} (or all).")
_LARGE_SIZE = flags.DEFINE_string("large_size", "4000x4000", "Size of the bandwidth target.")
_STEPS = flags.DEFINE_integer("steps", 1000, "Adam steps of the loop target.", lower_bound=1,
                              upper_bound=100_000)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Fresh-process rounds of the cache target and "
                                "alternations of the harness-truth target; their medians are "
                                "compared.", lower_bound=1, upper_bound=100)
_MIN_RUN_TIME = _flags.define_min_run_time(0.3, "per row")
_OUTPUT_JSON = _flags.define_output_json("{machine, targets}")
_OUTPUT_MARKDOWN = flags.DEFINE_string("output_markdown", None, "Write the Markdown here.")
_MLP_SIZE = flags.DEFINE_string("mlp_size", "128x512", "BATCHxWIDTH of the mlp speed targets.")
_ATTENTION_SIZE = flags.DEFINE_string("attention_size", "256x256",
                                      "SEQxDIM of the attention speed targets.")
_MLP_PEAK_SIZE = flags.DEFINE_string("mlp_peak_size", "1024x2048",
                                     "BATCHxWIDTH of the mlp matmul-peak target.")
_PRECISION = _flags.define_precision_flags(stability.ANSWER_PRECISION)
_ANSWER_SIZES = flags.DEFINE_string(
    "answer_sizes", plan.DEFAULT_SIZES, "Sizes of the answers group's back-to-back compare sweeps "
    "(experiments.compare's default sizes).")
_ANSWER_ENGINES = flags.DEFINE_string(
    "answer_engines", "all", "Engines of the answers group's back-to-back compare sweeps, jit "
    "among them (all: experiments.compare's default engines: "
    f"{', '.join(headline.COMPARE_ENGINES)}).")
_MODEL_ENGINES = flags.DEFINE_string(
    "model_engines", "all", "Engines of the model speed targets, jit and eager among them (all: "
    f"{', '.join(headline.MODEL_ENGINES)}; the matmul-peak target times jit alone).")
_STRICT = flags.DEFINE_bool("strict", False, "Exit 1 when any target misses (default: a MISS is "
                            "a result, and only a wrong or failed row exits non-zero).")


def _engine_names(holder: flags.FlagHolder[str], allowed, required: tuple[str, ...],
                  why: str) -> tuple[str, ...]:
  """An engine-list flag's names (`all`: every one of `allowed`), refused in one line unless it
  names each of `required`."""
  names = tuple(parse_names(holder.value, allowed, "engine", flag=f"--{holder.name}"))
  if not set(required) <= set(names):
    raise UsageError(f"--{holder.name}={holder.value!r} must include {' and '.join(required)}: "
                     f"{why}")
  return names


def _model_cases(engine_names: tuple[str, ...]
                 ) -> tuple[tuple[str, tuple[int, ...], tuple[str, ...]], ...]:
  """(workload, size, engines) of the model targets; the peak case times jit alone."""
  cases = [("mlp", _MLP_SIZE, engine_names),
           ("attention", _ATTENTION_SIZE, engine_names),
           ("mlp", _MLP_PEAK_SIZE, ("jit",))]
  out = []
  for name, flag, engine_names in cases:
    size = parse_shape(flag.value, f"--{flag.name}", max_rank=2)
    out.append((name, workloads.get_workload(name).check_size(size), engine_names))
  return tuple(out)


def _log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def _summary(machine: dict) -> str:
  peers = ", ".join(f"{k} {v}" for k, v in machine["peers"].items()) or "no peers"
  return (f"Machine: {machine['machine']['cpu_model']}, {machine['machine']['cpu_count']} cores; "
          f"Python {machine['python']}, jax {machine['packages']['jax']}, "
          f"numpy {machine['packages']['numpy']}, {peers}; allocator {machine['allocator']}; "
          f"{machine['thread_pools']} thread pools; isolation {machine['isolation']}."
          f"{_busy(machine['interference'])}")


def _busy(totals: dict) -> str:
  """What else ran during the timed blocks, over the whole run."""
  if totals.get("other_processes") is None:
    return ""
  return (f" During the timed blocks, of the machine's {totals['cpus']} CPUs: other processes "
          f"{100 * totals['other_processes']:.0f}%, this run's other engines "
          f"{100 * totals['other_engines']:.1f}%, steal {100 * totals['steal']:.0f}%.")


def main(argv: list[str]) -> int:
  del argv
  _cli.check_outputs({"--output_json": _OUTPUT_JSON.value,
                     "--output_markdown": _OUTPUT_MARKDOWN.value})
  _cli.restart_as_asked(_ALLOCATOR.value)
  groups = parse_names(_TARGETS.value, headline.GROUPS, "target group", flag="--targets")
  large = parse_shape(_LARGE_SIZE.value, "--large_size", max_rank=2)
  if len(large) != 2:
    raise UsageError(f"--large_size={_LARGE_SIZE.value!r} must be NxD.")
  if any("large" in headline.GROUPS[g].sweeps for g in groups):
    # Three inputs and four outputs per engine alive together, and the float64 reference's.
    limits.check_memory(limits.array_bytes(large, np.float32, 7 * len(headline.LARGE_ENGINES))
                        + limits.array_bytes(large, np.float64, 7),
                        f"--large_size={_LARGE_SIZE.value}")
  timing = _PRECISION.timing(_MIN_RUN_TIME.value, 0)  # checks the flags, one line each
  answer_engines = _engine_names(_ANSWER_ENGINES, headline.COMPARE_ENGINES, ("jit",),
                                 "the answers group's targets are speedups of jit over the other "
                                 "engines.")
  model_engines = _engine_names(_MODEL_ENGINES, headline.MODEL_ENGINES, ("jit", "eager"),
                                "the model targets are eager / jit and the fastest other engine "
                                "/ jit.")
  models = _model_cases(model_engines) if set(groups) & {"models", "answers"} else ()
  settings = headline.Settings(large, _STEPS.value, _REPEATS.value, _MIN_RUN_TIME.value, models,
                               timing.isolation, timing.estimator, timing.precision,
                               _PRECISION.max_run_time.value,
                               tuple(parse_shapes(_ANSWER_SIZES.value, "--answer_sizes",
                                                  max_rank=2)), answer_engines)
  session = headline.Session(settings, log=_log)

  def machine() -> dict:
    return machine_document(isolation=settings.isolation, interference=interference.run_totals(
        session.rows + session.again, settings.isolation))

  def markdown(found: list[targets.Target], complete: bool = True) -> str:
    text = f"{_summary(machine())}\n\n{targets.render(found)}\n"
    if not complete:
      text += "\nInterrupted: the targets above are those measured before the run stopped.\n"
    if session.rows:
      table = report.render_compare(session.rows)
      text += f"\nThe rows behind them (first run):\n\n```text\n{table}\n```\n"
    return text

  run = outputs.RunOutputs(
      {"--output_json": (_OUTPUT_JSON.value,
                         lambda found, complete: targets.json_document(machine(), found,
                                                                       complete)),
       "--output_markdown": (_OUTPUT_MARKDOWN.value, markdown)}, noun="target")
  _cli.on_interrupt(run.interrupted)  # Ctrl-C, SIGTERM, SIGHUP: every finished target is kept
  results = headline.measure(groups, session, add=run.add)
  print(markdown(results))
  run.finish()
  rows_ok = all(r.status in (runner.OK, runner.NOT_IMPLEMENTED)
                for r in session.rows + session.again)
  return run.report_failures(targets.exit_status(rows_ok, results, _STRICT.value))


if __name__ == "__main__":
  _cli.run(main)
