import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funcgrad as fg


def _inputs(n, d, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.standard_normal((n, d)).astype(np.float32) for _ in range(3)]


def _reference_f64(x, y, z):
  """float64 NumPy reference: value and the three gradients in closed form."""
  x, y, z = (a.astype(np.float64) for a in (x, y, z))
  return np.sum(x * y + z), (y, x, np.ones_like(z))


def _assert_close(got, want, rtol=1e-5, atol=1e-5):
  jax.tree.map(lambda g, w: np.testing.assert_allclose(np.asarray(g), w, rtol=rtol, atol=atol),
               got, want)


@pytest.mark.parametrize("shape", [(3, 4), (1, 1), (64, 17)])
def test_muladd_sum_grads_match_float64_reference(shape, maybe_jit):
  x, y, z = _inputs(*shape)
  value, grads = maybe_jit(fg.muladd_sum_grads)(x, y, z)
  want_value, want_grads = _reference_f64(x, y, z)
  np.testing.assert_allclose(float(value), want_value, rtol=1e-5, atol=1e-4)
  _assert_close(grads, want_grads)


def test_muladd_sum_value(maybe_jit):
  x, y, z = _inputs(3, 4)
  np.testing.assert_allclose(float(maybe_jit(fg.muladd_sum)(x, y, z)), _reference_f64(x, y, z)[0],
                             rtol=1e-5)


def test_numpy_backprop_matches_reference_and_is_not_swapped():
  x, y, z = _inputs(3, 4, seed=3)
  value, (gx, gy, gz) = fg.muladd_sum_grads_numpy(x, y, z)
  np.testing.assert_array_equal(gx, y)  # d/dx (x*y) = y: the tutorial's cell had x here
  np.testing.assert_array_equal(gy, x)
  np.testing.assert_array_equal(gz, np.ones((3, 4)))
  np.testing.assert_allclose(value, _reference_f64(x, y, z)[0], rtol=1e-5)
  assert not np.allclose(gx, x)


def test_closed_form(maybe_jit):
  x, y, z = _inputs(2, 5, seed=1)
  _assert_close(maybe_jit(fg.muladd_sum_closed_form)(x, y, z), _reference_f64(x, y, z))


# Few distinct shapes: each new one makes eager JAX compile every primitive again (seconds).
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_autodiff_equals_hand_backprop_property(n, d, seed):
  x, y, z = _inputs(n, d, seed)
  _assert_close(fg.muladd_sum_grads(x, y, z), fg.muladd_sum_grads_numpy(x, y, z))


X, TARGET = np.array([2.0, 3.0], np.float32), np.array([3.0, 4.0], np.float32)


def test_abs_loss_tutorial_answer(maybe_jit):
  assert float(maybe_jit(fg.abs_loss)(X, TARGET)) == 25.0  # |11-3| + |21-4|
  np.testing.assert_array_equal(maybe_jit(fg.abs_loss_grad)(X, TARGET), [8.0, 12.0])


def test_abs_loss_grad_closed_form_with_mixed_signs(maybe_jit):
  x = np.array([2.0, 0.5, -1.5, 1.0], np.float32)
  target = np.array([3.0, 10.0, 1.0, 9.0], np.float32)  # z - target: +, -, +, -
  want = 4 * x.astype(np.float64) * np.sign(2 * x.astype(np.float64)**2 + 3 - target)
  np.testing.assert_allclose(maybe_jit(fg.abs_loss_grad)(x, target), want, rtol=1e-6)
  np.testing.assert_allclose(maybe_jit(fg.abs_loss_grad_closed_form)(x, target), want, rtol=1e-6)


def test_intermediate_grads(maybe_jit):
  g = maybe_jit(fg.intermediate_grads)(X, TARGET)
  assert float(g.loss) == 25.0
  np.testing.assert_array_equal(g.x, [8.0, 12.0])
  np.testing.assert_array_equal(g.z, [1.0, 1.0])  # d|z - t|/dz = sign(z - t)
  np.testing.assert_array_equal(g.y, [2.0, 2.0])  # dz/dy = 2
  g2 = fg.intermediate_grads(np.array([0.5, 2.0], np.float32), np.array([10.0, 1.0], np.float32))
  np.testing.assert_array_equal(g2.z, [-1.0, 1.0])
  np.testing.assert_array_equal(g2.y, [-2.0, 2.0])
  np.testing.assert_allclose(g2.x, fg.abs_loss_grad(np.array([0.5, 2.0]), np.array([10.0, 1.0])))


def test_intermediate_grads_match_torch_leaf_gradient():
  torch = pytest.importorskip("torch")
  x = torch.tensor([2.0, 3.0], requires_grad=True)
  loss = torch.sum(torch.abs(2 * x**2 + 3 - torch.tensor([3.0, 4.0])))
  loss.backward()
  np.testing.assert_array_equal(fg.intermediate_grads(X, TARGET).x, x.grad.numpy())


def test_muladd_sum_grads_bfloat16_under_jit():
  x, y, z = (jnp.asarray(a, jnp.bfloat16) for a in _inputs(4, 4))
  _, (gx, gy, gz) = jax.jit(fg.muladd_sum_grads)(x, y, z)
  assert gx.dtype == jnp.bfloat16
  np.testing.assert_array_equal(gx, y)
  np.testing.assert_array_equal(gy, x)
