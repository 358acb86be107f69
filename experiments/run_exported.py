"""Run a graph written by experiments.export_graph, without importing the code it came from.

  python -m experiments.run_exported --in=PATH [--shape=3x4] [--seed=0] [--dtype=float32]

This process imports JAX, NumPy and `funcgrad.exporting` only: never `funcgrad.grads` or the
runner's workloads. The outputs are checked against NumPy formulas written here, independently,
as a consumer in another language would check them.
"""

import sys

import jax
import numpy as np
from absl import flags

from experiments import _cli
from funcgrad import exporting
from funcgrad.errors import UsageError

_IN = flags.DEFINE_string("in", None, "The exported file.", required=True)
_SHAPE = flags.DEFINE_string("shape", None, "Input shape (default: the one recorded at export).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random inputs.")
_DTYPE = flags.DEFINE_string("dtype", None, "Input dtype (default: the exported one).")


def _muladd_sum_reference(x, y, z):
  return (np.sum(x * y + z), y, x, np.ones_like(z))


def _abs_loss_reference(x, target):
  d = 2 * x**2 + 3 - target
  return (np.sum(np.abs(d)), 4 * x * np.sign(d))


REFERENCES = {"muladd_sum": _muladd_sum_reference, "abs_loss": _abs_loss_reference}


def _inputs(exported, header) -> list[np.ndarray]:
  shape = (tuple(exporting.parse_shape(_SHAPE.value)) if _SHAPE.value
           else tuple(header["example_shape"]))
  if not all(isinstance(d, int) for d in shape):
    raise UsageError(f"--shape={_SHAPE.value!r} must be concrete, e.g. 3x4.")
  dtype = np.dtype(_DTYPE.value) if _DTYPE.value else np.dtype(exported.in_avals[0].dtype)
  rng = np.random.default_rng(_SEED.value)
  arrays = [rng.standard_normal(shape).astype(dtype) for _ in exported.in_avals]
  exporting.check_inputs(exported, arrays)
  return arrays


def main(argv: list[str]) -> int:
  del argv
  exported, header = exporting.read_artifact(_IN.value)
  exporting.check_platform(exported)
  try:
    arrays = _inputs(exported, header)
  except TypeError as e:  # np.dtype('float128x') and friends
    raise UsageError(f"Invalid --dtype={_DTYPE.value!r}: {e}") from None
  outputs = [np.asarray(o) for o in jax.tree.leaves(exported.call(*arrays))]
  print(f"{header['workload']} value+grads from {_IN.value} on {jax.default_backend()}, inputs "
        f"{len(arrays)} x {arrays[0].dtype}{list(arrays[0].shape)} (seed {_SEED.value})")
  for name, out in zip(["value", *(f"grad {i}" for i in range(len(outputs) - 1))], outputs,
                       strict=True):
    print(f"{name}:\n{out}")
  reference = REFERENCES.get(header["workload"])
  if reference is None:
    print(f"no NumPy reference for {header['workload']!r}: outputs not checked")
    return 0
  want = reference(*(a.astype(np.float64) for a in arrays))
  ok = all(np.allclose(o, w, rtol=1e-4, atol=1e-4) for o, w in zip(outputs, want, strict=True))
  print("matches the NumPy reference" if ok else "DIFFERS from the NumPy reference")
  leaked = sorted(m for m in ("funcgrad.grads", "funcgrad.bench.workloads") if m in sys.modules)
  if leaked:
    print(f"imported the workload code after all: {leaked}")
    return 1
  return 0 if ok else 1


if __name__ == "__main__":
  _cli.run(main)
