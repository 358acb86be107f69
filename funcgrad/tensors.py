"""Creating arrays the way the tutorial creates torch tensors, with explicit PRNG keys.

| torch                                 | plain JAX                        | funcgrad           |
|---------------------------------------|----------------------------------|--------------------|
| `torch.zeros(2, 3)`                   | `jnp.zeros((2, 3), jnp.float32)` | `zeros((2, 3))`    |
| `torch.Tensor(2, 3)` (uninitialised)  | `jnp.empty((2, 3))`              | `empty((2, 3))`    |
| `torch.tensor(data, dtype)`           | `jnp.array(data, dtype)`         | `tensor(data, dtype)` |
| `torch.randn(2, 3)` (global RNG)      | `jax.random.normal(key, (2, 3))` | `randn(key, (2, 3))` |
| `requires_grad=True` on x, y | `jax.value_and_grad(f, argnums=(0, 1))` | `value_and_grad_wrt` |

Placing on a device is `jax.device_put(x, jax.devices("gpu")[0])` in JAX; the helpers take torch's
dtype and device names (`'torch.float'`, `'cuda:0'`) as `dtype=` and `device=`, and the
value-and-grad helper names a non-float argument in its error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from funcgrad._types import DeviceSpec, DtypeSpec, Shape
from funcgrad.devices import resolve_device
from funcgrad.dtypes import resolve_dtype


def _dtype_or_default(dtype: DtypeSpec | None) -> np.dtype | None:
  return None if dtype is None else resolve_dtype(dtype)


def zeros(shape: Shape, dtype: DtypeSpec = "float32", device: DeviceSpec = None) -> jax.Array:
  """An array of zeros (torch: `torch.zeros(*shape, dtype=..., device=...)`).

  Examples:
    >>> zeros((2, 3)).tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
  """
  return jnp.zeros(tuple(shape), resolve_dtype(dtype), device=resolve_device(device))


def empty(shape: Shape, dtype: DtypeSpec = "float32", device: DeviceSpec = None) -> jax.Array:
  """An array whose contents are unspecified (torch: `torch.Tensor(2, 3)` / `torch.empty`).

  Under JAX < 0.11 `jnp.empty` returns zeros; from 0.11 it may return uninitialised memory, as
  torch does. Never read the contents before writing them: only shape and dtype are promised.
  """
  return jnp.empty(tuple(shape), resolve_dtype(dtype), device=resolve_device(device))


def tensor(data: Any, dtype: DtypeSpec | None = None, device: DeviceSpec = None) -> jax.Array:
  """An array from (nested) Python data (torch: `torch.tensor(data, dtype=..., device=...)`).

  Args:
    data: nested lists, scalars or an array.
    dtype: see `resolve_dtype`; None infers it as JAX does (ints -> int32, floats -> float32).
    device: see `resolve_device`.

  Returns:
    A `jax.Array` on that device. There is no `requires_grad` argument: in JAX, which inputs are
    differentiated is chosen by the transformation (`value_and_grad_wrt`), not stored on the data.

  Examples:
    >>> tensor([[1, 2, 3], [4, 5, 6]]).dtype
    dtype('int32')
  """
  return jax.device_put(jnp.asarray(data, _dtype_or_default(dtype)), resolve_device(device))


def randn(key: jax.Array, shape: Shape, dtype: DtypeSpec = "float32",
          device: DeviceSpec = None) -> jax.Array:
  """Standard-normal samples from an explicit key (torch: `torch.randn(*shape)`).

  The same key always gives the same numbers; split a key (`jax.random.split`) to get
  independent streams instead of reusing it.
  """
  samples = jax.random.normal(key, tuple(shape), resolve_dtype(dtype))
  return jax.device_put(samples, resolve_device(device))


def _check_differentiable(args: Sequence[Any], argnums: tuple[int, ...]) -> None:
  for i in argnums:
    for leaf in jax.tree.leaves(args[i]):
      dtype = jnp.result_type(leaf)
      if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(
            f"Argument {i} has dtype {dtype}; differentiating with respect to it (torch: "
            f"requires_grad=True) needs a float dtype. Create it as float, e.g. "
            f"tensor(data, dtype='float32').")


def value_and_grad_wrt(fn: Callable[..., jax.Array],
                       argnums: int | Sequence[int] = 0) -> Callable[..., tuple[Any, Any]]:
  """Differentiates `fn` with respect to chosen arguments (torch: `requires_grad=True` on them).

  Args:
    fn: a scalar-valued function.
    argnums: the positions of the arguments that "require grad".

  Returns:
    A function returning `(value, grads)`: `grads` is one gradient for an int `argnums`, a tuple
    for a sequence. It raises `TypeError` naming the argument if a chosen input is not float.

  Examples:
    >>> f = value_and_grad_wrt(lambda x, y: (x * y).sum(), argnums=1)
    >>> value, grad_y = f(tensor([1.0, 2.0]), tensor([3.0, 4.0]))
    >>> grad_y.tolist()
    [1.0, 2.0]
  """
  positions = (argnums,) if isinstance(argnums, int) else tuple(argnums)
  value_and_grad = jax.value_and_grad(fn, argnums=argnums)

  def wrapped(*args: ArrayLike) -> tuple[Any, Any]:
    _check_differentiable(args, positions)
    return value_and_grad(*args)

  return wrapped
