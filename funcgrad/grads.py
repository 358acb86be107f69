"""The tutorial's gradient examples as pure functions, each beside its closed form.

`c = sum(x * y + z)` has dc/dx = y, dc/dy = x, dc/dz = 1. The tutorial's NumPy cell computes
`grad_y = grad_a * y` and `grad_x = grad_a * x`: it swaps the two. `muladd_sum_grads_numpy` has it
right, and the tests check all three implementations against the closed form.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def muladd_sum(x: ArrayLike, y: ArrayLike, z: ArrayLike) -> jax.Array:
  """Returns `sum(x * y + z)`, the tutorial's framework-comparison function."""
  return jnp.sum(x * y + z)


def muladd_sum_grads(
    x: ArrayLike, y: ArrayLike, z: ArrayLike
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
  """Returns `(value, (grad_x, grad_y, grad_z))` of `muladd_sum` by `jax.value_and_grad`.

  Examples:
    >>> value, (gx, gy, gz) = muladd_sum_grads(jnp.ones(2), 2 * jnp.ones(2), jnp.zeros(2))
    >>> float(value), gx.tolist(), gy.tolist(), gz.tolist()
    (4.0, [2.0, 2.0], [1.0, 1.0], [1.0, 1.0])
  """
  return jax.value_and_grad(muladd_sum, argnums=(0, 1, 2))(x, y, z)


def muladd_sum_grads_numpy(
    x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """The same as `muladd_sum_grads`, by hand-written NumPy backprop (the tutorial's NumPy cell).

  Forward: a = x * y; b = a + z; c = sum(b). Backward from dc/dc = 1:
  db = 1 everywhere; da = db; dz = db; dx = da * y; dy = da * x.
  """
  a = x * y
  b = a + z
  c = np.sum(b)
  grad_b = np.ones_like(b)
  grad_a = grad_b
  grad_z = grad_b.copy()
  grad_x = grad_a * y  # d(x*y)/dx = y: the tutorial multiplied by x here.
  grad_y = grad_a * x
  return c, (grad_x, grad_y, grad_z)


def muladd_sum_closed_form(
    x: ArrayLike, y: ArrayLike, z: ArrayLike
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
  """The closed form of `muladd_sum_grads`: `(sum(x*y + z), (y, x, ones))`."""
  x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
  return jnp.sum(x * y + z), (y, x, jnp.ones_like(z))


def abs_loss(x: ArrayLike, target: ArrayLike) -> jax.Array:
  """Returns `sum(|2 x^2 + 3 - target|)`, the tutorial's first autograd example."""
  y = x**2
  z = 2 * y + 3
  return jnp.sum(jnp.abs(z - target))


def abs_loss_grad(x: ArrayLike, target: ArrayLike) -> jax.Array:
  """Returns d abs_loss / dx (torch: `loss.backward(); x.grad`).

  Examples:
    >>> abs_loss_grad(jnp.array([2.0, 3.0]), jnp.array([3.0, 4.0])).tolist()
    [8.0, 12.0]
  """
  return jax.grad(abs_loss)(x, target)


def abs_loss_grad_closed_form(x: ArrayLike, target: ArrayLike) -> jax.Array:
  """Returns `4 x sign(2x^2 + 3 - target)`, the closed form of `abs_loss_grad`."""
  x = jnp.asarray(x)
  return 4 * x * jnp.sign(2 * x**2 + 3 - target)


class AbsLossGrads(NamedTuple):
  """Gradients of `abs_loss` with respect to the leaf and to each intermediate.

  Attributes:
    loss: the loss value.
    x: d loss / dx (torch's `x.grad`).
    y: d loss / dy for y = x^2 (torch reports None: y is not a leaf).
    z: d loss / dz for z = 2y + 3 (torch reports None).
  """

  loss: jax.Array
  x: jax.Array
  y: jax.Array
  z: jax.Array


def intermediate_grads(x: ArrayLike, target: ArrayLike) -> AbsLossGrads:
  """Backpropagates `abs_loss` one stage at a time with `jax.vjp`, keeping every gradient.

  torch keeps `.grad` only on leaf tensors (`y.grad` and `z.grad` print None unless
  `retain_grad()` is called). Chaining `jax.vjp` through the stages makes each intermediate's
  gradient an ordinary return value.

  Examples:
    >>> g = intermediate_grads(jnp.array([2.0, 3.0]), jnp.array([3.0, 4.0]))
    >>> g.x.tolist(), g.y.tolist(), g.z.tolist()
    ([8.0, 12.0], [2.0, 2.0], [1.0, 1.0])
  """
  y, y_vjp = jax.vjp(jnp.square, jnp.asarray(x))
  z, z_vjp = jax.vjp(lambda y: 2 * y + 3, y)
  loss, loss_vjp = jax.vjp(lambda z: jnp.sum(jnp.abs(z - target)), z)
  (grad_z,) = loss_vjp(jnp.ones_like(loss))
  (grad_y,) = z_vjp(grad_z)
  (grad_x,) = y_vjp(grad_y)
  return AbsLossGrads(loss=loss, x=grad_x, y=grad_y, z=grad_z)


def abs_loss_grads_numpy(x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`(abs_loss, d abs_loss / dx)` by hand-written NumPy backprop.

  Forward: y = x^2; z = 2y + 3; d = z - target; loss = sum(|d|). Backward from 1:
  dd = sign(d); dz = dd; dy = 2 dz; dx = 2 x dy.
  """
  y = x * x
  d = 2 * y + 3 - target
  loss = np.sum(np.abs(d))
  grad_z = np.sign(d)
  grad_y = 2 * grad_z
  return loss, 2 * x * grad_y
