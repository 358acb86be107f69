"""Write value+grads of a workload as a `jax.export` file that runs without funcgrad's source.

  python -m experiments.export_graph --workload=muladd_sum --shape=3x4 --out=PATH
  python -m experiments.export_graph --workload=muladd_sum --shape=N,D --out=PATH  # any shape

Run it back with `python -m experiments.run_exported --in=PATH`.
"""

from absl import flags

from funcgrad import exporting
from funcgrad.bench import workloads
from funcgrad.dtypes import resolve_dtype
from funcgrad.errors import UsageError
from funcgrad.experiments import _cli
from funcgrad.shapes import parse_names

_WORKLOAD = flags.DEFINE_enum("workload", "muladd_sum", list(workloads.TUTORIAL_WORKLOADS),
                              "Which value+grads function to export.")
_SHAPE = flags.DEFINE_string("shape", "3x4", "3x4 (fixed) or N,D (symbolic: one file, every shape);"
                             " 1-D workloads: 12 or N.")
_OUT = flags.DEFINE_string("out", None, "Where to write the file.", required=True)
_PLATFORMS = flags.DEFINE_list("platforms", ["cpu", "cuda"], "Lowering platforms: cpu, cuda, rocm.")
_DTYPE = flags.DEFINE_string("dtype", "float32", "Input dtype.")

_VALID_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def main(argv: list[str]) -> None:
  del argv
  _cli.check_outputs({"--out": _OUT.value})
  workload = workloads.get_workload(_WORKLOAD.value)
  shape = exporting.parse_shape(_SHAPE.value)
  if len(shape) != workload.ndim:
    example = "3x4 or N,D" if workload.ndim == 2 else "12 or N"
    raise UsageError(f"--shape={_SHAPE.value!r} has {len(shape)} dimension(s); {workload.name} "
                     f"takes {workload.ndim} (e.g. {example}).")
  platforms = parse_names(",".join(_PLATFORMS.value), _VALID_PLATFORMS, "platform",
                               flag="--platforms")
  dtype = resolve_dtype(_DTYPE.value)
  if dtype.kind != "f" and dtype.name != "bfloat16":
    raise UsageError(f"--dtype={_DTYPE.value!r} is not a float dtype; value+grads needs one "
                     "(float32, bfloat16, float16, float64).")
  exported = exporting.export_function(
      workload.jax_value_and_grads(), exporting.input_specs(shape, dtype, workload.n_inputs),
      platforms)
  example = (3, 4) if workload.ndim == 2 else (12,)  # what run_exported feeds a symbolic graph
  size = exporting.write_artifact(_OUT.value, exported, {
      "workload": workload.name, "shape": list(map(str, shape)), "dtype": dtype.name,
      "example_shape": [d if isinstance(d, int) else e
                        for d, e in zip(shape, example, strict=True)],
  })
  print(f"wrote {_OUT.value}: {size} bytes, {workload.name} value+grads, inputs "
        f"{workload.n_inputs} x {dtype.name}[{','.join(map(str, shape))}], platforms "
        f"{', '.join(exported.platforms)}")


if __name__ == "__main__":
  _cli.run(main)
