"""Run a graph written by experiments.export_graph, without importing the code it came from.

  python -m experiments.run_exported --in=PATH [--shape=3x4] [--seed=0] [--dtype=float32]

This process imports JAX, NumPy and `funcgrad.exporting` only: never `funcgrad.grads` or the
runner's workloads. The outputs are checked against NumPy formulas written here, independently,
as a consumer in another language would check them.
"""

import math
import sys

import jax
import numpy as np
from absl import flags

from funcgrad import exporting, files, limits
from funcgrad.errors import UsageError
from funcgrad.experiments import _cli

_IN = flags.DEFINE_string("in", None, "The exported file.", required=True)
_SHAPE = flags.DEFINE_string("shape", None, "Input shape (default: the one recorded at export).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random inputs.", lower_bound=0,
                             upper_bound=_cli.MAX_SEED)
_DTYPE = flags.DEFINE_string("dtype", None, "Input dtype (default: the exported one).")


def _muladd_sum_reference(x, y, z):
  return (np.sum(x * y + z), y, x, np.ones_like(z))


def _abs_loss_reference(x, target):
  d = 2 * x**2 + 3 - target
  return (np.sum(np.abs(d)), 4 * x * np.sign(d))


# Workload -> (its number of inputs, its NumPy reference).
REFERENCES = {"muladd_sum": (3, _muladd_sum_reference), "abs_loss": (2, _abs_loss_reference)}
OUTPUTS = {"muladd_sum": 4, "abs_loss": 2}  # the value and the gradients it has


def _tolerance(dtype: np.dtype) -> float:
  """rtol = atol of the check: 1e-4 for float32 and wider, a few units in the last place of a
  16-bit float (bfloat16 keeps 8 bits of mantissa: a correct result differs by ~1e-2)."""
  return max(1e-4, 8 * float(jax.numpy.finfo(dtype).eps))


def _check_workload(exported, header) -> None:
  arity = REFERENCES.get(header["workload"], (None,))[0]
  if arity is not None and arity != len(exported.in_avals):
    raise UsageError(f"{_IN.value!r} has a bad header: field 'workload' says "
                     f"{header['workload']!r} ({arity} inputs) but the graph takes "
                     f"{len(exported.in_avals)}.")
  want = OUTPUTS.get(header["workload"])
  if want is not None and len(exported.out_avals) != want:
    raise UsageError(f"{_IN.value!r} holds a graph with {len(exported.out_avals)} outputs; "
                     f"{header['workload']!r} value+grads has {want} (the value and "
                     f"{want - 1} gradient{'s' if want > 2 else ''}).")
  exporting.check_float_inputs(_IN.value, exported)


def _inputs(exported, header) -> list[np.ndarray]:
  shape = (tuple(exporting.parse_shape(_SHAPE.value)) if _SHAPE.value
           else tuple(header["example_shape"]))
  if not all(isinstance(d, int) for d in shape):
    raise UsageError(f"--shape={_SHAPE.value!r} must be concrete, e.g. 3x4.")
  dtype = np.dtype(_DTYPE.value) if _DTYPE.value else np.dtype(exported.in_avals[0].dtype)
  # The inputs and their float64 copies, the outputs (bounded before anything is allocated:
  # a graph can return far more than it takes) and their float64 copies and references.
  n = len(exported.in_avals)
  exporting.check_inputs(exported, [jax.ShapeDtypeStruct(shape, dtype)] * n)
  out = exporting.output_specs(_IN.value, exported, [jax.ShapeDtypeStruct(shape, dtype)] * n)
  out_bytes = sum(math.prod(o.shape) * (np.dtype(o.dtype).itemsize + 16) for o in out)
  shapes = ", ".join("x".join(map(str, o.shape)) or "scalar" for o in out)[:200]
  limits.check_memory(limits.array_bytes(shape, dtype, n) + limits.array_bytes(
      shape, np.float64, n) + out_bytes, f"--shape={'x'.join(map(str, shape))} (with the "
      f"graph's {len(out)} outputs of {shapes})")
  rng = np.random.default_rng(_SEED.value)
  arrays = [rng.standard_normal(shape).astype(dtype) for _ in exported.in_avals]
  exporting.check_inputs(exported, arrays)
  return arrays


def main(argv: list[str]) -> int:
  del argv
  exported, header = exporting.read_artifact(_IN.value)
  exporting.check_platform(exported)
  _check_workload(exported, header)
  try:
    arrays = _inputs(exported, header)
  except TypeError as e:  # np.dtype('float128x') and friends
    raise UsageError(f"Invalid --dtype={_DTYPE.value!r}: {e}") from None
  outputs = exporting.call(_IN.value, exported, arrays)
  workload = files.printable(header["workload"])  # a crafted header may hold terminal escapes
  print(f"{workload} value+grads from {_IN.value} on {jax.default_backend()}, inputs "
        f"{len(arrays)} x {arrays[0].dtype}{list(arrays[0].shape)} (seed {_SEED.value})")
  for name, out in zip(["value", *(f"grad {i}" for i in range(len(outputs) - 1))], outputs,
                       strict=True):
    print(f"{name}:\n{out}")
  if header["workload"] not in REFERENCES:
    print(f"no NumPy reference for {workload!r}: outputs not checked")
    return 0
  _, reference = REFERENCES[header["workload"]]
  want = reference(*(a.astype(np.float64) for a in arrays))
  tol = _tolerance(arrays[0].dtype)
  ok = all(np.allclose(np.asarray(o, np.float64), w, rtol=tol, atol=tol * max(1.0, np.max(
      np.abs(w)))) for o, w in zip(outputs, want, strict=True))
  print(f"matches the NumPy reference (rtol {tol:.2g} for {arrays[0].dtype})" if ok
        else f"DIFFERS from the NumPy reference (rtol {tol:.2g} for {arrays[0].dtype})")
  leaked = sorted(m for m in ("funcgrad.grads", "funcgrad.bench.workloads") if m in sys.modules)
  if leaked:
    print(f"imported the workload code after all: {leaked}")
    return 1
  return 0 if ok else 1


if __name__ == "__main__":
  _cli.run(main)
