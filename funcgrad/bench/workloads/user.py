"""A user's function as a workload: `funcgrad.compare` and `experiments.compare --function`.

Its reference is a float64 re-run of the function, or the eager output where it cannot run in
float64; only the JAX engines implement it (it has no peer programs).
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from funcgrad.bench.workloads.model import Workload, standard_normal_inputs
from funcgrad.errors import UsageError
from funcgrad.shapes import Shape, format_shape


def user_workload(fn: Callable[..., Any], name: str, argnums: tuple[int, ...] = (0,),
                  value_and_grad: bool = True,
                  make_inputs: Callable[[Shape, Any, int], tuple[Any, ...]] | None = None,
                  shape_for: Callable[[Shape], Shape] | None = None) -> Workload:
  """Any JAX-traceable function of array pytrees as a workload (engines: the JAX ones)."""
  return Workload(
      name=name, description=f"{'value + grads of ' if value_and_grad else ''}{name}", fn=fn,
      make_inputs=make_inputs or standard_normal_inputs(1),
      kind="value_and_grad" if value_and_grad else "value", argnums=tuple(argnums),
      shape_for=shape_for or (lambda size: size), tolerance_factor=10.0)


def example_workload(fn: Callable[..., Any], name: str, example_args: Sequence[Any],
                     argnums: tuple[int, ...], value_and_grad: bool) -> Workload:
  """`fn` on the caller's own arguments (copied to the host once): every engine gets them."""
  host_args = tuple(jax.tree.map(np.asarray, a) for a in example_args)
  return user_workload(fn, name, argnums, value_and_grad,
                       make_inputs=lambda shape, dtype, seed: host_args)


def shaped_workload(fn: Callable[..., Any], name: str, shapes: Sequence[Shape],
                    argnums: tuple[int, ...], value_and_grad: bool) -> Workload:
  """`fn` on standard-normal arguments of `shapes` (one per argument) drawn from the seed; its
  one size is the first argument's shape."""
  def make_inputs(shape, dtype, seed):
    del shape
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s, np.float32).astype(dtype) for s in shapes)

  return user_workload(fn, name, argnums, value_and_grad, make_inputs=make_inputs,
                       shape_for=lambda size: tuple(shapes[0]))


def first_float_dtype(args: Sequence[Any]) -> np.dtype:
  """The dtype of the first floating-point leaf of `args` (float32 when there is none)."""
  return next((np.asarray(leaf).dtype for leaf in jax.tree.leaves(args)
               if np.issubdtype(np.asarray(leaf).dtype, np.inexact)), np.dtype(np.float32))


def check_function(fn: Callable[..., Any], args: Sequence[Any], argnums: tuple[int, ...],
                   value_and_grad: bool, name: str) -> None:
  """Refuses, with one line naming the function, what cannot be compared.

  Raises:
    UsageError: `fn` is not callable, fails to trace, has integer inputs at `argnums`, or returns
      a non-scalar when gradients are asked for.
  """
  if not callable(fn):
    raise UsageError(f"{name} is not callable (it is a {type(fn).__name__}).")
  for i in argnums:
    if not -len(args) <= i < len(args):
      raise UsageError(f"argnums {i} is out of range for {name}, which is given {len(args)} "
                       "arguments.")
    for leaf in jax.tree.leaves(args[i]):
      if not np.issubdtype(np.asarray(leaf).dtype, np.inexact) and \
          np.asarray(leaf).dtype.name != "bfloat16":
        raise UsageError(f"Argument {i} of {name} has dtype {np.asarray(leaf).dtype}: gradients "
                         "need floating-point inputs at argnums.")
  try:
    out = jax.eval_shape(fn, *args)
  except Exception as e:  # noqa: BLE001 - whatever tracing raised, the user's function failed
    raise UsageError(f"{name} fails to trace on inputs of shapes "
                     f"{[format_shape(np.shape(a)) for a in args]}: "
                     f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
  if value_and_grad and not (hasattr(out, "shape") and out.shape == ()):
    raise UsageError(f"{name} returns {jax.tree.map(lambda a: a.shape, out)}, not a scalar: "
                     "gradients need a scalar output (or pass value_and_grad=False).")
