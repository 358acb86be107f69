import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcgrad import device_of, empty, randn, tensor, value_and_grad_wrt, zeros


def test_zeros(maybe_jit):
  f = maybe_jit(zeros, static_argnums=(0, 1))
  out = f((2, 3), "torch.float")
  assert out.shape == (2, 3) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, np.zeros((2, 3)))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int8", "bool"])
def test_empty_promises_shape_and_dtype_only(dtype, maybe_jit):
  out = maybe_jit(empty, static_argnums=(0, 1))((4, 5), dtype)
  assert out.shape == (4, 5)
  assert out.dtype == np.dtype(dtype if dtype != "bfloat16" else jnp.bfloat16)


def test_tensor_from_data():
  assert tensor([[1, 2, 3], [4, 5, 6]]).dtype == jnp.int32
  x = tensor([[1, 2, 3], [4, 5, 6]], dtype="torch.float", device="cpu")
  assert x.dtype == jnp.float32
  assert device_of(x) == jax.devices("cpu")[0]
  np.testing.assert_array_equal(x, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


def test_tensor_under_jit():
  f = jax.jit(lambda a: tensor(a, dtype="float16") * 2)
  out = f(np.array([1, 2, 3]))
  assert out.dtype == jnp.float16
  np.testing.assert_array_equal(out, [2, 4, 6])


def test_randn_same_key_same_numbers_split_keys_differ(maybe_jit):
  f = maybe_jit(randn, static_argnums=(1, 2))
  key = jax.random.key(0)
  a, b = f(key, (3, 4), "float32"), f(key, (3, 4), "float32")
  np.testing.assert_array_equal(a, b)
  k1, k2 = jax.random.split(key)
  assert not np.array_equal(f(k1, (3, 4), "float32"), f(k2, (3, 4), "float32"))
  assert a.shape == (3, 4) and a.dtype == jnp.float32


def test_randn_statistics():
  samples = np.asarray(randn(jax.random.key(1), (100_000,)))
  assert abs(samples.mean()) < 0.02 and abs(samples.std() - 1) < 0.02


def _dot(x, y):
  return jnp.sum(x * y)


@pytest.mark.parametrize("argnums, expected", [
    (0, [3.0, 4.0]), (1, [1.0, 2.0]), ((0, 1), ([3.0, 4.0], [1.0, 2.0]))])
def test_value_and_grad_wrt_chosen_arguments(argnums, expected, maybe_jit):
  x, y = tensor([1.0, 2.0]), tensor([3.0, 4.0])
  value, grads = maybe_jit(value_and_grad_wrt(_dot, argnums))(x, y)
  assert float(value) == 11.0
  jax.tree.map(np.testing.assert_array_equal, grads, expected)


def test_value_and_grad_wrt_integer_input_needs_float(maybe_jit):
  f = maybe_jit(value_and_grad_wrt(_dot, argnums=1))
  with pytest.raises(TypeError, match="Argument 1 has dtype int32.*needs a float dtype"):
    f(tensor([1.0, 2.0]), tensor([3, 4]))
  # An integer argument that is *not* differentiated is fine.
  value, _ = maybe_jit(value_and_grad_wrt(_dot, argnums=0))(tensor([1.0, 2.0]), tensor([3, 4]))
  assert float(value) == 11.0
