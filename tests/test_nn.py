"""The nn workloads' maths: JAX, hand-written NumPy, torch and TensorFlow against float64.

Tolerances, all as max |got - want| per parameter, divided by a scale:
* float32 gradients: 1e-5 of the largest float64 gradient of that parameter (seen: ~5e-7);
* float32 losses: 1e-5 relative;
* float64 NumPy backprop against float64 JAX: 1e-12 of the gradient scale (seen: ~1e-15);
* finite differences (central, h = 1e-6, float64): 1e-7 of the gradient scale;
* Adam parameters after t steps of lr: 1e-3 * lr * t, i.e. 0.1% of the furthest Adam can move an
  entry (seen: ~1.2e-4 * lr * t). Adam divides by sqrt(nu), so an entry whose gradient is ~1e-4 of
  the largest turns float32 rounding of that gradient into a much larger error in its step.
"""

import dataclasses
import os
from collections.abc import Callable

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcgrad import nn

GRAD_TOL_F32 = 1e-5
GRAD_TOL_F64 = 1e-12
FD_TOL = 1e-7
ADAM_TOL = 1e-3  # times lr * steps
LR = 1e-3


@dataclasses.dataclass(frozen=True)
class Model:
  name: str
  size: tuple[int, int]
  make_inputs: Callable
  loss: Callable
  numpy_value_and_grads: Callable
  torch_loss: Callable
  tf_loss: Callable


MODELS = [
    Model("mlp", (8, 32), nn.mlp_inputs, nn.mlp_loss, nn.mlp_value_and_grads_numpy,
          nn.mlp_loss_torch, nn.mlp_loss_tf),
    Model("attention", (16, 128), nn.attention_inputs, nn.attention_loss,
          nn.attention_value_and_grads_numpy, nn.attention_loss_torch, nn.attention_loss_tf),
]


@pytest.fixture(scope="module")
def torch():
  return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tf():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before the first import: quiet C++ logs
  return pytest.importorskip("tensorflow")


def _f64(tree):
  """Floating leaves widened to float64 (the same numbers); integer labels kept as they are."""
  return jax.tree.map(
      lambda a: np.asarray(a, np.float64) if np.issubdtype(np.asarray(a).dtype, np.floating)
      else np.asarray(a), tree)


def _inputs(model, dtype=np.float32, seed=0):
  return model.make_inputs(*model.size, dtype, seed)


def _float64_reference(model, params, x, third):
  """float64 NumPy value and gradients of the same numbers as (float32) `params, x, third`."""
  return model.numpy_value_and_grads(*_f64((params, x, third)))


def _assert_grads_close(got, want, tol):
  assert sorted(got) == sorted(want)  # jax.tree returns dicts with sorted keys
  for key, w in want.items():
    g = np.asarray(got[key], np.float64)
    assert g.shape == w.shape, key
    error = np.max(np.abs(g - w)) / np.max(np.abs(w))
    assert error <= tol, f"{key}: {error:.3g} of the gradient scale > {tol}"


def _assert_value_close(got, want, rtol=GRAD_TOL_F32):
  np.testing.assert_allclose(float(got), float(want), rtol=rtol)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_jax_value_and_grad_matches_float64_numpy(model, maybe_jit):
  params, x, third = _inputs(model)
  value, grads = maybe_jit(jax.value_and_grad(model.loss))(params, x, third)
  want_value, want_grads = _float64_reference(model, params, x, third)
  assert value.dtype == jnp.float32
  _assert_value_close(value, want_value)
  _assert_grads_close(grads, want_grads, GRAD_TOL_F32)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_numpy_backprop_matches_jax_in_float64(model, x64):
  del x64
  params, x, third = _inputs(model, np.float64)
  value, grads = jax.jit(jax.value_and_grad(model.loss))(params, x, third)
  assert value.dtype == jnp.float64
  want_value, want_grads = model.numpy_value_and_grads(params, x, third)
  _assert_value_close(value, want_value, rtol=GRAD_TOL_F64)
  _assert_grads_close(grads, want_grads, GRAD_TOL_F64)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_numpy_backprop_matches_finite_differences(model):
  params, x, third = _inputs(model, np.float64)
  _, grads = model.numpy_value_and_grads(params, x, third)
  rng = np.random.default_rng(1)
  h = 1e-6
  for key, p in params.items():
    scale = np.max(np.abs(grads[key]))
    for flat in rng.choice(p.size, 3, replace=False):
      index = np.unravel_index(flat, p.shape)
      moved = {sign: {**params, key: p.copy()} for sign in (1, -1)}
      for sign, trial in moved.items():
        trial[key][index] += sign * h
      up, down = (model.numpy_value_and_grads(moved[s], x, third)[0] for s in (1, -1))
      assert abs((up - down) / (2 * h) - grads[key][index]) <= FD_TOL * scale, (key, index)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_numpy_backprop_keeps_the_inputs_dtype(model):
  value, grads = model.numpy_value_and_grads(*_inputs(model, np.float32))
  assert value.dtype == np.float32
  assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}


def test_inputs_are_deterministic_and_shaped():
  params, x, labels = nn.mlp_inputs(5, 16, np.float32, seed=3)
  again = nn.mlp_inputs(5, 16, np.float32, seed=3)
  assert list(params) == ["w1", "b1", "w2", "b2", "w3", "b3"]
  assert {k: v.shape for k, v in params.items()} == {
      "w1": (784, 16), "b1": (16,), "w2": (16, 16), "b2": (16,), "w3": (16, 10), "b3": (10,)}
  assert all(np.all(params[b] != 0) for b in ("b1", "b2", "b3"))
  assert x.shape == (5, 784) and x.dtype == np.float32
  assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 10
  jax.tree.map(np.testing.assert_array_equal, (params, x, labels), again)
  attention_params, x, target = nn.attention_inputs(4, 128, jnp.bfloat16, seed=0)
  assert {k: v.shape for k, v in attention_params.items()} == {"wqkv": (128, 384), "wo": (128, 128)}
  assert x.shape == target.shape == (4, 128) and x.dtype == jnp.bfloat16


def test_attention_is_causal():
  params, x, _ = nn.attention_inputs(8, 64, np.float32, seed=0)
  jacobian = jax.jit(jax.jacobian(nn.attention_output, argnums=1))(params, x)  # (S, D, S, D)
  depends = np.any(np.asarray(jacobian) != 0, axis=(1, 3))  # [i, j]: out[i] depends on x[j]
  np.testing.assert_array_equal(depends, np.tril(np.ones((8, 8), bool)))


def test_attention_output_ignores_later_positions():
  params, x, _ = nn.attention_inputs(8, 64, np.float32, seed=0)
  changed = x.copy()
  changed[5:] += 1.0
  before, after = nn.attention_output(params, x), nn.attention_output(params, changed)
  np.testing.assert_array_equal(before[:5], after[:5])
  assert np.all(np.any(before[5:] != after[5:], axis=1))


# -------------------------------------------------------------------------------------------------
# Peers


def _check_peer_grads(value, grads, model, params, x, third, dtype):
  want_value, want_grads = _float64_reference(model, params, x, third)
  tol = GRAD_TOL_F32 if dtype == np.float32 else GRAD_TOL_F64
  _assert_value_close(value, want_value, rtol=tol)
  _assert_grads_close(grads, want_grads, tol)


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_torch_matches_float64_reference(model, dtype, torch):
  params, x, third = _inputs(model, dtype)
  tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
  loss = model.torch_loss(torch, tensors, torch.tensor(x), torch.tensor(third))
  loss.backward()
  grads = {k: t.grad.numpy() for k, t in tensors.items()}
  _check_peer_grads(loss.item(), grads, model, params, x, third, dtype)


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_tf_matches_float64_reference(model, dtype, tf):
  params, x, third = _inputs(model, dtype)
  variables = {k: tf.Variable(v) for k, v in params.items()}
  with tf.GradientTape() as tape:
    loss = model.tf_loss(tf, variables, tf.constant(x), tf.constant(third))
  grads = {k: g.numpy() for k, g in tape.gradient(loss, variables).items()}
  _check_peer_grads(loss.numpy(), grads, model, params, x, third, dtype)


# -------------------------------------------------------------------------------------------------
# Adam (mlp_train)


def _zeros_like(params):
  return {k: np.zeros_like(v) for k, v in params.items()}


def _reference_adam(params, x, labels, steps):
  """float64 parameters and losses after each of `steps` NumPy Adam steps."""
  params, x = _f64((params, x))
  mu, nu = _zeros_like(params), _zeros_like(params)
  trajectory = []
  for t in range(1, steps + 1):
    params, mu, nu, loss = nn.mlp_train_step_numpy(params, mu, nu, t, x, labels, LR)
    trajectory.append((params, loss))
  return trajectory


def _assert_adam_close(got_params, got_losses, want, steps):
  np.testing.assert_allclose([float(v) for v in got_losses], [loss for _, loss in want],
                             rtol=GRAD_TOL_F32)
  for key, w in want[-1][0].items():
    error = np.max(np.abs(np.asarray(got_params[key], np.float64) - w)) / (LR * steps)
    assert error <= ADAM_TOL, f"{key}: {error:.3g} lr per step > {ADAM_TOL}"


def test_adam_step_numpy_is_optax_adam(x64):
  del x64
  rng = np.random.default_rng(0)
  params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
  optimizer = optax.adam(LR)
  state = optimizer.init(params)
  got, mu, nu = params, _zeros_like(params), _zeros_like(params)
  for t in range(1, 4):
    grads = {k: rng.standard_normal(v.shape) * 10.0**-t for k, v in params.items()}
    updates, state = optimizer.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    got, mu, nu = nn.adam_step_numpy(got, grads, mu, nu, t, lr=LR)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-14, atol=0), got, params)


@pytest.mark.parametrize("steps", [1, 3])
def test_optax_and_numpy_train_steps_match_float64(steps):
  params, x, labels = nn.mlp_inputs(8, 32, np.float32, seed=0)
  want = _reference_adam(params, x, labels, steps)
  optimizer = optax.adam(LR)
  step = jax.jit(nn.make_mlp_train_step(optimizer), donate_argnums=(0, 1))
  jax_params = jax.device_put(params)
  state, losses = optimizer.init(jax_params), []
  for _ in range(steps):
    jax_params, state, loss = step(jax_params, state, x, labels)
    losses.append(loss)
  _assert_adam_close(jax_params, losses, want, steps)
  np_params, mu, nu, losses = params, _zeros_like(params), _zeros_like(params), []
  for t in range(1, steps + 1):
    np_params, mu, nu, loss = nn.mlp_train_step_numpy(np_params, mu, nu, t, x, labels, LR)
    losses.append(loss)
  assert {v.dtype for v in np_params.values()} == {np.dtype(np.float32)}
  _assert_adam_close(np_params, losses, want, steps)


@pytest.mark.peers
@pytest.mark.parametrize("steps", [1, 3])
def test_torch_train_step_matches_float64(steps, torch):
  params, x, labels = nn.mlp_inputs(8, 32, np.float32, seed=0)
  tensors = {k: torch.tensor(v) for k, v in params.items()}
  step = nn.make_mlp_train_step_torch(torch, tensors, LR)
  losses = [step(torch.tensor(x), torch.tensor(labels)).item() for _ in range(steps)]
  got = {k: t.detach().numpy() for k, t in tensors.items()}
  _assert_adam_close(got, losses, _reference_adam(params, x, labels, steps), steps)


@pytest.mark.peers
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("steps", [1, 3])
def test_tf_train_step_matches_float64(steps, graph, tf):
  params, x, labels = nn.mlp_inputs(8, 32, np.float32, seed=0)
  variables = {k: tf.Variable(v) for k, v in params.items()}
  step = nn.make_mlp_train_step_tf(tf, variables, LR)
  step = tf.function(step) if graph else step
  losses = [step(tf.constant(x), tf.constant(labels)).numpy() for _ in range(steps)]
  got = {k: v.numpy() for k, v in variables.items()}
  _assert_adam_close(got, losses, _reference_adam(params, x, labels, steps), steps)


@pytest.mark.peers
def test_keras_adam_is_not_optax_adam(tf):
  # Why make_mlp_train_step_tf writes Adam out: Keras's first step is off by far more than float32.
  params, x, labels = nn.mlp_inputs(8, 32, np.float32, seed=0)
  variables = {k: tf.Variable(v) for k, v in params.items()}
  with tf.GradientTape() as tape:
    loss = nn.mlp_loss_tf(tf, variables, tf.constant(x), tf.constant(labels))
  grads = tape.gradient(loss, variables)
  keras_adam = tf.keras.optimizers.Adam(LR, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
  keras_adam.apply_gradients([(grads[k], variables[k]) for k in variables])
  want = _reference_adam(params, x, labels, 1)[-1][0]
  error = max(np.max(np.abs(variables[k].numpy() - w)) for k, w in want.items()) / LR
  assert error > 100 * ADAM_TOL


# -------------------------------------------------------------------------------------------------
# FLOPs, bytes and sizes


def _matmul_flops(jaxpr) -> int:
  """2 * (output elements) * (contracted length), summed over every dot_general, sub-jaxprs too."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs_shape = eqn.invars[0].aval.shape
      contracted = np.prod([lhs_shape[d] for d in lhs_contract])
      total += 2 * np.prod(eqn.outvars[0].aval.shape) * contracted
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      total += _matmul_flops(sub)
  return int(total)


@pytest.mark.parametrize(("model", "flops"),
                         [(MODELS[0], nn.mlp_flops), (MODELS[1], nn.attention_flops)],
                         ids=["mlp", "attention"])
def test_flops_count_the_matmuls_jax_runs(model, flops):
  params, x, third = _inputs(model)
  jaxpr = jax.make_jaxpr(jax.value_and_grad(model.loss))(params, x, third).jaxpr
  assert _matmul_flops(jaxpr) == flops(*model.size)


def test_min_bytes_count_params_inputs_and_grads():
  params, x, labels = nn.mlp_inputs(8, 32, np.float32, seed=0)
  param_bytes = sum(p.nbytes for p in params.values())
  assert nn.mlp_min_bytes(8, 32, 4) == 2 * param_bytes + x.nbytes + labels.nbytes
  assert nn.mlp_train_min_bytes(8, 32, 4) == 6 * param_bytes + x.nbytes + labels.nbytes
  assert nn.mlp_train_flops(8, 32) - nn.mlp_flops(8, 32) == (
      nn.ADAM_FLOPS_PER_PARAM * param_bytes // 4)
  params, x, target = nn.attention_inputs(16, 128, np.float32, seed=0)
  assert nn.attention_min_bytes(16, 128, 4) == (
      2 * sum(p.nbytes for p in params.values()) + x.nbytes + target.nbytes)


@pytest.mark.parametrize("shape", [(128, 512), (1, 1), (np.int64(2), 3)])
def test_parse_mlp_size_accepts_two_positive_ints(shape):
  assert nn.parse_mlp_size(shape) == tuple(int(d) for d in shape)


@pytest.mark.parametrize(("shape", "shown"), [((3,), "3"), ((2, 3, 4), "2x3x4"), ((0, 4), "0x4"),
                                              ((2.0, 3), "2.0x3"), ((True, 3), "Truex3")])
def test_parse_mlp_size_refuses_other_forms(shape, shown):
  message = rf"^mlp size '{shown}' must be BATCHxWIDTH, e\.g\. 128x512$"
  with pytest.raises(ValueError, match=message):
    nn.parse_mlp_size(shape)


@pytest.mark.parametrize(("shape", "shown"), [((3,), "3"), ((16, 100), "16x100"),
                                              ((16, 0), "16x0"), ((-1, 64), "-1x64")])
def test_parse_attention_size_refuses_other_forms(shape, shown):
  message = (rf"^attention size '{shown}' must be SEQxDIM, e\.g\. 256x512; "
             r"DIM must be a positive multiple of 64 \(the head dim\)$")
  with pytest.raises(ValueError, match=message):
    nn.parse_attention_size(shape)


def test_constructors_and_counts_refuse_bad_sizes():
  with pytest.raises(ValueError, match="DIM must be a positive multiple of 64"):
    nn.attention_inputs(16, 96, np.float32, seed=0)
  with pytest.raises(ValueError, match="'16x96'"):
    nn.attention_flops(16, 96)
  with pytest.raises(ValueError, match="mlp size '0x32' must be BATCHxWIDTH"):
    nn.mlp_inputs(0, 32, np.float32, seed=0)
  with pytest.raises(ValueError, match="mlp size '8x0' must be BATCHxWIDTH"):
    nn.mlp_train_flops(8, 0)
  assert nn.parse_attention_size((256, 512)) == (256, 512)
