"""The tutorial's two losses as workloads: `muladd_sum` (value + 3 grads of sum(x*y + z)) and
`abs_loss` (value + grad of sum(|2x^2 + 3 - target|)), with NumPy, PyTorch and TensorFlow peers."""

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from funcgrad import grads, losses
from funcgrad.bench.workloads.model import (
  REFERENCE_NUMPY,
  Reference,
  Workload,
  numpy_program,
  one_d_size,
  standard_normal_inputs,
  two_d_size,
)
from funcgrad.shapes import Shape


def _elementwise_bytes(n_inputs: int, n_grads: int) -> Callable[[Shape, int], int]:
  def bytes_moved(shape: Shape, itemsize: int) -> int:
    return (n_inputs + n_grads) * math.prod(shape) * itemsize + itemsize

  return bytes_moved


def _muladd_sum_reference(inputs: tuple[np.ndarray, ...]) -> Reference:
  x, y, z = (np.asarray(a, np.float64) for a in inputs)
  outputs = (np.sum(x * y + z), y, x, np.ones_like(z))
  # The value's rounding error grows with the sum of the magnitudes, not with the (cancelling) sum.
  scales = (np.sum(np.abs(x * y)) + np.sum(np.abs(z)), *(np.max(np.abs(g)) for g in outputs[1:]))
  return Reference(outputs, tuple(float(s) for s in scales), REFERENCE_NUMPY)


def _abs_loss_reference(inputs: tuple[np.ndarray, ...]) -> Reference:
  x, target = (np.asarray(a, np.float64) for a in inputs)
  d = 2 * x**2 + 3 - target
  outputs = (np.sum(np.abs(d)), 4 * x * np.sign(d))
  return Reference(outputs, (float(np.sum(np.abs(d))), float(np.max(np.abs(outputs[1])))),
                   REFERENCE_NUMPY)


def _elementwise(name: str, description: str, loss: Callable[..., Any], jax_fn, n_inputs: int,
                 argnums: tuple[int, ...], shape_for, numpy_fn, reference) -> Workload:
  # Written against `ops`: one expression for every peer (torch is its own `ops`).
  peer_loss = {"torch": loss, "tf": lambda tf, *a: loss(losses.tensorflow_ops(tf), *a)}
  return Workload(
      name=name, description=description, fn=jax_fn, make_inputs=standard_normal_inputs(n_inputs),
      argnums=argnums, shape_for=shape_for, reference=reference,
      peers={"numpy": numpy_program(numpy_fn), **peer_loss},
      bytes_moved=_elementwise_bytes(n_inputs, len(argnums)),
      flops=lambda shape: 2 * math.prod(shape) * n_inputs, n_inputs=n_inputs,
      ndim=2 if shape_for is two_d_size else 1)


MULADD_SUM = _elementwise(
    "muladd_sum", "value + 3 grads of sum(x*y + z)", losses.muladd_sum, grads.muladd_sum, 3,
    (0, 1, 2), two_d_size, grads.muladd_sum_grads_numpy, _muladd_sum_reference)

ABS_LOSS = _elementwise(
    "abs_loss", "value + grad of sum(|2x^2 + 3 - target|)", losses.abs_loss, grads.abs_loss, 2,
    (0,), one_d_size, grads.abs_loss_grads_numpy, _abs_loss_reference)
