"""What the runner times: value + gradients of a loss, with inputs from a seed and a reference.

A `Workload` owns everything that does not depend on the engine: how to make inputs from one seed
(identical for every engine), the loss written once against a tiny array-namespace (`ops.sum`,
`ops.abs`) so every framework runs the same expression, the hand-written NumPy backprop, the
float64 NumPy reference with the scale each output's error is measured against, and the bytes any
implementation must move at minimum (each input read once, each output written once).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from funcgrad import grads

Outputs = tuple[np.ndarray, ...]  # (value, grad_1, grad_2, ...)


@dataclasses.dataclass(frozen=True)
class Workload:
  """A loss to differentiate.

  Attributes:
    name: the flag value ('muladd_sum').
    description: one line for tables.
    ndim: 2 for NxD inputs, 1 for N.
    n_inputs: how many input arrays.
    argnums: which inputs are differentiated.
    loss: `loss(ops, *inputs)` with `ops` providing `sum` and `abs` (jnp, torch, or a TF shim).
    jax_loss: the public funcgrad function the JAX engines differentiate.
    numpy_value_and_grads: hand-written NumPy `(value, grads)`.
    reference: float64 `(outputs, scales)`; each output's error is divided by its scale.
  """

  name: str
  description: str
  ndim: int
  n_inputs: int
  argnums: tuple[int, ...]
  loss: Callable[..., Any]
  jax_loss: Callable[..., Any]
  numpy_value_and_grads: Callable[..., Any]
  reference: Callable[..., tuple[Outputs, tuple[float, ...]]]

  def shape_for(self, size: tuple[int, ...]) -> tuple[int, ...]:
    """The input shape for a requested size: NxD flattens to N*D for 1-D; N is Nx1 for 2-D."""
    if self.ndim == 1:
      return (int(np.prod(size)),)
    return size if len(size) == 2 else (size[0], 1)

  def make_inputs(self, shape: tuple[int, ...], dtype: Any, seed: int) -> tuple[np.ndarray, ...]:
    """Standard-normal inputs from `seed`: the same seed gives every engine the same numbers."""
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape, np.float32).astype(dtype) for _ in range(self.n_inputs))

  def bytes_moved(self, shape: tuple[int, ...], itemsize: int) -> int:
    """The minimum bytes any implementation moves: inputs read once, outputs written once."""
    elements = int(np.prod(shape))
    return (self.n_inputs + len(self.argnums)) * elements * itemsize + itemsize

  def jax_value_and_grads(self) -> Callable[..., Any]:
    """`jax.value_and_grad` of the public JAX loss with respect to `argnums`."""
    return jax.value_and_grad(self.jax_loss, argnums=self.argnums)

  def flat_numpy(self, *inputs: np.ndarray) -> Outputs:
    """The hand-written NumPy implementation, flattened to `(value, *grads)`."""
    value, grads_ = self.numpy_value_and_grads(*inputs)
    grads_ = grads_ if isinstance(grads_, tuple) else (grads_,)
    return (np.asarray(value), *grads_)


def _muladd_sum(ops, x, y, z):
  return ops.sum(x * y + z)


def _muladd_sum_reference(x, y, z):
  x, y, z = (np.asarray(a, np.float64) for a in (x, y, z))
  outputs = (np.sum(x * y + z), y, x, np.ones_like(z))
  # The value's rounding error grows with the sum of the magnitudes, not with the (cancelling) sum.
  scales = (np.sum(np.abs(x * y)) + np.sum(np.abs(z)), *(np.max(np.abs(g)) for g in outputs[1:]))
  return outputs, tuple(float(s) for s in scales)


def _abs_loss(ops, x, target):
  return ops.sum(ops.abs(2 * x**2 + 3 - target))


def _abs_loss_reference(x, target):
  x, target = np.asarray(x, np.float64), np.asarray(target, np.float64)
  d = 2 * x**2 + 3 - target
  outputs = (np.sum(np.abs(d)), 4 * x * np.sign(d))
  return outputs, (float(np.sum(np.abs(d))), float(np.max(np.abs(outputs[1]))))


MULADD_SUM = Workload(
    name="muladd_sum", description="value + 3 grads of sum(x*y + z)", ndim=2, n_inputs=3,
    argnums=(0, 1, 2), loss=_muladd_sum, jax_loss=grads.muladd_sum,
    numpy_value_and_grads=grads.muladd_sum_grads_numpy, reference=_muladd_sum_reference)

ABS_LOSS = Workload(
    name="abs_loss", description="value + grad of sum(|2x^2 + 3 - target|)", ndim=1, n_inputs=2,
    argnums=(0,), loss=_abs_loss, jax_loss=grads.abs_loss,
    numpy_value_and_grads=grads.abs_loss_grads_numpy, reference=_abs_loss_reference)

WORKLOADS = {w.name: w for w in (MULADD_SUM, ABS_LOSS)}


def get_workload(name: str) -> Workload:
  """Looks up a workload by name.

  Raises:
    ValueError: naming the valid workloads.
  """
  if name not in WORKLOADS:
    raise ValueError(f"Unknown workload {name!r}. Valid: {', '.join(WORKLOADS)}.")
  return WORKLOADS[name]


def max_rel_error(outputs: Outputs, reference: Outputs, scales: tuple[float, ...]) -> float:
  """max over outputs of max|got - want| / scale (scale 0 -> absolute error)."""
  if len(outputs) != len(reference):
    raise ValueError(f"Expected {len(reference)} outputs, got {len(outputs)}")
  errors = []
  for got, want, scale in zip(outputs, reference, scales, strict=True):
    got = np.asarray(got, np.float64)
    if got.shape != np.shape(want):
      raise ValueError(f"Output shape {got.shape} != reference shape {np.shape(want)}")
    with np.errstate(invalid="ignore", over="ignore"):
      err = np.max(np.abs(got - want)) if got.size else 0.0
    err = float(err) / scale if scale > 0 else float(err)
    errors.append(err if np.isfinite(err) else np.inf)  # NaN or inf output: infinitely wrong
  return max(errors)


def tolerance(dtype: np.dtype) -> float:
  """The largest acceptable `max_rel_error` for a dtype (a few hundred ulps of slack)."""
  return {2: 2e-2, 4: 1e-5, 8: 1e-12}[np.dtype(dtype).itemsize]
