"""The tutorial's losses written once for every framework, against a tiny array namespace.

`ops` is anything with `sum`, `abs` and `mean`: `jax.numpy`, `numpy`, `torch`, or
`tensorflow_ops(tf)`. JAX, PyTorch and TensorFlow then run the same expression, so a difference in
their outputs is a difference in the frameworks, not in the code.
"""

import types
from typing import Any


def muladd_sum(ops: Any, x: Any, y: Any, z: Any) -> Any:
  """sum(x*y + z): the tutorial's computation."""
  return ops.sum(x * y + z)


def abs_loss(ops: Any, x: Any, target: Any) -> Any:
  """sum(|2x^2 + 3 - target|): the tutorial's first autograd example, as a loss."""
  return ops.sum(ops.abs(2 * x**2 + 3 - target))


def least_squares(ops: Any, w: Any, features: Any, labels: Any) -> Any:
  """mean((features @ w - labels)^2)."""
  residual = features @ w - labels
  return ops.mean(residual * residual)


def tensorflow_ops(tf: Any) -> types.SimpleNamespace:
  """TensorFlow's spelling of the namespace (`reduce_sum` for `sum`, ...)."""
  return types.SimpleNamespace(sum=tf.reduce_sum, abs=tf.abs, mean=tf.reduce_mean)
