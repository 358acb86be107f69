import numpy as np
import pytest

import funcgrad as fg
from funcgrad.bench.workloads import (
  ABS_LOSS,
  MULADD_SUM,
  WORKLOADS,
  get_workload,
  max_rel_error,
  tolerance,
)


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


def test_bytes_moved():
  # muladd_sum: 3 inputs read + 3 grads written + the scalar value.
  assert MULADD_SUM.bytes_moved((4000, 4000), 4) == 6 * 16_000_000 * 4 + 4
  # abs_loss: x and target read + grad_x written + the value.
  assert ABS_LOSS.bytes_moved((1000,), 4) == 3 * 1000 * 4 + 4


@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=WORKLOADS)
def test_reference_matches_library_and_numpy_backprop(workload):
  inputs = workload.make_inputs(workload.shape_for((5, 6)), np.float32, 0)
  want, scales = workload.reference(*inputs)
  assert all(s > 0 for s in scales)
  assert max_rel_error(workload.flat_numpy(*inputs), want, scales) < 1e-6
  import jax
  value, grads = jax.value_and_grad(workload.jax_loss, argnums=workload.argnums)(*inputs)
  assert max_rel_error((value, *grads), want, scales) < 1e-6
  assert float(workload.loss(np, *inputs)) == pytest.approx(float(want[0]), rel=1e-5)


def test_abs_loss_reference_is_the_tutorial_answer():
  (value, grad_x), _ = ABS_LOSS.reference(np.array([2.0, 3.0]), np.array([3.0, 4.0]))
  assert value == 25.0
  np.testing.assert_array_equal(grad_x, [8.0, 12.0])
  np.testing.assert_array_equal(
      fg.grads.abs_loss_grads_numpy(np.array([2.0, 3.0]), np.array([3.0, 4.0]))[1], [8.0, 12.0])


def test_max_rel_error_detects_wrong_outputs():
  inputs = MULADD_SUM.make_inputs((3, 4), np.float32, 0)
  want, scales = MULADD_SUM.reference(*inputs)
  value, gx, gy, gz = MULADD_SUM.flat_numpy(*inputs)
  swapped = (value, gy, gx, gz)  # the tutorial's bug
  assert max_rel_error(swapped, want, scales) > tolerance(np.float32)
  assert max_rel_error((value, gx, gy, gz * np.nan), want, scales) == np.inf
  with pytest.raises(ValueError, match="Expected 4 outputs"):
    max_rel_error((value,), want, scales)
  with pytest.raises(ValueError, match="shape"):
    max_rel_error((value, gx.T, gy, gz), want, scales)


def test_unknown_workload():
  with pytest.raises(ValueError, match="Unknown workload 'bogus'. Valid: muladd_sum, abs_loss"):
    get_workload("bogus")
