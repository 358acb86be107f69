"""Strict JAX for every test, GPU tests skipped without a GPU, and a `jit` parameter helper."""

import jax
import pytest

from funcgrad.devices import gpu_available

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_collection_modifyitems(config, items):
  del config
  if gpu_available():
    return
  skip = pytest.mark.skip(reason="no GPU backend in this JAX (pip install -e '.[cuda13]')")
  for item in items:
    if item.get_closest_marker("gpu") is not None:
      item.add_marker(skip)


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def maybe_jit(request):
  """Runs a test body twice: the function as is, and under `jax.jit`."""
  return (lambda f, **kw: jax.jit(f, **kw)) if request.param else (lambda f, **kw: f)


@pytest.fixture
def x64():
  """Enables jax_enable_x64 for one test, then restores it."""
  before = jax.config.read("jax_enable_x64")
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", before)
