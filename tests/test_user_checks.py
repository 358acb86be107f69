"""How a user's function is checked: random or not, tolerances by dtype, allclose errors, the
finite-difference gradient check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcgrad.bench import user_checks
from funcgrad.errors import UsageError


def test_random_functions_are_told_apart_from_deterministic_ones():
  x = jnp.ones(3)
  assert not user_checks.is_random(lambda x: jnp.sum(jnp.tanh(x)), x)
  # A legacy uint32[2] key is seen through the random_wrap jax.random puts in front of it.
  assert user_checks.random_primitives(
      lambda k, x: jnp.sum(x * jax.random.normal(k, x.shape)), jax.random.PRNGKey(0), x) >= \
      {"random_wrap", "random_bits"}
  # A typed key among the inputs is enough, even unused.
  assert user_checks.is_random(lambda k, x: jnp.sum(x), jax.random.key(0), x)

  def scanned(x, key):  # the draw is inside a scan inside a jit
    body = lambda c, k: (c + jax.random.uniform(k), None)  # noqa: E731
    return jax.jit(lambda x: jax.lax.scan(body, x, jax.random.split(key, 3))[0])(x).sum()

  assert user_checks.is_random(scanned, x, jax.random.PRNGKey(1))


def test_resolve_check():
  assert user_checks.resolve_check("auto", random=True) == "eager"
  assert user_checks.resolve_check("auto", random=False) == "float64"
  assert user_checks.resolve_check("none", random=False) == "none"
  with pytest.raises(UsageError, match=r"check='x64' is not a check; allowed: 'auto'"):
    user_checks.resolve_check("x64", random=False)


def test_tolerances_follow_the_dtype_computed_in():
  assert user_checks.compute_dtype([jnp.ones(2, jnp.bfloat16), jnp.ones(2)]).name == "bfloat16"
  # A float64 input while x64 is off computes in float32.
  out = jax.eval_shape(lambda x: x * 2, np.ones(3, np.float64))
  assert user_checks.compute_dtype(out).name == "float32"
  assert user_checks.compute_dtype([jnp.arange(3)]).name == "float32"  # no float: float32
  assert user_checks.tolerance_for("bfloat16") == user_checks.Tolerance(5e-2, 1e-3)
  assert user_checks.tolerance_for("float32", rtol=1e-3).rtol == 1e-3
  with pytest.raises(UsageError, match=r"atol=-1 must be a finite number >= 0"):
    user_checks.tolerance_for("float32", atol=-1)


def test_allclose_error_passes_near_zero_outputs_and_catches_sign_flips():
  tol = user_checks.tolerance_for("float32")
  # A saturated gradient: float32 gives 0 where float64 gives 4e-13.
  assert user_checks.allclose_error([np.zeros(3)], [np.full(3, 4e-13)], tol) < 1
  assert user_checks.allclose_error([-np.ones(3)], [np.ones(3)], tol) > 1
  # rtol is relative to the output's largest magnitude: a near-zero element's rounding passes.
  assert user_checks.allclose_error([np.array([1.0, 1e-5])], [np.array([1.0, 1.5e-5])], tol) < 1
  assert user_checks.allclose_error([np.array([np.nan])], [np.array([np.nan])], tol) == 0
  assert user_checks.allclose_error([np.array([np.nan])], [np.array([1.0])], tol) == np.inf
  with pytest.raises(ValueError, match="shape"):
    user_checks.allclose_error([np.zeros(2)], [np.zeros(3)], tol)


def test_float64_outputs_keep_keys_and_integers():
  value, key, labels = user_checks.float64_outputs(
      lambda x, k, y: (jnp.sum(x), k, y), jnp.ones(2), jax.random.key(0), jnp.arange(2))
  assert value.dtype == np.float64 and labels.dtype.kind == "i"
  assert jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def test_directional_check_catches_a_flipped_gradient_of_a_random_function():
  key = jax.random.key(0)

  def loss(leaves):  # dropout: the same key, the same mask
    (w,) = leaves
    keep = jax.random.bernoulli(key, 0.5, w.shape)
    return jnp.sum(jnp.where(keep, jnp.tanh(w) / 0.5, 0.0) ** 2)

  w = [jnp.linspace(-1, 1, 20)]
  grads = jax.grad(loss)(w)
  passed, said = user_checks.directional_check(loss, w, grads)
  assert passed and said.startswith("gradient check passed")
  passed, said = user_checks.directional_check(loss, w, [-grads[0]])
  assert not passed and "FAILED" in said
  passed, said = user_checks.directional_check(lambda leaves: jnp.sum(leaves[0]) * 0, w,
                                               [jnp.zeros(20)])
  assert passed and "inconclusive" in said
