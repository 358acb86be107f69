"""The static graph, four ways: jaxpr, StableHLO, optimised HLO, and the compiler's cost.

  python -m experiments.graph --workload=muladd_sum --shape=3x4 --show=jaxpr|stablehlo|hlo|cost
      [--source_metadata]
"""

import jax
from absl import flags

from funcgrad import graphs
from funcgrad.bench import workloads
from funcgrad.dtypes import resolve_dtype
from funcgrad.experiments import _cli
from funcgrad.shapes import parse_shape

_WORKLOAD = flags.DEFINE_enum("workload", "muladd_sum", list(workloads.TUTORIAL_WORKLOADS),
                              "Which value+grads function to show.")
_SHAPE = flags.DEFINE_string("shape", "3x4", "Input shape: NxD (or N for 1-D workloads).")
_SHOW = flags.DEFINE_enum("show", "jaxpr", ["jaxpr", "stablehlo", "hlo", "cost"], "What to show.")
_DTYPE = flags.DEFINE_string("dtype", "float32", "Input dtype.")
_METADATA = flags.DEFINE_bool(
    "source_metadata", False, "With --show=hlo: keep the Python source locations XLA records "
    "(file, function and line of each instruction; by default only the computations print).")


def _format_cost(cost: dict) -> str:
  lines = []
  for section, values in cost.items():
    if values is None:
      lines.append(f"{section}: not provided by the {jax.default_backend()} backend")
      continue
    lines.append(f"{section}:")
    lines += [f"  {key:<36} {value:g}" for key, value in sorted(values.items())]
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  del argv
  workload = workloads.get_workload(_WORKLOAD.value)
  size = parse_shape(_SHAPE.value, "--shape", max_rank=2)
  shape = workload.shape_for(size)
  args = [jax.ShapeDtypeStruct(shape, resolve_dtype(_DTYPE.value))] * workload.n_inputs
  fn = workload.jax_value_and_grads()
  if _SHOW.value == "jaxpr":
    print(graphs.jaxpr_text(fn, *args))
  elif _SHOW.value == "stablehlo":
    print(graphs.stablehlo_text(fn, *args))
  elif _SHOW.value == "hlo":
    text = graphs.compiled_hlo_text(fn, *args, source_metadata=_METADATA.value)
    print(text.rstrip())
    print(f"# {graphs.count_fusions(text)} fusion(s) on {jax.default_backend()}")
  else:
    print(_format_cost(graphs.cost_analysis(fn, *args)))


if __name__ == "__main__":
  _cli.run(main)
