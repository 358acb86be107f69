import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad as fg
from funcgrad.bench.workloads import fits, get_workload
from funcgrad.bench.workloads.model import (
  REFERENCE_NUMPY,
  REFERENCE_X64,
  flat_outputs,
  max_rel_error,
  rerun_reference,
  run_train_steps,
  tolerance,
)
from funcgrad.bench.workloads.tutorial import ABS_LOSS, MULADD_SUM
from funcgrad.bench.workloads.user import CHECKED_EAGER_FALLBACK, user_function, user_workload
from funcgrad.errors import UsageError

TUTORIAL = [MULADD_SUM, ABS_LOSS]


def test_inputs_are_seeded_and_shared():
  a = MULADD_SUM.make_inputs((3, 4), np.float32, seed=7)
  b = MULADD_SUM.make_inputs((3, 4), np.float32, seed=7)
  c = MULADD_SUM.make_inputs((3, 4), np.float32, seed=8)
  assert len(a) == 3 and all(x.dtype == np.float32 and x.shape == (3, 4) for x in a)
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], c[0])
  assert not np.array_equal(a[0], a[1])  # x, y, z differ from each other


def test_shapes_for_sizes():
  assert MULADD_SUM.shape_for((3, 4)) == (3, 4)
  assert MULADD_SUM.shape_for((12,)) == (12, 1)
  assert ABS_LOSS.shape_for((3, 4)) == (12,)
  assert ABS_LOSS.shape_for((1000,)) == (1000,)
  with pytest.raises(UsageError, match="2x3x4 has 3 dimensions"):
    MULADD_SUM.check_size((2, 3, 4))


def test_bytes_and_flops():
  # muladd_sum: 3 inputs read + 3 grads written + the scalar value.
  assert MULADD_SUM.bytes_moved((4000, 4000), 4) == 6 * 16_000_000 * 4 + 4
  # abs_loss: x and target read + grad_x written + the value.
  assert ABS_LOSS.bytes_moved((1000,), 4) == 3 * 1000 * 4 + 4
  assert MULADD_SUM.flops((3, 4)) == 2 * 12 * 3
  # In a dtype, as the runner and the memory checks ask: float64 moves twice float32's bytes.
  assert ABS_LOSS.least_bytes((1000,), "float64") == 3 * 1000 * 8 + 8
  assert dataclasses.replace(ABS_LOSS, bytes_moved=None).least_bytes((1000,), "float32") is None


@pytest.mark.parametrize("workload", TUTORIAL, ids=lambda w: w.name)
def test_reference_matches_library_and_numpy_backprop(workload, maybe_jit):
  inputs = workload.make_inputs(workload.shape_for((5, 6)), np.float32, 0)
  reference = workload.expected(inputs)
  assert all(s > 0 for s in reference.scales) and reference.label == REFERENCE_NUMPY
  numpy_out = flat_outputs(workload.peers["numpy"](*inputs))
  assert max_rel_error(numpy_out, reference.outputs, reference.scales) < 1e-6
  out = maybe_jit(workload.jax_program())(*inputs)
  assert max_rel_error(flat_outputs(out), reference.outputs, reference.scales) < 1e-6


def test_rerun_reference_agrees_with_hand_written_one():
  inputs = MULADD_SUM.make_inputs((4, 5), np.float32, 3)
  rerun = rerun_reference(MULADD_SUM, inputs)
  assert rerun.label == REFERENCE_X64
  hand = MULADD_SUM.expected(inputs)
  for got, want in zip(rerun.outputs, hand.outputs, strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
  assert all(o.dtype == np.float64 for o in rerun.outputs)


def test_abs_loss_reference_is_the_tutorial_answer():
  reference = ABS_LOSS.expected((np.array([2.0, 3.0]), np.array([3.0, 4.0])))
  value, grad_x = reference.outputs
  assert value == 25.0
  np.testing.assert_array_equal(grad_x, [8.0, 12.0])
  np.testing.assert_array_equal(
      fg.grads.abs_loss_grads_numpy(np.array([2.0, 3.0]), np.array([3.0, 4.0]))[1], [8.0, 12.0])


def test_max_rel_error_detects_wrong_outputs():
  inputs = MULADD_SUM.make_inputs((3, 4), np.float32, 0)
  reference = MULADD_SUM.expected(inputs)
  want, scales = reference.outputs, reference.scales
  value, gx, gy, gz = flat_outputs(MULADD_SUM.peers["numpy"](*inputs))
  swapped = (value, gy, gx, gz)  # the tutorial's bug
  assert max_rel_error(swapped, want, scales) > tolerance(np.float32)
  assert max_rel_error((value, gx, gy, gz * np.nan), want, scales) == np.inf
  with pytest.raises(ValueError, match="Expected 4 outputs"):
    max_rel_error((value,), want, scales)
  with pytest.raises(ValueError, match="shape"):
    max_rel_error((value, gx.T, gy, gz), want, scales)


def test_user_function_reference_is_a_float64_rerun():
  def loss(w, x):
    return jnp.sum(jnp.sin(x @ w))

  w = np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)
  x = np.linspace(0, 1, 12, dtype=np.float32).reshape(4, 3)
  workload = user_workload(user_function(loss, (w, x), argnums=(0, 1)))
  reference = workload.expected(workload.make_inputs((), None, 0))
  assert reference.label.startswith(REFERENCE_X64)
  w64, x64 = w.astype(np.float64), x.astype(np.float64)
  h = x64 @ w64  # closed form: d/dw = x^T cos(xw), d/dx = cos(xw) w^T
  for got, want in zip(reference.outputs, (np.sum(np.sin(h)), x64.T @ np.cos(h),
                                           np.cos(h) @ w64.T), strict=True):
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_user_function_that_cannot_run_in_float64_uses_the_eager_output():
  def loss(x):
    return jnp.sum(x.astype(jnp.float32) * jnp.float32(2.0)) if x.dtype == jnp.float32 else \
        (_ for _ in ()).throw(TypeError("float32 only"))

  workload = user_workload(user_function(loss, (np.ones(3, np.float32),)))
  reference = workload.expected(workload.make_inputs((), None, 0))
  assert reference.label.startswith(CHECKED_EAGER_FALLBACK)
  assert reference.outputs[0] == 6.0


def test_fit_workloads_reference_is_the_numpy_fit():
  fit = fits.fit_workload("linear_regression", steps=20)
  inputs = fit.make_inputs((50, 3), np.float32, 0)
  reference = fit.expected(inputs)
  params, loss = reference.outputs
  assert params.shape == (3,) and loss.shape == ()
  # Twenty Adam steps from zero reduce the loss below its starting value, mean(y^2).
  assert float(loss) < float(np.mean(inputs[2].astype(np.float64) ** 2))
  jax_out = flat_outputs(run_train_steps(fit, inputs))
  assert max_rel_error(jax_out, reference.outputs, reference.scales) <= fit.tolerance(np.float32)


def test_unknown_workload():
  with pytest.raises(UsageError, match="Unknown workload 'bogus'. Valid: muladd_sum, abs_loss"):
    get_workload("bogus")
