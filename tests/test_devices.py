import jax
import numpy as np
import pytest

from funcgrad import (
  DeviceUnavailableError,
  describe_device,
  device_of,
  platforms_present,
  put,
  resolve_device,
  tensor,
  to_host,
)
from funcgrad.devices import jax_expression


@pytest.mark.parametrize("spec", ["cpu", "cpu:0", "CPU", " cpu:0 "])
def test_cpu_specs(spec):
  device = resolve_device(spec)
  assert device.platform == "cpu" and device.id == jax.devices("cpu")[0].id


def test_none_is_default_device_and_device_passes_through():
  assert resolve_device(None) == jax.devices()[0]
  device = jax.devices("cpu")[0]
  assert resolve_device(device) is device


@pytest.mark.parametrize("spec", ["xpu", "cuda:x", "cpu:-1", "cuda:0:1", ""])
def test_malformed_spec(spec):
  with pytest.raises(ValueError, match="Invalid device .*Valid: cpu, cpu:N, cuda"):
    resolve_device(spec)


def test_index_out_of_range_names_device_count():
  count = len(jax.devices("cpu"))
  with pytest.raises(ValueError, match=f"there (is|are) {count} cpu device"):
    resolve_device(f"cpu:{count}")


@pytest.mark.skipif("gpu" in platforms_present(), reason="a GPU is present")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "gpu", "gpu:3"])
def test_no_gpu_names_platforms_and_install(spec):
  with pytest.raises(DeviceUnavailableError, match=r"platforms present are cpu.*jax\[cuda13\]"):
    resolve_device(spec)


def test_round_trip_on_cpu():
  x = tensor([[1.0, 2.0], [3.0, 4.0]])
  moved = put(x, "cpu:0")
  assert device_of(moved) == jax.devices("cpu")[0]
  back = to_host(moved)
  assert isinstance(back, np.ndarray)
  np.testing.assert_array_equal(back, [[1.0, 2.0], [3.0, 4.0]])
  assert describe_device(device_of(moved)) == "cpu:0"


@pytest.mark.gpu
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "gpu"])
def test_round_trip_on_gpu(spec):
  x = tensor([[1.0, 2.0], [3.0, 4.0]], device="cpu")
  moved = put(x, spec)
  assert device_of(moved).platform == "gpu"
  assert describe_device(device_of(moved)).startswith("cuda:0 (")
  np.testing.assert_array_equal(to_host(moved), to_host(x))
  assert device_of(put(moved, "cpu")).platform == "cpu"


@pytest.mark.parametrize("spec, expression", [
    ("cpu", 'jax.devices("cpu")[0]'), ("cuda", 'jax.devices("gpu")[0]'),
    ("cuda:1", 'jax.devices("gpu")[1]'), ("GPU:2", 'jax.devices("gpu")[2]'),
    (None, "jax.devices()[0]")])
def test_jax_expression_names_the_device_in_plain_jax(spec, expression):
  assert jax_expression(spec) == expression


def test_jax_expression_of_a_device_evaluates_to_it():
  device = jax.devices("cpu")[0]
  assert eval(jax_expression(device), {"jax": jax}) is device  # noqa: S307 - our own text


def test_jax_expression_refuses_a_malformed_spec():
  with pytest.raises(ValueError, match="Invalid device 'cuda:x'"):
    jax_expression("cuda:x")
