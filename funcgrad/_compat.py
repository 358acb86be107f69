"""Every private or experimental JAX and torch API funcgrad uses, in one place.

These move between releases (funcgrad runs on jax 0.10 and 0.11); when one does, this is the one
file to change.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import jax


@contextlib.contextmanager
def enable_x64() -> Iterator[None]:
  """64-bit types inside the block (`jax.enable_x64` where it exists, else the config flag)."""
  manager = getattr(jax, "enable_x64", None)
  if manager is not None:
    with manager(True):
      yield
    return
  before = jax.config.read("jax_enable_x64")
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", before)


def process_allgather(tree: Any) -> Any:
  """Every process's shards of `tree`, gathered on every process (experimental in JAX)."""
  from jax.experimental import multihost_utils  # noqa: PLC0415

  return multihost_utils.process_allgather(tree, tiled=True)


def cuda_versions() -> Any:
  """jaxlib's CUDA version bindings (private), or None where jaxlib has none."""
  try:
    from jax._src.lib import cuda_versions as versions  # noqa: PLC0415
  except ImportError:
    return None
  return versions


def torch_reset_compiled(torch: Any) -> None:
  """Forgets what `torch.compile` compiled in this process (torch's private dynamo reset)."""
  torch._dynamo.reset()
